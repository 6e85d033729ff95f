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

/// The scenario events the outcome's evidence names (`turn 4: event booking_created`,
/// `turn 4: scenario booking completed, event booking_created`), in order, once each.
fn scenario_events(record: &CallRecord) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let evidence = record.outcome.iter().flat_map(|o| o.evidence.iter());
    for line in evidence {
        let Some((_, rest)) = line.split_once("event ") else {
            continue;
        };
        let event: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if !event.is_empty() && !out.contains(&event) {
            out.push(event);
        }
    }
    out
}

fn transferred(record: &CallRecord) -> bool {
    record.outcome.as_ref().is_some_and(|o| {
        o.kind == "TRANSFERRED" || o.evidence.iter().any(|e| e.contains("transferred"))
    })
}

/// The events of a finished call: `call.completed` or `call.failed`, `call.transferred` when it
/// was, and one per scenario event its outcome rests on.
pub fn events_of(record: &CallRecord) -> Vec<WebhookEvent> {
    let status_event = match record.status {
        CallStatus::Completed => "call.completed",
        _ => "call.failed",
    };
    let mut names: Vec<(String, Option<String>)> = vec![(status_event.to_string(), None)];
    if transferred(record) {
        names.push(("call.transferred".to_string(), None));
    }
    for event in scenario_events(record) {
        names.push((scenario_event_name(&event), Some(event)));
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
    use callfleet_core::domain::{CallDirection, Outcome};

    fn record(status: CallStatus, kind: &str, evidence: &[&str]) -> CallRecord {
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
                evidence: evidence.iter().map(|e| e.to_string()).collect(),
            }),
            summary: None,
            metrics: vec![],
        }
    }

    fn check(record: CallRecord, expected: &[&str]) {
        let names: Vec<String> = events_of(&record).into_iter().map(|e| e.name).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn a_call_raises_its_status_transfer_and_scenario_events() {
        check(
            record(CallStatus::Completed, "INFO_ONLY", &[]),
            &["call.completed"],
        );
        check(record(CallStatus::Failed, "FAILED", &[]), &["call.failed"]);
        check(
            record(CallStatus::NoAnswer, "NO_ANSWER", &[]),
            &["call.failed"],
        );
        check(
            record(
                CallStatus::Completed,
                "TRANSFERRED",
                &["turn 3: transferred to a person"],
            ),
            &["call.completed", "call.transferred"],
        );
        check(
            record(
                CallStatus::Completed,
                "BOOKING",
                &[
                    "turn 5: scenario booking completed, event booking_created",
                    "turn 4: field phone = +79161234567",
                ],
            ),
            &["call.completed", "booking.created"],
        );
        check(
            record(
                CallStatus::Completed,
                "LEAD",
                &[
                    "rule outcome_rules[0]",
                    "turn 2: event lead_captured",
                    "turn 2: event lead_captured",
                ],
            ),
            &["call.completed", "lead.captured"],
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
            &["turn 5: event booking_created"],
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
    }
}
