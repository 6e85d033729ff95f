//! Embed keys: a public page's key starts browser calls with the bots it names, from the origins
//! it names, rate limited, and reaches nothing else: no transcripts, configs, webhooks or keys.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use callfleet_admin_api::{router, ApiConfig, ApiContext, BrowserCalls};
use callfleet_core::secret::Secret;
use callfleet_dispatcher::{Dispatcher, DispatcherConfig};
use callfleet_fleet::{FleetBus, MemoryBus, WorkerStatus, MESSAGE_VERSION};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const ADMIN: &str = "admin-embed-key";
const BOT: &str = "language: en\ngreeting: Hello!\nfallback: Sorry?\n";
const PAGE: &str = "https://shop.example.com";

struct Reply {
    status: StatusCode,
    body: Value,
    headers: axum::http::HeaderMap,
}

async fn send(
    app: &axum::Router,
    method: Method,
    path: &str,
    key: &str,
    origin: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {key}"));
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers,
    }
}

async fn ok(app: &axum::Router, method: Method, path: &str, key: &str, body: Value) -> Value {
    let reply = send(app, method, path, key, None, Some(body)).await;
    assert!(
        reply.status.is_success(),
        "{path}: {} {}",
        reply.status,
        reply.body
    );
    reply.body
}

/// A company with an API key and two bots.
async fn company(app: &axum::Router, name: &str) -> (String, String, String, String) {
    let company = ok(
        app,
        Method::POST,
        "/companies",
        ADMIN,
        json!({"name": name}),
    )
    .await;
    let id = company["id"].as_str().unwrap().to_string();
    let key = ok(
        app,
        Method::POST,
        &format!("/companies/{id}/api-keys"),
        ADMIN,
        json!({}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bots = Vec::new();
    for _ in 0..2 {
        let bot = ok(app, Method::POST, "/bots", &key, json!({"config": BOT})).await;
        bots.push(bot["id"].as_str().unwrap().to_string());
    }
    (id, key, bots[0].clone(), bots[1].clone())
}

#[tokio::test]
async fn an_embed_key_starts_calls_with_its_bots_and_reaches_nothing_else() {
    let db = callfleet_store::testing::sqlite().await;
    let bus: Arc<dyn FleetBus> = Arc::new(MemoryBus::new());
    let dispatcher = Arc::new(Dispatcher::new(
        bus.clone(),
        db.store.clone(),
        DispatcherConfig::default(),
    ));
    let calls = BrowserCalls {
        dispatcher,
        livekit_url: "ws://127.0.0.1:7880".into(),
        api_key: "devkey".into(),
        api_secret: Secret::new("secret"),
    };
    let config = ApiConfig {
        admin_key: Secret::new(ADMIN),
        embed_sessions_per_min: 3,
        ..ApiConfig::default()
    };
    let app = router(ApiContext::new(config, db.store.clone()).with_browser_calls(calls));
    bus.heartbeat(
        &WorkerStatus {
            v: MESSAGE_VERSION,
            worker_id: "w1".into(),
            capacity: 100,
            active_calls: 0,
            cpu: 0.0,
            memory_bytes: 0,
            provider_connections: 0,
            draining: false,
            at: 0,
        },
        Duration::from_secs(600),
    )
    .await
    .unwrap();

    let (_, key_a, bot, unlisted) = company(&app, "A").await;
    let (_, _, other_company_bot, _) = company(&app, "B").await;

    // A key may only name its own company's bots, and only real origins.
    for (body, status) in [
        (
            json!({"bot_ids": [other_company_bot]}),
            StatusCode::NOT_FOUND,
        ),
        (json!({"bot_ids": []}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"bot_ids": [bot], "allowed_origins": ["https://x.com/path"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let reply = send(&app, Method::POST, "/embed-keys", &key_a, None, Some(body)).await;
        assert_eq!(reply.status, status, "{}", reply.body);
    }
    let created = ok(
        &app,
        Method::POST,
        "/embed-keys",
        &key_a,
        json!({"name": "site", "bot_ids": [bot], "allowed_origins": [PAGE]}),
    )
    .await;
    let embed = created["key"].as_str().unwrap().to_string();
    assert!(embed.starts_with("cfe_"));
    let listed = ok(&app, Method::GET, "/embed-keys", &key_a, json!(null)).await;
    assert_eq!(listed[0]["bot_ids"], json!([bot]));
    assert!(
        !listed.to_string().contains(&embed),
        "a listing never shows the key"
    );

    // From the allowed page: a session, with CORS for that page.
    let session = send(
        &app,
        Method::POST,
        &format!("/bots/{bot}/sessions"),
        &embed,
        Some(PAGE),
        None,
    )
    .await;
    assert_eq!(session.status, StatusCode::CREATED, "{}", session.body);
    assert!(session.body["token"].as_str().is_some());
    assert_eq!(session.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], PAGE);

    // From another page, or for a bot the key does not name: refused.
    let elsewhere = send(
        &app,
        Method::POST,
        &format!("/bots/{bot}/sessions"),
        &embed,
        Some("https://evil.example.net"),
        None,
    )
    .await;
    assert_eq!(
        elsewhere.status,
        StatusCode::FORBIDDEN,
        "{}",
        elsewhere.body
    );
    for other in [&unlisted, &other_company_bot] {
        let reply = send(
            &app,
            Method::POST,
            &format!("/bots/{other}/sessions"),
            &embed,
            Some(PAGE),
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    }

    // Everything else: as if the key did not exist.
    for (method, path) in [
        (Method::GET, "/calls".to_string()),
        (Method::GET, format!("/bots/{bot}")),
        (Method::GET, format!("/bots/{bot}/config")),
        (Method::GET, "/webhooks".to_string()),
        (Method::GET, "/embed-keys".to_string()),
        (Method::POST, "/embed-keys".to_string()),
    ] {
        let reply = send(&app, method.clone(), &path, &embed, Some(PAGE), None).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {}",
            reply.body
        );
    }

    // Rate limited per key: three a minute here, all spent above (the refused bots included:
    // each was a try with the key; the refused origin was stopped before it counted).
    let limited = send(
        &app,
        Method::POST,
        &format!("/bots/{bot}/sessions"),
        &embed,
        Some(PAGE),
        None,
    )
    .await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.body
    );
    assert!(limited.headers.contains_key(header::RETRY_AFTER));

    // Revoked: it stops working at once.
    let id = created["id"].as_str().unwrap();
    let revoked = send(
        &app,
        Method::DELETE,
        &format!("/embed-keys/{id}"),
        &key_a,
        None,
        None,
    )
    .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = send(
        &app,
        Method::POST,
        &format!("/bots/{bot}/sessions"),
        &embed,
        Some(PAGE),
        None,
    )
    .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.body);
}

#[tokio::test]
async fn a_preflight_from_any_page_is_answered_without_a_key() {
    let db = callfleet_store::testing::sqlite().await;
    let app = router(ApiContext::new(
        ApiConfig {
            admin_key: Secret::new(ADMIN),
            ..ApiConfig::default()
        },
        db.store.clone(),
    ));
    let response = app
        .oneshot(
            Request::builder()
                .method(Method::OPTIONS)
                .uri("/bots/bot_x/sessions")
                .header(header::ORIGIN, PAGE)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        PAGE
    );
    assert!(response.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .contains("authorization"));
}
