//! A call's summary and analytics through the API: stored by post-call processing, computed on
//! the way out for a call stored before analysis existed, and filterable in the list.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use callfleet_admin_api::{router, ApiConfig, ApiContext};
use callfleet_core::domain::{
    CallDirection, CallRecord, CallStatus, Evidence, Outcome, Speaker, Turn, TurnMetrics,
};
use callfleet_core::secret::Secret;
use callfleet_store::testing::test_stores;
use callfleet_store::{CallAnalytics, NewCompany};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const ADMIN: &str = "admin-test-key";

async fn get(app: &axum::Router, path: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .uri(path)
        .method(Method::GET)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn turn(speaker: Speaker, text: &str, at_ms: u64, interrupted: bool) -> Turn {
    Turn {
        speaker,
        text: text.into(),
        at_ms,
        interrupted,
    }
}

fn call(id: &str, company: &str, started_at: i64) -> CallRecord {
    CallRecord {
        id: id.into(),
        company_id: company.into(),
        bot_id: "bot_1".into(),
        bot_config_version: 1,
        direction: CallDirection::Inbound,
        status: CallStatus::Completed,
        from_number: None,
        to_number: None,
        room: None,
        started_at,
        ended_at: Some(started_at + 20_000),
        language: Some("en".into()),
        transcript: vec![
            turn(Speaker::Bot, "Hello, how can I help?", 0, true),
            turn(Speaker::User, "Book a haircut", 1_000, false),
        ],
        fields: Default::default(),
        outcome: Some(Outcome {
            kind: "BOOKING".into(),
            evidence: vec![Evidence::Event {
                turn: 1,
                event: "booking_created".into(),
                scenario: Some("booking".into()),
            }],
        }),
        summary: None,
        metrics: vec![TurnMetrics {
            turn: 1,
            voice_to_voice_ms: Some(900),
            ..TurnMetrics::default()
        }],
    }
}

#[tokio::test]
async fn calls_show_their_analysis_and_filter_on_it() {
    for db in test_stores().await {
        let name = format!("{:?}", db.backend);
        let store = &db.store;
        let app = router(ApiContext::new(
            ApiConfig {
                admin_key: Secret::new(ADMIN),
                ..ApiConfig::default()
            },
            store.clone(),
        ));
        let company = store
            .create_company(NewCompany {
                name: "A".into(),
                timezone: "UTC".into(),
                max_concurrent_calls: 5,
            })
            .await
            .unwrap()
            .id;
        // One analysed by post-call processing, one stored before analysis existed.
        store
            .upsert_call(&call("call_analysed", &company, 2_000))
            .await
            .unwrap();
        let analytics = CallAnalytics {
            duration_sec: Some(20),
            turns: 12,
            caller_turns: 6,
            bot_turns: 6,
            interruptions: 2,
            latency_p50_ms: Some(800),
            latency_p95_ms: Some(1_900),
            latency_turns: 6,
            ..CallAnalytics::default()
        };
        store
            .save_call_analysis(
                "call_analysed",
                &analytics,
                Some(("The caller booked.", "llm")),
            )
            .await
            .unwrap();
        store
            .upsert_call(&call("call_old", &company, 1_000))
            .await
            .unwrap();

        let (status, analysed) = get(&app, "/calls/call_analysed").await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(analysed["summary"], "The caller booked.", "{name}");
        assert_eq!(analysed["summary_kind"], "llm", "{name}: how it was made");
        assert_eq!(analysed["analytics"]["turns"], 12, "{name}");
        assert_eq!(analysed["analytics"]["latency_p95_ms"], 1_900, "{name}");
        assert_eq!(
            analysed["outcome"]["evidence"][0],
            serde_json::json!({"kind": "event", "turn": 1, "event": "booking_created", "scenario": "booking"}),
            "{name}: the outcome carries its evidence"
        );
        let (_, old) = get(&app, "/calls/call_old").await;
        assert_eq!(
            (
                &old["analytics"]["turns"],
                &old["analytics"]["interruptions"]
            ),
            (&Value::from(2), &Value::from(1)),
            "{name}: computed from the record"
        );
        assert_eq!(old["analytics"]["latency_p50_ms"], 900, "{name}");

        let list = |query: &str| {
            let app = app.clone();
            let path = format!("/calls?company_id={company}&{query}");
            async move {
                let (status, page) = get(&app, &path).await;
                assert_eq!(status, StatusCode::OK, "{path}: {page}");
                page["calls"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["id"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(list("interrupted=true").await, ["call_analysed"], "{name}");
        assert_eq!(list("min_turns=10").await, ["call_analysed"], "{name}");
        assert_eq!(
            list("min_latency_p95_ms=2000").await,
            Vec::<String>::new(),
            "{name}"
        );
        assert_eq!(
            list("min_duration_sec=20").await,
            ["call_analysed", "call_old"],
            "{name}"
        );
        assert_eq!(
            list("max_duration_sec=19").await,
            Vec::<String>::new(),
            "{name}"
        );
        let (status, _) = get(
            &app,
            &format!("/calls?company_id={company}&interrupted=maybe"),
        )
        .await;
        assert!(status.is_client_error(), "{name}: {status}");
    }
}
