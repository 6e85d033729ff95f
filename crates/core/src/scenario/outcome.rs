//! Deciding what a call achieved. The bot's `outcome_rules` are tried first (the first whose
//! conditions all hold wins); then what is unmistakable (a completed scenario's event, a
//! transfer, a callback request, silence); then the bot's `default_outcome`; then a reading of
//! the rest (questions answered → INFO_ONLY, else ABANDONED).

use super::state::EngineState;
use crate::config::{BotConfig, OutcomeCondition};
use crate::domain::{Evidence, Outcome};

fn holds(when: &OutcomeCondition, state: &EngineState, evidence: &mut Vec<Evidence>) -> bool {
    let mut ok = true;
    if let Some(name) = &when.scenario_completed {
        match state.completed.iter().find(|c| &c.scenario == name) {
            Some(c) => evidence.push(Evidence::ScenarioCompleted {
                turn: c.turn,
                scenario: name.clone(),
                event: c.event.clone(),
            }),
            None => ok = false,
        }
    }
    if let Some(name) = &when.scenario_entered {
        match state.entered.iter().find(|e| &e.scenario == name) {
            Some(e) => evidence.push(Evidence::ScenarioEntered {
                turn: e.turn,
                scenario: name.clone(),
                completed: state.completed.iter().any(|c| &c.scenario == name),
            }),
            None => ok = false,
        }
    }
    if let Some(event) = &when.event {
        match state
            .completed
            .iter()
            .find(|c| c.event.as_ref() == Some(event))
        {
            Some(c) => evidence.push(Evidence::Event {
                turn: c.turn,
                event: event.clone(),
                scenario: Some(c.scenario.clone()),
            }),
            None => ok = false,
        }
    }
    for field in &when.fields_collected {
        match state.fields.get(field) {
            Some(f) => evidence.push(Evidence::Field {
                turn: f.turn,
                name: field.clone(),
                value: f.value.clone(),
            }),
            None => ok = false,
        }
    }
    if let Some(want) = when.transferred {
        ok &= state.transferred.is_some() == want;
        if let Some(turn) = state.transferred.filter(|_| want) {
            evidence.push(Evidence::Transferred { turn });
        }
    }
    if let Some(want) = when.no_user_speech {
        ok &= (state.user_turns == 0) == want;
    }
    if let Some(want) = when.callback_requested {
        ok &= state.callback_requested.is_some() == want;
        if let Some(turn) = state.callback_requested.filter(|_| want) {
            evidence.push(Evidence::CallbackRequested { turn });
        }
    }
    if let Some(min) = when.min_user_turns {
        ok &= state.user_turns >= min;
    }
    ok
}

/// The standard outcome an `on_complete` event most likely means.
fn outcome_of_event(event: &str) -> &'static str {
    let e = event.to_ascii_lowercase();
    if ["book", "appoint", "reserv", "schedul", "visit"]
        .iter()
        .any(|w| e.contains(w))
    {
        "BOOKING"
    } else if ["callback", "call_back", "recall"]
        .iter()
        .any(|w| e.contains(w))
    {
        "CALLBACK"
    } else if e.contains("transfer") {
        "TRANSFERRED"
    } else {
        "LEAD"
    }
}

/// The outcome of a call in `state`, with the evidence for it. A transfer is always part of the
/// evidence, whatever decided the outcome: it is what `call.transferred` webhooks announce.
pub fn classify(config: &BotConfig, state: &EngineState) -> Outcome {
    let mut outcome = decide(config, state);
    if let Some(turn) = state.transferred {
        if !outcome
            .evidence
            .iter()
            .any(|e| matches!(e, Evidence::Transferred { .. }))
        {
            outcome.evidence.push(Evidence::Transferred { turn });
        }
    }
    outcome
}

fn decide(config: &BotConfig, state: &EngineState) -> Outcome {
    for (i, rule) in config.outcome_rules.iter().enumerate() {
        let mut evidence = vec![Evidence::Rule { index: i }];
        if holds(&rule.when, state, &mut evidence) {
            return Outcome {
                kind: rule.outcome.clone(),
                evidence,
            };
        }
    }
    if state.user_turns == 0 {
        return Outcome {
            kind: "NO_ANSWER".into(),
            evidence: vec![Evidence::NoCallerSpeech],
        };
    }
    if let Some(turn) = state.transferred {
        return Outcome {
            kind: "TRANSFERRED".into(),
            evidence: vec![Evidence::Transferred { turn }],
        };
    }
    if let Some(done) = state.completed.iter().rev().find(|c| c.event.is_some()) {
        let event = done.event.clone().unwrap_or_default();
        let mut evidence = vec![Evidence::ScenarioCompleted {
            turn: done.turn,
            scenario: done.scenario.clone(),
            event: Some(event.clone()),
        }];
        evidence.extend(done.fields.iter().filter_map(|f| {
            state.fields.get(f).map(|v| Evidence::Field {
                turn: v.turn,
                name: f.clone(),
                value: v.value.clone(),
            })
        }));
        return Outcome {
            kind: outcome_of_event(&event).into(),
            evidence,
        };
    }
    if let Some(turn) = state.callback_requested {
        return Outcome {
            kind: "CALLBACK".into(),
            evidence: vec![Evidence::CallbackRequested { turn }],
        };
    }
    if let Some(default) = &config.default_outcome {
        return Outcome {
            kind: default.clone(),
            evidence: vec![Evidence::DefaultOutcome],
        };
    }
    let contact: Vec<Evidence> = state
        .fields
        .iter()
        .filter(|(name, _)| {
            let n = name.to_ascii_lowercase();
            n.contains("phone") || n.contains("email") || n.contains("mail")
        })
        .map(|(name, f)| Evidence::Field {
            turn: f.turn,
            name: name.clone(),
            value: f.value.clone(),
        })
        .collect();
    if !contact.is_empty() {
        let mut evidence = vec![Evidence::ContactLeft];
        evidence.extend(contact);
        return Outcome {
            kind: "LEAD".into(),
            evidence,
        };
    }
    if !state.answered.is_empty() && state.entered.iter().all(|e| !e.collects_fields) {
        let evidence = state
            .answered
            .iter()
            .map(|t| Evidence::QuestionAnswered { turn: *t })
            .collect();
        return Outcome {
            kind: "INFO_ONLY".into(),
            evidence,
        };
    }
    if !state.answered.is_empty() || state.completed.iter().any(|c| c.event.is_none()) {
        let evidence = state
            .answered
            .iter()
            .map(|t| Evidence::QuestionAnswered { turn: *t })
            .collect();
        if state
            .entered
            .iter()
            .all(|e| !e.collects_fields || state.completed.iter().any(|c| c.scenario == e.scenario))
        {
            return Outcome {
                kind: "INFO_ONLY".into(),
                evidence,
            };
        }
    }
    let evidence = match state.entered.last() {
        Some(e) => vec![Evidence::ScenarioEntered {
            turn: e.turn,
            scenario: e.scenario.clone(),
            completed: false,
        }],
        None => vec![Evidence::NoRequest],
    };
    Outcome {
        kind: "ABANDONED".into(),
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(value: serde_json::Value) -> EngineState {
        let mut base = serde_json::json!({
            "language": "en", "transcript": [], "fields": {}, "active": null, "entered": [],
            "completed": [], "answered": [], "transferred": null, "callback_requested": null,
            "ended": true, "user_turns": 3, "language_votes": {}
        });
        for (k, v) in value.as_object().expect("an object") {
            base[k] = v.clone();
        }
        serde_json::from_value(base).expect("an engine state")
    }

    #[test]
    fn a_transfer_is_evidence_whatever_decided_the_outcome() {
        let config = BotConfig::parse_any(
            "language: en\ngreeting: Hi\nfallback: Sorry?\nscenarios:\n  - name: lead\n    trigger_keywords: [call]\n    collect_fields:\n      - {name: phone, prompt: Your phone?}\noutcome_rules:\n  - {outcome: LEAD, when: {fields_collected: [phone]}}\n",
        )
        .expect("valid config");
        let transferred = state(serde_json::json!({
            "fields": {"phone": {"value": "+14155550100", "turn": 2}},
            "transferred": 3
        }));
        let outcome = classify(&config, &transferred);
        assert_eq!(outcome.kind, "LEAD");
        assert_eq!(
            outcome.evidence,
            vec![
                Evidence::Rule { index: 0 },
                Evidence::Field {
                    turn: 2,
                    name: "phone".into(),
                    value: "+14155550100".into()
                },
                Evidence::Transferred { turn: 3 },
            ]
        );
        assert!(outcome.transferred());
        // Decided by the transfer itself: said once.
        let only = state(serde_json::json!({"transferred": 2}));
        let outcome = classify(&config, &only);
        assert_eq!(
            (outcome.kind.as_str(), outcome.evidence),
            ("TRANSFERRED", vec![Evidence::Transferred { turn: 2 }])
        );
    }
}
