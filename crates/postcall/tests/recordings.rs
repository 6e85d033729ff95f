//! Post-call processing registers the recording an agent put in the recording store for a call
//! of a bot that records (expiring `retention_days` after the call), ignores bots that do not
//! record, and deletes recordings (bytes and row) once their retention is over. On SQLite and
//! PostgreSQL, with recordings in a data dir.

use callfleet_core::config::BotConfig;
use callfleet_core::domain::{CallDirection, CallRecord, CallStatus};
use callfleet_fleet::{FileQueue, PostCallQueue};
use callfleet_postcall::PostCallWorker;
use callfleet_recording::{recording_key, stereo_wav, DirStore, RecordingStore};
use callfleet_store::testing::test_stores;
use callfleet_store::{NewBot, NewCompany, Store};
use std::sync::Arc;
use std::time::Duration;

fn config(recording: &str) -> String {
    format!(
        "language: en\ngreeting: Hello!\nfallback: Sorry?\n{recording}\nscenarios:\n  - name: faq\n    trigger_keywords: [hours]\n"
    )
}

async fn bot(store: &Store, company: &str, yaml: &str) -> String {
    let config = BotConfig::parse_any(yaml).expect("valid config");
    store
        .create_bot(NewBot {
            company_id: company,
            name: "bot",
            config: &config,
            source_text: yaml,
            source_format: "yaml",
        })
        .await
        .unwrap()
        .0
        .id
}

fn call(id: &str, company: &str, bot: &str, ended_at: i64) -> CallRecord {
    CallRecord {
        id: id.into(),
        company_id: company.into(),
        bot_id: bot.into(),
        bot_config_version: 1,
        direction: CallDirection::Web,
        status: CallStatus::Completed,
        from_number: None,
        to_number: None,
        room: None,
        started_at: ended_at - 30_000,
        ended_at: Some(ended_at),
        language: Some("en".into()),
        transcript: vec![],
        fields: Default::default(),
        outcome: None,
        summary: None,
        metrics: vec![],
    }
}

#[tokio::test]
async fn recordings_of_recording_bots_are_registered_and_expire() {
    for db in test_stores().await {
        let name = format!("{:?}", db.backend);
        let store = db.store.clone();
        let company = store
            .create_company(NewCompany {
                name: "A".into(),
                timezone: "UTC".into(),
                max_concurrent_calls: 5,
            })
            .await
            .unwrap()
            .id;
        let recording = bot(
            &store,
            &company,
            &config("recording: {enabled: true, retention_days: 7}"),
        )
        .await;
        let silent = bot(&store, &company, &config("")).await;
        let dir = tempfile::tempdir().unwrap();
        let files: Arc<dyn RecordingStore> = Arc::new(DirStore::new(dir.path()));
        let queue_dir = tempfile::tempdir().unwrap();
        let queue: Arc<dyn PostCallQueue> = Arc::new(FileQueue::open(queue_dir.path()).unwrap());
        let worker =
            PostCallWorker::new(queue.clone(), store.clone(), "pc").with_recordings(files.clone());
        let wav = stereo_wav(&[5; 320], &[7; 320], 16_000);
        let now = callfleet_store::now_ms();
        let day = 86_400_000;

        // Recorded yesterday, kept a week; recorded ten days ago, already past its week; a bot
        // that does not record (even with bytes under its key).
        for (id, bot, ended) in [
            ("call_recent", &recording, now - day),
            ("call_old", &recording, now - 10 * day),
            ("call_silent", &silent, now - day),
        ] {
            files
                .put(&recording_key(&company, id), wav.clone())
                .await
                .unwrap();
            queue.push(&call(id, &company, bot, ended)).await.unwrap();
            assert!(worker.process_next(Duration::from_secs(1)).await.unwrap());
        }
        // A recording bot's call whose recording never arrived.
        queue
            .push(&call("call_lost", &company, &recording, now))
            .await
            .unwrap();
        assert!(worker.process_next(Duration::from_secs(1)).await.unwrap());

        let recent = store
            .get_recording("call_recent")
            .await
            .unwrap()
            .expect("registered");
        assert_eq!(recent.bytes, wav.len() as i64, "{name}");
        assert_eq!(
            recent.expires_at,
            now - day + 7 * day,
            "{name}: a week after the call"
        );
        assert_eq!(
            store.get_recording_any("call_silent").await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(
            store.get_recording_any("call_lost").await.unwrap(),
            None,
            "{name}"
        );
        assert!(
            store.get_recording_any("call_old").await.unwrap().is_some(),
            "{name}"
        );

        assert_eq!(worker.sweep_recordings().await.unwrap(), 1, "{name}");
        assert_eq!(
            store.get_recording_any("call_old").await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(
            files
                .get(&recording_key(&company, "call_old"))
                .await
                .unwrap(),
            None,
            "{name}: the expired bytes are deleted"
        );
        assert!(files
            .get(&recording_key(&company, "call_recent"))
            .await
            .unwrap()
            .is_some());
        assert_eq!(worker.sweep_recordings().await.unwrap(), 0, "{name}");
    }
}
