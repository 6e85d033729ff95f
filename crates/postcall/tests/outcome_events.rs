//! From a conversation to its webhook events through data only: scripted calls from `bots/tests`
//! are played through the scenario engine, whose outcome carries its evidence as facts (the rule,
//! the event, the fields); the record goes through JSON (as on the post-call queue) and through
//! the store (SQLite and PostgreSQL) and still raises the same events.

use callfleet_core::config::BotConfig;
use callfleet_core::domain::{CallDirection, CallRecord, CallStatus, Evidence};
use callfleet_core::scenario::script::{run_script, CallScript};
use callfleet_postcall::events_of;
use callfleet_store::testing::test_stores;
use callfleet_store::NewCompany;
use std::path::Path;

fn played(script: &str) -> CallRecord {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bots/tests");
    let path = root.join(script);
    let script = CallScript::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let bot = script.bot_path(&path).expect("the script names its bot");
    let config = BotConfig::parse_any(&std::fs::read_to_string(bot).unwrap()).unwrap();
    let report = run_script(&config, &script);
    assert!(report.passed, "{script:?}: {:?}", report.failures);
    let result = report.result.expect("a finished call");
    CallRecord {
        id: format!("call_{}", script.name.clone().unwrap_or_default().len()),
        company_id: String::new(),
        bot_id: "bot".into(),
        bot_config_version: 1,
        direction: CallDirection::Inbound,
        status: CallStatus::Completed,
        from_number: None,
        to_number: None,
        room: None,
        started_at: 1_000,
        ended_at: Some(61_000),
        language: Some(result.language.clone()),
        transcript: result.transcript.clone(),
        fields: result.fields.clone(),
        outcome: Some(result.outcome),
        summary: None,
        metrics: vec![],
    }
}

fn names(record: &CallRecord) -> Vec<String> {
    events_of(record).into_iter().map(|e| e.name).collect()
}

#[tokio::test]
async fn outcome_events_come_from_the_engines_evidence_through_queue_and_store() {
    let booking = played("salon-ru/01-full-booking-one-utterance.yaml");
    let outcome = booking.outcome.clone().unwrap();
    assert_eq!(outcome.kind, "BOOKING");
    assert_eq!(outcome.rule(), Some(0), "salon-ru's first rule decided it");
    assert!(
        outcome.evidence.iter().any(|e| matches!(
            e,
            Evidence::Event { event, scenario: Some(s), .. } if event == "booking_created" && s == "booking"
        )),
        "{:?}",
        outcome.evidence
    );
    assert_eq!(names(&booking), ["call.completed", "booking.created"]);

    let transfer = played("insurance-en/07-adjuster-transfer.yaml");
    assert_eq!(transfer.outcome.as_ref().unwrap().kind, "TRANSFERRED");
    assert_eq!(names(&transfer), ["call.completed", "call.transferred"]);

    // On the queue the record is JSON; the events survive it.
    for record in [&booking, &transfer] {
        let queued: CallRecord =
            serde_json::from_str(&serde_json::to_string(record).unwrap()).unwrap();
        assert_eq!(&queued, record);
        assert_eq!(names(&queued), names(record));
    }

    for db in test_stores().await {
        let name = format!("{:?}", db.backend);
        let company = db
            .store
            .create_company(NewCompany {
                name: "A".into(),
                timezone: "UTC".into(),
                max_concurrent_calls: 1,
            })
            .await
            .unwrap()
            .id;
        for (i, record) in [&booking, &transfer].into_iter().enumerate() {
            let mut record = record.clone();
            record.id = format!("call_{i}");
            record.company_id = company.clone();
            db.store.upsert_call(&record).await.unwrap();
            let stored = db.store.get_call(&record.id).await.unwrap();
            assert_eq!(stored.outcome, record.outcome, "{name}: evidence as data");
            assert_eq!(names(&stored), names(&record), "{name}");
        }
    }
}
