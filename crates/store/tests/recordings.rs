//! Recording rows on both backends: saved, read while kept, hidden once expired, listed for
//! deletion, forgotten; a call deleted is gone, and a company deleted takes its rows with it.

use callfleet_core::domain::{CallDirection, CallRecord, CallStatus};
use callfleet_store::testing::test_stores;
use callfleet_store::{NewCompany, StoreError};

fn call(id: &str, company: &str) -> CallRecord {
    CallRecord {
        id: id.into(),
        company_id: company.into(),
        bot_id: "bot".into(),
        bot_config_version: 1,
        direction: CallDirection::Web,
        status: CallStatus::Completed,
        from_number: None,
        to_number: None,
        room: None,
        started_at: 1_000,
        ended_at: Some(2_000),
        language: None,
        transcript: vec![],
        fields: Default::default(),
        outcome: None,
        summary: None,
        metrics: vec![],
    }
}

#[tokio::test]
async fn recordings_are_kept_until_they_expire_and_go_with_their_call_or_company() {
    for db in test_stores().await {
        let name = format!("{:?}", db.backend);
        let s = &db.store;
        let company = |n: &str| NewCompany {
            name: n.into(),
            timezone: "UTC".into(),
            max_concurrent_calls: 1,
        };
        let a = s.create_company(company("A")).await.unwrap().id;
        let b = s.create_company(company("B")).await.unwrap().id;
        let far = callfleet_store::now_ms() + 86_400_000;
        s.upsert_call(&call("call_kept", &a)).await.unwrap();
        s.save_recording("call_kept", &a, "recordings/a/call_kept.wav", 100, far)
            .await
            .unwrap();
        s.save_recording("call_old", &a, "recordings/a/call_old.wav", 50, 10)
            .await
            .unwrap();
        s.save_recording("call_b", &b, "recordings/b/call_b.wav", 70, far)
            .await
            .unwrap();

        let kept = s.get_recording("call_kept").await.unwrap().expect("kept");
        assert_eq!(
            (
                kept.storage_key.as_str(),
                kept.bytes,
                kept.company_id.as_str()
            ),
            ("recordings/a/call_kept.wav", 100, a.as_str()),
            "{name}"
        );
        // Storing the call again (post-call processing retried) keeps its recording.
        s.upsert_call(&call("call_kept", &a)).await.unwrap();
        assert!(
            s.get_recording("call_kept").await.unwrap().is_some(),
            "{name}"
        );
        assert_eq!(
            s.get_recording("call_old").await.unwrap(),
            None,
            "{name}: expired"
        );
        let expired = s
            .expired_recordings(callfleet_store::now_ms(), 10)
            .await
            .unwrap();
        assert_eq!(
            expired
                .iter()
                .map(|r| r.call_id.as_str())
                .collect::<Vec<_>>(),
            ["call_old"],
            "{name}"
        );
        s.forget_recording("call_old").await.unwrap();
        assert!(s.expired_recordings(i64::MAX, 10).await.unwrap().len() == 2);

        s.delete_call("call_kept").await.unwrap();
        assert!(matches!(
            s.get_call("call_kept").await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            s.delete_call("call_kept").await,
            Err(StoreError::NotFound)
        ));

        assert_eq!(s.company_recordings(&b).await.unwrap().len(), 1, "{name}");
        s.delete_company(&b).await.unwrap();
        assert_eq!(s.get_recording("call_b").await.unwrap(), None, "{name}");
    }
}
