//! Which scenario the caller means: trigger phrases on word stems, the LLM when keywords miss,
//! and scenarios implied by the values said ("на завтра в пять" is a booking); then entering it.

use super::{Intent, ScenarioEngine, INTENT_THRESHOLD};
use crate::config::{FieldKind, FieldSpec};
use crate::scenario::assist::LlmMessage;
use crate::scenario::extract::{extract, Found};
use crate::scenario::phrases::{self};
use crate::scenario::state::*;
use crate::text::stem::{phrase_in, stems_match, token_stems};
use crate::text::Token;

impl ScenarioEngine {
    /// The scenario the caller's words point to, if any is sure enough.
    pub(super) async fn match_intent(&self, text: &str, tokens: &[Token]) -> Option<Intent> {
        match self.keyword_intent(tokens) {
            Some(intent) => Some(intent),
            None => self.classify_with_llm(text).await,
        }
    }

    /// The scenario the caller's words name by its trigger phrases, without asking the LLM.
    pub(super) fn keyword_intent(&self, tokens: &[Token]) -> Option<Intent> {
        let said = token_stems(tokens);
        // Ties go to the scenario whose phrases cover more of what was said, then to the one
        // listed first: the config's order is its priority.
        let mut best: Option<(Intent, usize)> = None;
        for (i, phrases) in self.triggers.iter().enumerate() {
            let mut score = 0.0f64;
            let mut covered = vec![false; said.len()];
            let mut span = None;
            for phrase in phrases {
                if phrase.is_empty() {
                    continue;
                }
                let s = if let Some(found) = phrase_in(phrase, &said) {
                    if span.is_none() {
                        span = Some(found);
                    }
                    for c in &mut covered[found.0..found.1] {
                        *c = true;
                    }
                    1.0
                } else {
                    // Words present but not as the phrase ranks below the phrase itself.
                    let found = phrase
                        .iter()
                        .filter(|w| said.iter().any(|s| stems_match(w, s)))
                        .count();
                    0.9 * found as f64 / phrase.len() as f64
                };
                score = score.max(s);
            }
            let hits = covered.iter().filter(|c| **c).count();
            if score >= INTENT_THRESHOLD
                && best
                    .as_ref()
                    .is_none_or(|(b, h)| score > b.score || (score == b.score && hits > *h))
            {
                best = Some((
                    Intent {
                        scenario: i,
                        score,
                        end: span.map(|s| s.1),
                        span,
                    },
                    hits,
                ));
            }
        }
        best.map(|(intent, _)| intent)
    }

    pub(super) async fn classify_with_llm(&self, text: &str) -> Option<Intent> {
        let llm = self.llm.as_ref()?;
        let mut list = String::new();
        for s in &self.config.scenarios {
            list.push_str(&format!(
                "- {}: {} (keywords: {})\n",
                s.name,
                s.description.as_deref().unwrap_or(""),
                s.trigger_keywords.join(", ")
            ));
        }
        let messages = vec![
            LlmMessage {
                role: "system",
                content: format!(
                    "You route a phone caller's request. Reply with exactly one scenario name from this list, or `none` if none fits:\n{list}"
                ),
            },
            LlmMessage { role: "user", content: text.to_string() },
        ];
        let reply = llm.complete(messages).await.ok()?.to_lowercase();
        let words: Vec<&str> = reply
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .collect();
        let scenario = self
            .config
            .scenarios
            .iter()
            .position(|s| words.contains(&s.name.as_str()))?;
        Some(Intent {
            scenario,
            score: 0.7,
            end: None,
            span: None,
        })
    }

    /// A scenario the caller is clearly in without naming it: "на завтра в пять можно?"
    /// carries a booking's date and time.
    pub(super) fn implicit_scenario(&self, tokens: &[Token]) -> Option<Intent> {
        let mut best: Option<(usize, usize)> = None;
        for (i, scenario) in self.config.scenarios.iter().enumerate() {
            let typed: Vec<FieldSpec> = scenario
                .collect_fields
                .iter()
                .filter(|f| {
                    matches!(
                        f.kind(),
                        FieldKind::Enum | FieldKind::Date | FieldKind::Time
                    )
                })
                .cloned()
                .collect();
            if typed.is_empty() {
                continue;
            }
            let mut toks = tokens.to_vec();
            let found = extract(&typed, &mut toks, self.extract_context(None), &|_| false);
            let count = found
                .iter()
                .filter(|(_, f)| matches!(f, Found::Value(_)))
                .count();
            if count > 0 && best.is_none_or(|(_, c)| count > c) {
                best = Some((i, count));
            }
        }
        best.map(|(scenario, _)| Intent {
            scenario,
            score: 0.5,
            end: None,
            span: None,
        })
    }

    pub(super) async fn enter(
        &mut self,
        intent: Intent,
        text: &str,
        tokens: &[Token],
        out: &mut TurnOutput,
    ) {
        let config = self.config.clone();
        let scenario = &config.scenarios[intent.scenario];
        let turn = self.state.user_turns;
        if !self
            .state
            .entered
            .iter()
            .any(|e| e.scenario == scenario.name)
        {
            self.state.entered.push(EnteredScenario {
                scenario: scenario.name.clone(),
                turn,
                collects_fields: !scenario.collect_fields.is_empty(),
            });
        }
        out.actions.push(Action::ScenarioEntered {
            scenario: scenario.name.clone(),
        });
        if scenario.collect_fields.is_empty() && scenario.transfer {
            self.state.completed.push(CompletedScenario {
                scenario: scenario.name.clone(),
                event: None,
                turn,
                fields: Vec::new(),
            });
            self.transfer_with(scenario.completion_message.clone(), out);
            return;
        }
        if scenario.collect_fields.is_empty() {
            if scenario.use_knowledge_base {
                self.say_answer(text, out).await;
            } else {
                match &scenario.completion_message {
                    Some(message) => out.say(message),
                    None => out.say(phrases::anything_else(self.lang())),
                }
            }
            self.state.completed.push(CompletedScenario {
                scenario: scenario.name.clone(),
                event: None,
                turn,
                fields: Vec::new(),
            });
            return;
        }
        self.state.active = Some(ActiveScenario {
            scenario: scenario.name.clone(),
            phase: Phase::Collecting,
            pending: None,
            retries: 0,
            skipped: Vec::new(),
        });
        let mut toks = tokens.to_vec();
        // The trigger's own words ("a refill") are no object.
        if let Some((start, end)) = intent.span {
            for t in &mut toks[start..end] {
                t.text.clear();
            }
        }
        self.take_free_text_object(scenario, &mut toks, intent.end, out);
        let mut found = {
            let fields = &self.state.fields;
            extract(
                &scenario.collect_fields,
                &mut toks,
                self.extract_context(None),
                &|f| fields.contains_key(f),
            )
        };
        if !phrases::asks_question(text, tokens) && !self.heard_unsure() {
            self.llm_fill(scenario, text, &toks, &toks, &mut found)
                .await;
        }
        let problems = self.apply(found, out);
        self.advance(scenario, problems, out);
    }
}
