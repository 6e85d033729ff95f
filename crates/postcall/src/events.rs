//! Which webhook events a finished call raises, and their payloads. Pure: the same record always
//! gives the same events and bodies, so processing a record twice queues nothing new.

use callfleet_core::domain::{CallRecord, CallStatus};
use serde_json::{json, Value};

/// The call events every endpoint can subscribe to; scenario outcome events (`booking.created`)
/// come on top, named after the bot's `on_complete` events.
pub const CALL_EVENTS: &[&str] = &["call.completed", "call.failed", "call.transferred"];

/// One event to send.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// `call.completed`, `booking.created`, …
    pub name: String,
    /// The body: `{"type", "timestamp", "data"}` as Standard Webhooks recommends.
    pub payload: Value,
}

/// The webhook event of a scenario's `on_complete` event: its last `_` becomes a dot
/// (`booking_created` → `booking.created`); one without `_` gets `.completed`. Names that would
/// pass for a call event go under `scenario.`.
pub fn scenario_event_name(event: &str) -> String {
    let name = match event.rsplit_once('_') {
        Some((subject, verb)) if !subject.is_empty() && !verb.is_empty() => {
            format!("{subject}.{verb}")
        }
        _ => format!("{event}.completed"),
    };
    if name.starts_with("call.") {
        format!("scenario.{name}")
    } else {
        name
    }
}

/// Whether `name` may be subscribed to: a call event, or a well-formed outcome event name.
pub fn is_subscribable(name: &str) -> bool {
    if CALL_EVENTS.contains(&name) {
        return true;
    }
    let Some((subject, verb)) = name.split_once('.') else {
        return false;
    };
    let word = |w: &str| {
        w.starts_with(|c: char| c.is_ascii_lowercase())
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    };
    subject != "call" && word(subject) && word(verb) && name.len() <= 100
}

/// The events of a finished call: `call.completed` or `call.failed`, `call.transferred` when it
/// was, and one per scenario event its outcome rests on — all read from the outcome's evidence
/// as data ([`Outcome::events`](callfleet_core::domain::Outcome::events),
/// [`Outcome::transferred`](callfleet_core::domain::Outcome::transferred)), never from its words.
pub fn events_of(record: &CallRecord) -> Vec<WebhookEvent> {
    let status_event = match record.status {
        CallStatus::Completed => "call.completed",
        _ => "call.failed",
    };
    let mut names: Vec<(String, Option<String>)> = vec![(status_event.to_string(), None)];
    if let Some(outcome) = &record.outcome {
        if outcome.transferred() {
            names.push(("call.transferred".to_string(), None));
        }
        for event in outcome.events() {
            names.push((scenario_event_name(event), Some(event.to_string())));
        }
    }
    let mut data = serde_json::to_value(record).expect("a call record serialises");
    if let Value::Object(map) = &mut data {
        // The record's own `id` is the call's; say so in the payload.
        if let Some(id) = map.remove("id") {
            map.insert("call_id".into(), id);
        }
        map.insert("duration_sec".into(), json!(record.duration_sec()));
    }
    let at = record.ended_at.unwrap_or(record.started_at);
    let timestamp = chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    names
        .into_iter()
        .map(|(name, scenario_event)| {
            let mut data = data.clone();
            if let (Some(event), Value::Object(map)) = (scenario_event, &mut data) {
                map.insert("scenario_event".into(), json!(event));
            }
            WebhookEvent {
                payload: json!({"type": name, "timestamp": timestamp, "data": data}),
                name,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use callfleet_core::domain::{CallDirection, Evidence, Outcome};

    fn record(status: CallStatus, kind: &str, evidence: Vec<Evidence>) -> CallRecord {
        CallRecord {
            id: "call_1".into(),
            company_id: "cmp_1".into(),
            bot_id: "bot_1".into(),
            bot_config_version: 1,
            direction: CallDirection::Inbound,
            status,
            from_number: None,
            to_number: None,
            room: None,
            started_at: 1_700_000_000_000,
            ended_at: Some(1_700_000_042_000),
            language: Some("en".into()),
            transcript: vec![],
            fields: Default::default(),
            outcome: Some(Outcome {
                kind: kind.into(),
                evidence,
            }),
            summary: None,
            metrics: vec![],
        }
    }

    fn check(record: CallRecord, expected: &[&str]) {
        let names: Vec<String> = events_of(&record).into_iter().map(|e| e.name).collect();
        assert_eq!(names, expected);
    }

    fn event(turn: u32, event: &str) -> Evidence {
        Evidence::Event {
            turn,
            event: event.into(),
            scenario: None,
        }
    }

    #[test]
    fn a_call_raises_its_status_transfer_and_scenario_events() {
        check(
            record(CallStatus::Completed, "INFO_ONLY", vec![]),
            &["call.completed"],
        );
        check(
            record(
                CallStatus::Failed,
                "FAILED",
                vec![Evidence::note("no room")],
            ),
            &["call.failed"],
        );
        check(
            record(CallStatus::NoAnswer, "NO_ANSWER", vec![]),
            &["call.failed"],
        );
        check(
            record(
                CallStatus::Completed,
                "TRANSFERRED",
                vec![Evidence::Transferred { turn: 3 }],
            ),
            &["call.completed", "call.transferred"],
        );
        // A rule decided BOOKING, and the call was also handed over.
        check(
            record(
                CallStatus::Completed,
                "BOOKING",
                vec![
                    Evidence::Rule { index: 0 },
                    event(5, "booking_created"),
                    Evidence::Transferred { turn: 6 },
                ],
            ),
            &["call.completed", "call.transferred", "booking.created"],
        );
        check(
            record(
                CallStatus::Completed,
                "BOOKING",
                vec![
                    Evidence::ScenarioCompleted {
                        turn: 5,
                        scenario: "booking".into(),
                        event: Some("booking_created".into()),
                    },
                    Evidence::Field {
                        turn: 4,
                        name: "phone".into(),
                        value: "+79161234567".into(),
                    },
                ],
            ),
            &["call.completed", "booking.created"],
        );
        check(
            record(
                CallStatus::Completed,
                "LEAD",
                vec![
                    Evidence::Rule { index: 0 },
                    event(2, "lead_captured"),
                    event(2, "lead_captured"),
                ],
            ),
            &["call.completed", "lead.captured"],
        );
        // Words are not facts: a note that reads like an event or a transfer raises nothing.
        check(
            record(
                CallStatus::Completed,
                "INFO_ONLY",
                vec![
                    Evidence::note("turn 5: event booking_created"),
                    Evidence::note("the caller asked to be transferred"),
                    Evidence::ScenarioCompleted {
                        turn: 2,
                        scenario: "faq".into(),
                        event: None,
                    },
                    Evidence::Field {
                        turn: 2,
                        name: "event".into(),
                        value: "booking_created".into(),
                    },
                ],
            ),
            &["call.completed"],
        );
    }

    #[test]
    fn scenario_event_names() {
        for (event, name) in [
            ("booking_created", "booking.created"),
            ("test_drive_booked", "test_drive.booked"),
            ("signup", "signup.completed"),
            ("call_back", "scenario.call.back"),
        ] {
            assert_eq!(scenario_event_name(event), name);
        }
        for (name, ok) in [
            ("call.completed", true),
            ("call.transferred", true),
            ("booking.created", true),
            ("call.exploded", false),
            ("Booking.created", false),
            ("booking", false),
            ("booking.", false),
        ] {
            assert_eq!(is_subscribable(name), ok, "{name}");
        }
    }

    #[test]
    fn payloads_follow_standard_webhooks_and_never_change() {
        let r = record(
            CallStatus::Completed,
            "BOOKING",
            vec![event(5, "booking_created")],
        );
        let events = events_of(&r);
        assert_eq!(events, events_of(&r), "the same record, the same bodies");
        let booking = &events[1].payload;
        assert_eq!(booking["type"], "booking.created");
        assert_eq!(booking["timestamp"], "2023-11-14T22:14:02.000Z");
        assert_eq!(booking["data"]["call_id"], "call_1");
        assert_eq!(booking["data"]["duration_sec"], 42);
        assert_eq!(booking["data"]["scenario_event"], "booking_created");
        assert_eq!(booking["data"]["outcome"]["kind"], "BOOKING");
        assert_eq!(
            booking["data"]["outcome"]["evidence"][0],
            json!({"kind": "event", "turn": 5, "event": "booking_created"}),
            "the evidence travels as data"
        );
    }
}
