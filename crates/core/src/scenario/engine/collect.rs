//! Collecting a scenario's fields: values found in what the caller said are validated and
//! stored, the next missing one is asked, the values are read back for a yes or a correction,
//! and questions or new requests in the middle are handled without losing the place.

use super::{ScenarioEngine, MAX_RETRIES};
use crate::config::{BotConfig, FieldKind, FieldSpec, Scenario};
use crate::scenario::extract::{after_correction, extract, free_text_object, is_name_field, Found};
use crate::scenario::phrases::{self, Problem, YesNo};
use crate::scenario::state::*;
use crate::text::Token;
use std::sync::Arc;

impl ScenarioEngine {
    pub(super) fn set_field(&mut self, name: &str, value: String, out: &mut TurnOutput) {
        out.actions.push(Action::FieldCollected {
            field: name.to_string(),
            value: value.clone(),
        });
        self.state.fields.insert(
            name.to_string(),
            CollectedField {
                value,
                turn: self.state.user_turns,
            },
        );
    }

    /// Stores the values found; returns the problems, first one first.
    pub(super) fn apply(
        &mut self,
        found: Vec<(String, Found)>,
        out: &mut TurnOutput,
    ) -> Vec<(String, Problem)> {
        let mut problems = Vec::new();
        for (field, result) in found {
            match result {
                Found::Value(value) => {
                    if self.state.fields.get(&field).map(|f| &f.value) != Some(&value) {
                        self.set_field(&field, value, out);
                    }
                }
                Found::Invalid(problem) => {
                    out.actions.push(Action::FieldRejected {
                        field: field.clone(),
                        reason: problem.describe().to_string(),
                    });
                    problems.push((field, problem));
                }
            }
        }
        problems
    }

    /// Asks for what is missing, or confirms, or completes.
    pub(super) fn advance(
        &mut self,
        scenario: &Scenario,
        problems: Vec<(String, Problem)>,
        out: &mut TurnOutput,
    ) {
        let lang = self.lang();
        let Some(active) = self.state.active.as_mut() else {
            return;
        };
        if let Some((name, problem)) = problems.into_iter().next() {
            if let Some(field) = scenario.collect_fields.iter().find(|f| f.name == name) {
                active.retries = if active.pending.as_deref() == Some(name.as_str()) {
                    active.retries + 1
                } else {
                    0
                };
                active.pending = Some(name);
                active.phase = Phase::Collecting;
                out.say(phrases::retry(field, Some(&problem), lang));
                return;
            }
        }
        let missing = scenario.collect_fields.iter().find(|f| {
            !self.state.fields.contains_key(&f.name)
                && (f.required || !active.skipped.contains(&f.name))
        });
        if let Some(field) = missing {
            if active.pending.as_deref() != Some(field.name.as_str()) {
                active.retries = 0;
            }
            active.pending = Some(field.name.clone());
            active.phase = Phase::Collecting;
            out.say(&field.prompt);
            return;
        }
        active.pending = None;
        if scenario.confirm.unwrap_or(true) {
            active.phase = Phase::Confirming;
            out.actions.push(Action::ConfirmationRequested {
                scenario: scenario.name.clone(),
            });
            out.say(phrases::confirm(&self.summary(scenario), lang));
        } else {
            self.complete(scenario, out);
        }
    }

    pub(super) fn summary(&self, scenario: &Scenario) -> String {
        let values: Vec<(&FieldSpec, &str)> = scenario
            .collect_fields
            .iter()
            .filter_map(|f| {
                self.state
                    .fields
                    .get(&f.name)
                    .map(|v| (f, v.value.as_str()))
            })
            .collect();
        phrases::summary(&values, self.lang())
    }

    pub(super) fn complete(&mut self, scenario: &Scenario, out: &mut TurnOutput) {
        let turn = self.state.user_turns;
        let fields: Vec<String> = scenario
            .collect_fields
            .iter()
            .filter(|f| self.state.fields.contains_key(&f.name))
            .map(|f| f.name.clone())
            .collect();
        self.state.completed.push(CompletedScenario {
            scenario: scenario.name.clone(),
            event: scenario.on_complete.clone(),
            turn,
            fields,
        });
        out.actions.push(Action::Completed {
            scenario: scenario.name.clone(),
            event: scenario.on_complete.clone(),
        });
        self.state.active = None;
        if scenario.transfer {
            let message = scenario
                .completion_message
                .as_ref()
                .map(|m| self.fill_placeholders(scenario, m));
            self.transfer_with(message, out);
            return;
        }
        let reply = match &scenario.completion_message {
            Some(message) => self.fill_placeholders(scenario, message),
            None => phrases::completed(&self.summary(scenario), self.lang()),
        };
        out.say(reply);
    }

    /// `{date}` in a completion message becomes the date as it is read back.
    pub(super) fn fill_placeholders(&self, scenario: &Scenario, message: &str) -> String {
        let mut text = message.to_string();
        for field in &scenario.collect_fields {
            let value = self
                .state
                .fields
                .get(&field.name)
                .map(|v| phrases::display_value(field, &v.value, self.lang()))
                .unwrap_or_default();
            text = text.replace(&format!("{{{}}}", field.name), &value);
        }
        text
    }

    pub(super) fn active_scenario(&self, active: &ActiveScenario) -> Option<Arc<BotConfig>> {
        self.config
            .scenarios
            .iter()
            .any(|s| s.name == active.scenario)
            .then(|| self.config.clone())
    }

    pub(super) async fn collect(
        &mut self,
        text: &str,
        tokens: &[Token],
        active: ActiveScenario,
        out: &mut TurnOutput,
    ) {
        let Some(config) = self.active_scenario(&active) else {
            self.state.active = None;
            out.say(&self.config.fallback);
            return;
        };
        let Some(scenario) = config.scenarios.iter().find(|s| s.name == active.scenario) else {
            return;
        };
        let pending_field = active
            .pending
            .as_deref()
            .and_then(|p| scenario.collect_fields.iter().find(|f| f.name == p));
        let mut toks = tokens.to_vec();
        let before = self.state.fields.len();
        self.take_free_text_object(scenario, &mut toks, None, out);
        let took_object = self.state.fields.len() > before;
        let mut found = {
            let fields = &self.state.fields;
            extract(
                &scenario.collect_fields,
                &mut toks,
                self.extract_context(active.pending.as_deref()),
                &|f| fields.contains_key(f),
            )
        };
        // Free text takes any words, so words that are clearly no answer are not taken: a
        // question ("What's up? You're opening hours…"), a hesitation, or words the recogniser
        // was unsure of. Other fields' values said with them are still kept.
        let question = phrases::asks_question(text, tokens);
        let unsure = self.heard_unsure();
        if let Some(field) = pending_field.filter(|f| f.kind() == FieldKind::Text) {
            if question || unsure {
                found.retain(|(name, _)| name != &field.name);
            }
        }
        if !question && !unsure {
            self.llm_fill(scenario, text, tokens, &toks, &mut found)
                .await;
        }
        // A value the call already has ("сколько стоит педикюр?" while booking a pedicure)
        // is no answer to the question asked.
        let values = found
            .iter()
            .filter(|(name, f)| matches!(f, Found::Value(v) if self.state.fields.get(name).map(|c| &c.value) != Some(v)))
            .count();
        let only_free_text = values == 1
            && found.len() == 1
            && pending_field.is_some_and(|f| f.kind() == FieldKind::Text && found[0].0 == f.name);
        if (values == 0 && !took_object || only_free_text)
            && self.digress(text, tokens, scenario, &active, out).await
        {
            return;
        }
        if values == 0 && found.is_empty() && !took_object {
            let Some(field) = pending_field else {
                self.advance(scenario, Vec::new(), out);
                return;
            };
            let lang = self.lang();
            if question {
                // A question the documents cannot answer: say so, and ask again.
                out.say(phrases::no_knowledge(lang));
                out.say(phrases::back_to(&field.prompt, lang));
                return;
            }
            if unsure {
                out.say(phrases::retry(field, None, lang));
                return;
            }
            let Some(active) = self.state.active.as_mut() else {
                return;
            };
            active.retries += 1;
            // An optional field is asked once; a required one until the caller gives up.
            if !field.required {
                active.skipped.push(field.name.clone());
                self.advance(scenario, Vec::new(), out);
                return;
            }
            if active.retries > MAX_RETRIES {
                out.say(phrases::offer_person(lang));
            }
            out.say(phrases::retry(field, None, lang));
            return;
        }
        let problems = self.apply(found, out);
        self.advance(scenario, problems, out);
    }

    /// A question or a change of topic in the middle of a scenario. Questions are answered
    /// and the bot returns to where it was; a different request is switched to.
    pub(super) async fn digress(
        &mut self,
        text: &str,
        tokens: &[Token],
        scenario: &Scenario,
        active: &ActiveScenario,
        out: &mut TurnOutput,
    ) -> bool {
        // Words said when free text was asked for are most likely the answer: only trigger
        // phrases take them elsewhere, not a model's guess ("lisinopril" is no cancellation).
        let intent = if only_text_pending(scenario, active) {
            self.keyword_intent(tokens)
        } else {
            self.match_intent(text, tokens).await
        };
        let intent = intent.filter(|i| self.config.scenarios[i.scenario].name != scenario.name);
        let question = phrases::is_question(text, tokens);
        let resume_prompt = match active.phase {
            Phase::Collecting => active
                .pending
                .as_deref()
                .and_then(|p| scenario.collect_fields.iter().find(|f| f.name == p))
                .map(|f| phrases::back_to(&f.prompt, self.lang())),
            _ => Some(phrases::confirm(&self.summary(scenario), self.lang())),
        };
        match intent {
            Some(intent)
                if !self.config.scenarios[intent.scenario]
                    .collect_fields
                    .is_empty() =>
            {
                self.state.active = None;
                self.enter(intent, text, tokens, out).await;
                true
            }
            // A name like "Linda Park" must not read as a question about parking.
            Some(intent)
                if question || intent.score >= 1.0 && !only_text_pending(scenario, active) =>
            {
                let other = self.config.clone();
                let other = &other.scenarios[intent.scenario];
                if !self.state.entered.iter().any(|e| e.scenario == other.name) {
                    self.state.entered.push(EnteredScenario {
                        scenario: other.name.clone(),
                        turn: self.state.user_turns,
                        collects_fields: false,
                    });
                }
                out.actions.push(Action::ScenarioEntered {
                    scenario: other.name.clone(),
                });
                if other.use_knowledge_base {
                    self.say_answer(text, out).await;
                } else if let Some(message) = &other.completion_message {
                    out.say(message);
                }
                if let Some(prompt) = resume_prompt {
                    out.say(prompt);
                }
                true
            }
            _ if question && self.answers_questions() => {
                self.say_answer(text, out).await;
                if let Some(prompt) = resume_prompt {
                    out.say(prompt);
                }
                true
            }
            _ => false,
        }
    }

    pub(super) async fn confirm_turn(
        &mut self,
        text: &str,
        tokens: &[Token],
        active: ActiveScenario,
        out: &mut TurnOutput,
    ) {
        let config = self.config.clone();
        let Some(scenario) = config.scenarios.iter().find(|s| s.name == active.scenario) else {
            self.state.active = None;
            return;
        };
        let mut toks = tokens.to_vec();
        let found = {
            let fields = &self.state.fields;
            extract(
                &scenario.collect_fields,
                &mut toks,
                self.extract_context(None),
                &|f| fields.contains_key(f),
            )
        };
        let changed: Vec<(String, Found)> = found
            .iter()
            .filter(|(name, f)| match f {
                Found::Value(v) => self.state.fields.get(name).map(|c| &c.value) != Some(v),
                Found::Invalid(_) => true,
            })
            .cloned()
            .collect();
        let mut changed = changed;
        if changed.is_empty() {
            // "Не в три, а в четыре": after the correction a bare number is the new time (or
            // day), read as leniently as an answer to its question.
            if let Some(at) = after_correction(tokens) {
                for field in scenario
                    .collect_fields
                    .iter()
                    .filter(|f| matches!(f.kind(), FieldKind::Time | FieldKind::Date))
                {
                    let mut tail = tokens[at..].to_vec();
                    let found = extract(
                        std::slice::from_ref(field),
                        &mut tail,
                        self.extract_context(Some(&field.name)),
                        &|_| true,
                    );
                    if let Some((name, Found::Value(v))) = found.into_iter().next() {
                        if self.state.fields.get(&name).map(|c| &c.value) != Some(&v) {
                            changed.push((name, Found::Value(v)));
                            break;
                        }
                    }
                }
            }
        }
        let answer = phrases::yes_no(tokens);
        let lang = self.lang();
        if !changed.is_empty() {
            let problems = self.apply(changed, out);
            if !problems.is_empty() {
                self.advance(scenario, problems, out);
                return;
            }
            self.read_back_corrected(scenario, out);
            return;
        }
        if answer == Some(YesNo::Yes) {
            self.complete(scenario, out);
            return;
        }
        // "No, the service is manicure": the field named, then its new value.
        if let Some((field, value)) = self.named_correction(scenario, tokens) {
            self.set_field(&field, value, out);
            self.read_back_corrected(scenario, out);
            return;
        }
        if let Some(field) = scenario
            .collect_fields
            .iter()
            .find(|f| phrases::mentions_field(f, tokens))
        {
            self.state.fields.remove(&field.name);
            if let Some(active) = self.state.active.as_mut() {
                active.phase = Phase::Collecting;
                active.pending = Some(field.name.clone());
                active.retries = 0;
            }
            out.say(&field.prompt);
            return;
        }
        if answer == Some(YesNo::No) {
            if let Some(active) = self.state.active.as_mut() {
                active.phase = Phase::Correcting;
            }
            out.say(phrases::what_to_correct(lang));
            return;
        }
        if self.digress(text, tokens, scenario, &active, out).await {
            return;
        }
        // "Не стрижка, а маникюр" after "what should I change?": the one free-text field.
        let text_fields: Vec<&FieldSpec> = scenario
            .collect_fields
            .iter()
            .filter(|f| f.kind() == FieldKind::Text)
            .collect();
        if active.phase == Phase::Correcting && text_fields.len() == 1 {
            let field = text_fields[0];
            let mut toks = tokens.to_vec();
            // Every field's extractor runs, so a time said with it is not part of the text.
            let found = extract(
                &scenario.collect_fields,
                &mut toks,
                self.extract_context(Some(&field.name)),
                &|_| true,
            );
            if let Some((_, Found::Value(value))) =
                found.into_iter().find(|(n, _)| n == &field.name)
            {
                self.set_field(&field.name, value, out);
                if let Some(active) = self.state.active.as_mut() {
                    active.phase = Phase::Confirming;
                }
                out.say(phrases::corrected_confirm(&self.summary(scenario), lang));
                return;
            }
        }
        out.say(phrases::confirm_again(lang));
    }
}

impl ScenarioEngine {
    /// After a correction: the values read back again for a yes.
    fn read_back_corrected(&mut self, scenario: &Scenario, out: &mut TurnOutput) {
        if let Some(active) = self.state.active.as_mut() {
            active.phase = Phase::Confirming;
        }
        out.actions.push(Action::ConfirmationRequested {
            scenario: scenario.name.clone(),
        });
        out.say(phrases::corrected_confirm(
            &self.summary(scenario),
            self.lang(),
        ));
    }

    /// The first open free-text field (not a name) filled from the object of what was said
    /// ("запишите меня на маникюр в пятницу", "for a cleaning"); its tokens are cleared.
    pub(super) fn take_free_text_object(
        &mut self,
        scenario: &Scenario,
        toks: &mut [Token],
        after: Option<usize>,
        out: &mut TurnOutput,
    ) {
        let pending = self.state.active.as_ref().and_then(|a| a.pending.clone());
        let Some(field) = scenario.collect_fields.iter().find(|f| {
            f.kind() == FieldKind::Text
                && !is_name_field(&f.name)
                && !self.state.fields.contains_key(&f.name)
                && pending.as_deref() != Some(f.name.as_str())
        }) else {
            return;
        };
        // Typed values first, so "записаться на завтра" does not make "завтра" a service.
        let mut probe = toks.to_vec();
        let _ = extract(
            &scenario.collect_fields,
            &mut probe,
            self.extract_context(None),
            &|_| false,
        );
        // "a prescription refill" names the request, not its object.
        let trigger_words: Vec<String> = scenario
            .trigger_keywords
            .iter()
            .flat_map(|k| crate::text::stem::stems(k))
            .collect();
        let names_request = |span: crate::text::Span| {
            toks[span.start..span.end].iter().any(|t| {
                let s = crate::text::stem::stem(&t.text);
                trigger_words
                    .iter()
                    .any(|w| crate::text::stem::stems_match(w, &s))
            })
        };
        if let Some((value, span)) =
            free_text_object(&probe, after).filter(|(_, span)| !names_request(*span))
        {
            self.set_field(&field.name, value, out);
            for t in &mut toks[span.start..span.end] {
                t.text.clear();
            }
        }
    }

    /// A free-text field the caller names with a new value after it ("the service is
    /// manicure", "услуга — маникюр", "имя Анна"), read by the field's own extractor.
    fn named_correction(&self, scenario: &Scenario, tokens: &[Token]) -> Option<(String, String)> {
        for field in scenario
            .collect_fields
            .iter()
            .filter(|f| f.kind() == FieldKind::Text)
        {
            let Some((_, end)) = phrases::field_mention(field, tokens) else {
                continue;
            };
            let mut toks = tokens.to_vec();
            for t in &mut toks[..end] {
                t.text.clear();
            }
            // "должна быть", "should be", "на" between the label and the value.
            for t in toks.iter_mut().skip(end) {
                if !matches!(
                    t.text.as_str(),
                    "should"
                        | "be"
                        | "was"
                        | "is"
                        | "to"
                        | "будет"
                        | "должна"
                        | "должно"
                        | "должен"
                        | "быть"
                        | "на"
                        | "это"
                ) {
                    break;
                }
                t.text.clear();
            }
            // Every field's extractor runs, so a time said with it is not part of the text.
            let found = extract(
                &scenario.collect_fields,
                &mut toks,
                self.extract_context(Some(&field.name)),
                &|_| true,
            );
            if let Some((_, Found::Value(value))) =
                found.into_iter().find(|(n, _)| n == &field.name)
            {
                if self.state.fields.get(&field.name).map(|c| &c.value) != Some(&value) {
                    return Some((field.name.clone(), value));
                }
            }
        }
        None
    }
}

/// True when the bot waits for free text, where any words are a plausible answer.
fn only_text_pending(scenario: &Scenario, active: &ActiveScenario) -> bool {
    active.phase == Phase::Collecting
        && active
            .pending
            .as_deref()
            .and_then(|p| scenario.collect_fields.iter().find(|f| f.name == p))
            .is_some_and(|f| f.kind() == FieldKind::Text)
}
