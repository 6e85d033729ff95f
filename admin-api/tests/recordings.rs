//! `GET /calls/{id}/recording` serves a call's two-channel WAV to the company that owns the call
//! (and the admin key), never to another company; an expired or absent recording is 404;
//! `DELETE /calls/{id}` deletes the call with its recording's bytes; deleting a company deletes
//! its recordings' bytes. On SQLite and PostgreSQL, recordings in a data dir.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use callfleet_admin_api::{router, ApiConfig, ApiContext};
use callfleet_core::domain::{CallDirection, CallRecord, CallStatus};
use callfleet_core::secret::Secret;
use callfleet_recording::{recording_key, stereo_wav, DirStore, RecordingStore};
use callfleet_store::testing::test_stores;
use callfleet_store::NewCompany;
use http_body_util::BodyExt;
use std::sync::Arc;
use tower::ServiceExt;

const ADMIN: &str = "admin-test-key";

async fn send(
    app: &axum::Router,
    method: Method,
    path: &str,
    key: &str,
) -> (StatusCode, Vec<u8>, String) {
    let request = Request::builder()
        .uri(path)
        .method(method)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec(), kind)
}

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
async fn recordings_are_served_to_their_company_only_and_deleted_with_the_call() {
    for db in test_stores().await {
        let name = format!("{:?}", db.backend);
        let store = &db.store;
        let dir = tempfile::tempdir().unwrap();
        let files: Arc<dyn RecordingStore> = Arc::new(DirStore::new(dir.path()));
        let app = router(
            ApiContext::new(
                ApiConfig {
                    admin_key: Secret::new(ADMIN),
                    ..ApiConfig::default()
                },
                store.clone(),
            )
            .with_recordings(files.clone()),
        );
        let company = |n: &str| NewCompany {
            name: n.into(),
            timezone: "UTC".into(),
            max_concurrent_calls: 5,
        };
        let a = store.create_company(company("A")).await.unwrap().id;
        let b = store.create_company(company("B")).await.unwrap().id;
        let key_a = store.create_api_key(&a, "a").await.unwrap().secret;
        let key_b = store.create_api_key(&b, "b").await.unwrap().secret;
        let far = callfleet_store::now_ms() + 86_400_000;
        let wav = stereo_wav(&[100; 160], &[-100; 80], 16_000);
        for (id, company, expires) in [
            ("call_rec", &a, far),
            ("call_old", &a, 10),
            ("call_b", &b, far),
        ] {
            store.upsert_call(&call(id, company)).await.unwrap();
            let key = recording_key(company, id);
            files.put(&key, wav.clone()).await.unwrap();
            store
                .save_recording(id, company, &key, wav.len() as i64, expires)
                .await
                .unwrap();
        }
        store.upsert_call(&call("call_plain", &a)).await.unwrap();

        let (status, body, kind) =
            send(&app, Method::GET, "/calls/call_rec/recording", &key_a).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!((body, kind.as_str()), (wav.clone(), "audio/wav"), "{name}");
        let (status, ..) = send(&app, Method::GET, "/calls/call_rec/recording", ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{name}: the admin key");
        for (path, key, why) in [
            ("/calls/call_rec/recording", &key_b, "another company"),
            ("/calls/call_old/recording", &key_a, "expired"),
            ("/calls/call_plain/recording", &key_a, "never recorded"),
            ("/calls/nope/recording", &key_a, "no such call"),
        ] {
            let (status, ..) = send(&app, Method::GET, path, key).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{name}: {why}");
        }

        let (status, ..) = send(&app, Method::DELETE, "/calls/call_rec", &key_b).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}: not B's call");
        let (status, ..) = send(&app, Method::DELETE, "/calls/call_rec", &key_a).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{name}");
        assert_eq!(
            files.get(&recording_key(&a, "call_rec")).await.unwrap(),
            None,
            "{name}: bytes gone"
        );
        let (status, ..) = send(&app, Method::GET, "/calls/call_rec", &key_a).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}: call gone");
        let (status, ..) = send(&app, Method::DELETE, "/calls/call_old", &key_a).await;
        assert_eq!(
            status,
            StatusCode::NO_CONTENT,
            "{name}: an expired recording goes too"
        );
        assert_eq!(
            files.get(&recording_key(&a, "call_old")).await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(
            store.get_recording_any("call_old").await.unwrap(),
            None,
            "{name}"
        );

        let (status, ..) = send(&app, Method::DELETE, &format!("/companies/{b}"), ADMIN).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{name}");
        assert_eq!(
            files.get(&recording_key(&b, "call_b")).await.unwrap(),
            None,
            "{name}: a deleted company's recordings are deleted"
        );
    }
}
