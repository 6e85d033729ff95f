//! Webhook endpoints as the user sees them through the API, on every store backend: URLs that
//! point inside the network are refused with the reason (the default policy), outcome events can
//! be subscribed to, a delivery shows its attempt log, a replay keeps its id, and dead letters
//! are visible to their company only.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use callfleet_admin_api::{router, ApiConfig, ApiContext};
use callfleet_core::secret::Secret;
use callfleet_store::testing::test_stores;
use callfleet_store::{AttemptVerdict, DeliveryAttempt, DisableAfter, Store};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const ADMIN: &str = "admin-test-key";

struct Api {
    app: axum::Router,
}

impl Api {
    fn new(store: Store) -> Api {
        let config = ApiConfig {
            admin_key: Secret::new(ADMIN),
            ..ApiConfig::default()
        };
        Api {
            app: router(ApiContext::new(config, store)),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::from(bytes))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body)
    }

    async fn ok(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Value {
        let (status, reply) = self.call(method.clone(), path, key, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {reply}");
        reply
    }
}

/// A company and its key.
async fn tenant(api: &Api, name: &str) -> (String, String) {
    let company = api
        .ok(
            Method::POST,
            "/companies",
            ADMIN,
            Some(json!({"name": name})),
        )
        .await;
    let id = company["id"].as_str().unwrap().to_string();
    let key = api
        .ok(
            Method::POST,
            &format!("/companies/{id}/api-keys"),
            ADMIN,
            Some(json!({"name": "main"})),
        )
        .await;
    (id, key["key"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn urls_inside_the_network_are_refused_with_the_reason() {
    let db = callfleet_store::testing::sqlite().await;
    let api = Api::new(db.store.clone());
    let (_, key) = tenant(&api, "A").await;
    for (url, reason) in [
        ("http://127.0.0.1:9000/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://localhost:8080/hook", "local machine"),
        ("http://redis:6379/", "internal service name"),
        ("http://metadata.google.internal/", "internal network name"),
        ("ftp://crm.example.com/", "http:// or https://"),
    ] {
        let (status, body) = api
            .call(Method::POST, "/webhooks", &key, Some(json!({"url": url})))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        let detail = &body["error"]["details"][0];
        assert_eq!(detail["path"], "url", "{url}");
        let message = detail["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{url}: {message}");
    }
    let hook = api
        .ok(
            Method::POST,
            "/webhooks",
            &key,
            Some(json!({"url": "https://crm.example.com/hook"})),
        )
        .await;
    let (status, _) = api
        .call(
            Method::PATCH,
            &format!("/webhooks/{}", hook["id"].as_str().unwrap()),
            &key,
            Some(json!({"url": "http://169.254.169.254/"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "and on update");
}

#[tokio::test]
async fn deliveries_show_their_attempts_and_replay_with_the_same_id() {
    for db in test_stores().await {
        let name = format!("{:?}", db.backend);
        let store = &db.store;
        let api = Api::new(store.clone());
        let (a, key_a) = tenant(&api, "A").await;
        let (_, key_b) = tenant(&api, "B").await;

        let hook = api
            .ok(
                Method::POST,
                "/webhooks",
                &key_a,
                Some(json!({"url": "https://crm.example.com/hook", "events": ["call.completed", "booking.created"]})),
            )
            .await;
        assert_eq!(
            hook["events"],
            json!(["call.completed", "booking.created"]),
            "{name}"
        );
        assert_eq!(hook["disabled_reason"], Value::Null, "{name}");
        let (status, body) = api
            .call(
                Method::POST,
                "/webhooks",
                &key_a,
                Some(json!({"url": "https://crm.example.com/hook", "events": ["call.exploded"]})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");

        // What post-call processing and the deliverer leave behind: one delivery, two attempts.
        let endpoint = store
            .get_webhook(hook["id"].as_str().unwrap())
            .await
            .unwrap();
        let delivery = store
            .enqueue_delivery_at(
                &endpoint,
                "call.completed",
                Some("call_1"),
                &json!({"type": "call.completed"}),
                "k",
                1_000,
            )
            .await
            .unwrap()
            .unwrap();
        let disable = DisableAfter {
            failures: 2,
            run_ms: 0,
        };
        for (n, status, verdict) in [
            (1, 500, AttemptVerdict::RetryAt(2_000)),
            (2, 500, AttemptVerdict::GiveUp),
        ] {
            let attempt = DeliveryAttempt {
                id: DeliveryAttempt::new_id(),
                delivery_id: delivery.id.clone(),
                attempt: n,
                started_at: n * 1_000,
                latency_ms: 40,
                status_code: Some(status),
                error: None,
                response_excerpt: Some("receiver broken".into()),
            };
            store
                .record_delivery_attempt(&attempt, verdict, disable)
                .await
                .unwrap();
        }

        let path = format!("/webhook-deliveries/{}", delivery.id);
        let shown = api.ok(Method::GET, &path, &key_a, None).await;
        assert_eq!(shown["status"], "failed", "{name}");
        assert_eq!(shown["attempts"], 2, "{name}");
        let log = shown["attempts_log"].as_array().unwrap();
        assert_eq!(log.len(), 2, "{name}");
        assert_eq!(
            (
                &log[1]["status_code"],
                &log[1]["latency_ms"],
                &log[1]["response_excerpt"]
            ),
            (&json!(500), &json!(40), &json!("receiver broken")),
            "{name}"
        );
        let (status, _) = api.call(Method::GET, &path, &key_b, None).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{name}: another company's delivery"
        );

        // Two failures disabled the endpoint: the reason is shown, and a replay must wait.
        let hook_now = api
            .ok(
                Method::GET,
                &format!("/webhooks/{}", endpoint.id),
                &key_a,
                None,
            )
            .await;
        assert_eq!(hook_now["enabled"], false, "{name}");
        assert!(
            hook_now["disabled_reason"]
                .as_str()
                .unwrap()
                .contains("HTTP 500"),
            "{name}: {hook_now}"
        );
        let replay = format!("{path}/replay");
        let (status, body) = api.call(Method::POST, &replay, &key_a, None).await;
        assert_eq!(status, StatusCode::CONFLICT, "{name}: {body}");
        api.ok(
            Method::PATCH,
            &format!("/webhooks/{}", endpoint.id),
            &key_a,
            Some(json!({"enabled": true})),
        )
        .await;
        let (status, _) = api.call(Method::POST, &replay, &key_b, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}");
        let (status, replayed) = api.call(Method::POST, &replay, &key_a, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {replayed}");
        assert_eq!(
            (replayed["id"].as_str(), replayed["status"].as_str()),
            (Some(delivery.id.as_str()), Some("pending")),
            "{name}: the same webhook-id, due again"
        );
        assert_eq!(
            store.due_deliveries(i64::MAX, 10).await.unwrap().len(),
            1,
            "{name}"
        );

        // Dead letters: each company sees its own; the admin sees all.
        store
            .add_dead_letter(
                "1-0",
                "call_x",
                &a,
                &json!({"id": "call_x"}),
                5,
                "store: boom",
            )
            .await
            .unwrap();
        let mine = api.ok(Method::GET, "/dead-letters", &key_a, None).await;
        assert_eq!(mine[0]["call_id"], "call_x", "{name}");
        assert_eq!(mine[0]["last_error"], "store: boom", "{name}");
        let theirs = api.ok(Method::GET, "/dead-letters", &key_b, None).await;
        assert_eq!(theirs, json!([]), "{name}");
        let all = api.ok(Method::GET, "/dead-letters", ADMIN, None).await;
        assert_eq!(all.as_array().unwrap().len(), 1, "{name}");
    }
}
