//! Call analysis is stored beside the call and filters the list, on every backend.

use callfleet_core::domain::{CallDirection, CallRecord, CallStatus};
use callfleet_store::testing::test_stores;
use callfleet_store::{CallAnalytics, CallFilter, NewCompany, StoreError};

fn call(id: &str, company: &str, started_at: i64, seconds: i64) -> CallRecord {
    CallRecord {
        id: id.into(),
        company_id: company.into(),
        bot_id: "bot_1".into(),
        bot_config_version: 1,
        direction: CallDirection::Web,
        status: CallStatus::Completed,
        from_number: None,
        to_number: None,
        room: None,
        started_at,
        ended_at: Some(started_at + seconds * 1_000),
        language: Some("en".into()),
        transcript: vec![],
        fields: Default::default(),
        outcome: None,
        summary: None,
        metrics: vec![],
    }
}

#[tokio::test]
async fn analysis_is_stored_shown_and_filtered_on() {
    for db in test_stores().await {
        let s = &db.store;
        let name = format!("{:?}", db.backend);
        let c = s
            .create_company(NewCompany {
                name: "A".into(),
                timezone: "UTC".into(),
                max_concurrent_calls: 5,
            })
            .await
            .unwrap()
            .id;
        for (id, start, secs, turns, interruptions, p95) in [
            ("call_short", 1_000, 10, 2, 0, Some(700)),
            ("call_long", 2_000, 300, 14, 3, Some(2_400)),
            ("call_silent", 3_000, 5, 0, 0, None),
        ] {
            s.upsert_call(&call(id, &c, start, secs)).await.unwrap();
            let analytics = CallAnalytics {
                duration_sec: Some(secs),
                turns,
                interruptions,
                latency_p95_ms: p95,
                ..CallAnalytics::default()
            };
            let summary = format!("summary of {id}");
            s.save_call_analysis(id, &analytics, Some((&summary, "llm")))
                .await
                .unwrap();
        }
        s.upsert_call(&call("call_unanalysed", &c, 4_000, 60))
            .await
            .unwrap();

        let long = s.get_call_analysis("call_long").await.unwrap().unwrap();
        assert_eq!(
            (long.turns, long.interruptions, long.latency_p95_ms),
            (14, 3, Some(2_400)),
            "{name}"
        );
        assert_eq!(
            s.get_call_analysis("call_unanalysed").await.unwrap(),
            None,
            "{name}"
        );
        assert!(matches!(
            s.get_call_analysis("nope").await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(
            s.get_call("call_long").await.unwrap().summary.as_deref(),
            Some("summary of call_long"),
            "{name}"
        );
        assert_eq!(
            s.get_call_summary("call_long").await.unwrap(),
            Some(("summary of call_long".to_string(), "llm".to_string())),
            "{name}: the summary and how it was made"
        );
        assert_eq!(
            s.get_call_summary("call_unanalysed").await.unwrap(),
            None,
            "{name}: no summary recorded yet"
        );
        assert_eq!(s.get_call_summary("nope").await.unwrap(), None, "{name}");
        assert!(matches!(
            s.save_call_analysis("nope", &CallAnalytics::default(), None)
                .await,
            Err(StoreError::NotFound)
        ));

        let ids = |filter: CallFilter| {
            let s = s.clone();
            let c = c.clone();
            async move {
                let filter = CallFilter {
                    company_id: Some(c),
                    ..filter
                };
                s.list_calls(&filter, None, 100)
                    .await
                    .unwrap()
                    .unwrap()
                    .calls
                    .into_iter()
                    .map(|c| c.id)
                    .collect::<Vec<_>>()
            }
        };
        for (filter, expected) in [
            (
                CallFilter {
                    min_duration_sec: Some(60),
                    ..Default::default()
                },
                vec!["call_unanalysed", "call_long"],
            ),
            (
                CallFilter {
                    max_duration_sec: Some(10),
                    ..Default::default()
                },
                vec!["call_silent", "call_short"],
            ),
            (
                CallFilter {
                    min_turns: Some(1),
                    ..Default::default()
                },
                vec!["call_long", "call_short"],
            ),
            (
                CallFilter {
                    interrupted: Some(true),
                    ..Default::default()
                },
                vec!["call_long"],
            ),
            (
                CallFilter {
                    interrupted: Some(false),
                    ..Default::default()
                },
                vec!["call_silent", "call_short"],
            ),
            (
                CallFilter {
                    min_latency_p95_ms: Some(1_000),
                    ..Default::default()
                },
                vec!["call_long"],
            ),
        ] {
            let debug = format!("{filter:?}");
            assert_eq!(ids(filter).await, expected, "{name}: {debug}");
        }
        let page = s
            .list_calls(
                &CallFilter {
                    company_id: Some(c.clone()),
                    min_turns: Some(10),
                    ..Default::default()
                },
                None,
                10,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                page.calls[0].summary.as_deref(),
                page.calls[0].summary_kind.as_deref(),
                page.calls[0].turns
            ),
            (Some("summary of call_long"), Some("llm"), Some(14)),
            "{name}: the list shows the summary and figures"
        );
    }
}
