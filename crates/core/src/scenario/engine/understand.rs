//! Free-text fields read by the language model, when the bot has one: the open fields go to it
//! as a JSON schema, and what it returns is kept only when it passes the same checks as a value
//! the rules found — its words were said by the caller, outside other fields' values, and they
//! are not a label, a hesitation or a question. A model that invents a value stores nothing.

use super::ScenarioEngine;
use crate::config::{FieldKind, FieldSpec, Scenario};
use crate::scenario::assist::LlmMessage;
use crate::scenario::extract::{extract, is_name_field, plausible_free_text, title_case, Found};
use crate::scenario::phrases;
use crate::text::stem::{stem, stems_match};
use crate::text::{tokenize, Token};

/// Rule values longer than this many words are offered to the model to narrow down.
const LONG_VALUE_WORDS: usize = 3;

impl ScenarioEngine {
    /// Adds to `found` the free-text values the model reads in `text` for the scenario's open
    /// text fields (and narrows a long rule value of the field asked), checked as above.
    /// `rest` is what the rules left unexplained: with no words there and no long value to
    /// narrow, the model is not asked (each request is a pause in a voice call).
    pub(super) async fn llm_fill(
        &self,
        scenario: &Scenario,
        text: &str,
        tokens: &[Token],
        rest: &[Token],
        found: &mut Vec<(String, Found)>,
    ) {
        let Some(llm) = self.llm.clone() else {
            return;
        };
        let open: Vec<&FieldSpec> = scenario
            .collect_fields
            .iter()
            .filter(|f| f.kind() == FieldKind::Text && !self.state.fields.contains_key(&f.name))
            .filter(|f| match found.iter().find(|(n, _)| n == &f.name) {
                None => true,
                Some((_, Found::Value(v))) => v.split(' ').count() > LONG_VALUE_WORDS,
                Some(_) => false,
            })
            .collect();
        let narrows = open.iter().any(|f| found.iter().any(|(n, _)| n == &f.name));
        if open.is_empty() || !narrows && !plausible_free_text(rest) {
            return;
        }
        // What is left once every typed value is taken: a free-text value must lie in it.
        let mut said = tokens.to_vec();
        let typed: Vec<FieldSpec> = scenario
            .collect_fields
            .iter()
            .filter(|f| f.kind() != FieldKind::Text)
            .cloned()
            .collect();
        let _ = extract(&typed, &mut said, self.extract_context(None), &|_| true);
        if !plausible_free_text(&said) {
            return;
        }
        let schema = extraction_schema(&open);
        let messages = vec![
            LlmMessage {
                role: "system",
                content: format!(
                    "You extract form fields from what a phone caller said. Reply with one JSON object matching this JSON schema and nothing else. Include only fields the caller stated in this utterance, in the caller's own words; leave out every field they did not state. Never guess.\nJSON schema: {schema}"
                ),
            },
            LlmMessage {
                role: "user",
                content: text.to_string(),
            },
        ];
        let Ok(reply) = llm.complete(messages).await else {
            return;
        };
        let Some(object) = json_object(&reply) else {
            return;
        };
        for field in open {
            let Some(value) = object.get(&field.name).and_then(|v| v.as_str()) else {
                continue;
            };
            let Some(value) = checked_value(field, value, &said) else {
                continue;
            };
            found.retain(|(n, _)| n != &field.name);
            found.push((field.name.clone(), Found::Value(value)));
        }
    }
}

/// `{"type": "object", "properties": {field: {"type": "string", "description": prompt}}}`.
fn extraction_schema(fields: &[&FieldSpec]) -> String {
    let properties: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|f| {
            (
                f.name.clone(),
                serde_json::json!({"type": "string", "description": f.prompt}),
            )
        })
        .collect();
    serde_json::json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    })
    .to_string()
}

/// The first JSON object in a model's reply (models wrap it in prose or code fences).
fn json_object(reply: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let start = reply.find('{')?;
    let end = reply.rfind('}')?;
    if end < start {
        return None;
    }
    match serde_json::from_str(&reply[start..=end]).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The model's value when every word of it was said outside other fields' values, and it is
/// a plausible free-text answer; else nothing.
fn checked_value(field: &FieldSpec, value: &str, said: &[Token]) -> Option<String> {
    let words = tokenize(value);
    if words.is_empty() || phrases::asks_question(value, &words) || !plausible_free_text(&words) {
        return None;
    }
    let heard: Vec<String> = said
        .iter()
        .filter(|t| !t.is_used())
        .map(|t| stem(&t.text))
        .collect();
    let grounded = words
        .iter()
        .all(|w| heard.iter().any(|h| stems_match(&stem(&w.text), h)));
    if !grounded {
        return None;
    }
    let value = words
        .iter()
        .map(|t| t.raw.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    Some(if is_name_field(&field.name) {
        title_case(&value)
    } else {
        value
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            prompt: "?".into(),
            kind: None,
            required: true,
            options: Vec::new(),
            min: None,
            max: None,
            retry_prompt: None,
        }
    }

    #[track_caller]
    fn check(said: &str, model: &str, expected: Option<&str>) {
        let tokens = tokenize(said);
        assert_eq!(
            checked_value(&field("service"), model, &tokens).as_deref(),
            expected,
            "{said:?} / {model:?}"
        );
    }

    #[test]
    fn a_model_value_is_kept_only_when_the_caller_said_it() {
        check(
            "хочу сделать маникюр с покрытием",
            "маникюр с покрытием",
            Some("маникюр с покрытием"),
        );
        check(
            "I need to come in for a teeth cleaning",
            "teeth cleaning",
            Some("teeth cleaning"),
        );
        // Invented, or another field's words, or a label, or a question: nothing.
        check("хочу записаться в пятницу", "стрижка", None);
        check("мой номер 8 916 765 43 21", "мой номер", None);
        check("мой номер 8 916 765 43 21", "8 916 765 43 21", None);
        check("what are your hours?", "what are your hours?", None);
        check("эээ не знаю", "не знаю", None);
    }

    #[test]
    fn the_reply_object_is_found_in_prose() {
        assert_eq!(
            json_object("Sure! ```json\n{\"service\": \"маникюр\"}\n```")
                .map(|m| m["service"].clone()),
            Some(serde_json::json!("маникюр"))
        );
        assert_eq!(json_object("none"), None);
        assert_eq!(json_object("[1, 2]"), None);
    }
}
