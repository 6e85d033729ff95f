//! Property test over the LiveKit webhook verifier at `POST /livekit/webhook`: any change to a
//! signed event's body, or to its token, is refused (401), and correctly signed garbage gets a
//! clear answer, never a panic or a 5xx. Seeded (testkit::fuzz), so a failure names its input.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use callfleet_core::BotConfig;
use callfleet_dispatcher::{webhook_router, Dispatcher, DispatcherConfig, WebhookState};
use callfleet_fleet::{FleetBus, MemoryBus, WorkerStatus, MESSAGE_VERSION};
use callfleet_store::{NewBot, NewCompany};
use callfleet_testkit::fuzz::Mutator;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const CONFIG: &str = "language: en\ngreeting: Hi\nfallback: Sorry\n";

fn signed(body: &[u8], secret: &str) -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
    livekit_api::access_token::AccessToken::with_api_key("lkkey", secret)
        .with_sha256(&hash)
        .to_jwt()
        .unwrap()
}

async fn post(app: &axum::Router, body: &[u8], auth: &[u8]) -> StatusCode {
    let mut request =
        Request::post("/livekit/webhook").header("content-type", "application/webhook+json");
    // A mutated token may not be a valid header value; such a request never reaches us.
    if let Ok(value) = axum::http::HeaderValue::from_bytes(auth) {
        request = request.header("authorization", value);
    }
    let request = request.body(Body::from(body.to_vec())).unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn changed_events_and_tokens_are_refused_and_signed_garbage_is_answered() {
    let db = callfleet_store::testing::sqlite().await;
    let company = db
        .store
        .create_company(NewCompany {
            name: "A".into(),
            timezone: "UTC".into(),
            max_concurrent_calls: 100_000,
        })
        .await
        .unwrap();
    let config = BotConfig::parse_any(CONFIG).unwrap();
    let (bot, _) = db
        .store
        .create_bot(NewBot {
            company_id: &company.id,
            name: "bot",
            config: &config,
            source_text: CONFIG,
            source_format: "yaml",
        })
        .await
        .unwrap();
    db.store
        .add_phone_number(&company.id, &bot.id, "+74951234567")
        .await
        .unwrap();
    let bus: Arc<dyn FleetBus> = Arc::new(MemoryBus::new());
    bus.heartbeat(
        &WorkerStatus {
            v: MESSAGE_VERSION,
            worker_id: "w1".into(),
            capacity: 1_000_000,
            active_calls: 0,
            cpu: 0.0,
            memory_bytes: 0,
            provider_connections: 0,
            draining: false,
            at: 0,
        },
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    let dispatcher = Arc::new(Dispatcher::new(
        bus,
        db.store.clone(),
        DispatcherConfig::default(),
    ));
    let app = webhook_router(WebhookState::new(dispatcher, "lkkey", "lksecret"));

    let events: Vec<Vec<u8>> = [
        serde_json::json!({
            "event": "participant_joined", "id": "EV_1", "createdAt": "1700000000",
            "room": {"sid": "RM_1", "name": "sip-room-1"},
            "participant": {"sid": "PA_1", "identity": "sip_caller", "kind": "SIP",
                "attributes": {"sip.phoneNumber": "+79161234567", "sip.trunkPhoneNumber": "+74951234567"}}
        }),
        serde_json::json!({
            "event": "room_started", "id": "EV_2", "createdAt": "1700000000",
            "room": {"sid": "RM_2", "name": "web-room", "metadata": format!("{{\"bot_id\": \"{}\"}}", bot.id)}
        }),
    ]
    .iter()
    .map(|e| e.to_string().into_bytes())
    .collect();
    let iterations: usize = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_500);
    let mut mutator = Mutator::new(0x11FE);
    for i in 0..iterations {
        let original = &events[i % events.len()];
        let token = signed(original, "lksecret");

        let body = mutator.mutant(std::slice::from_ref(original), 64 << 10);
        if &body != original {
            let status = post(&app, &body, token.as_bytes()).await;
            // 400 when the body is not even text (refused before the signature is looked at).
            assert!(
                status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST,
                "#{i}: {status} for a changed body: {:?}",
                String::from_utf8_lossy(&body)
            );
        }

        let auth = mutator.mutant(&[token.clone().into_bytes()], 8 << 10);
        if auth != token.as_bytes() {
            let status = post(&app, original, &auth).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "#{i}: a changed token passed: {:?}",
                String::from_utf8_lossy(&auth)
            );
        }

        // Garbage, correctly signed: whatever it is, a clear answer.
        let status = post(&app, &body, signed(&body, "lksecret").as_bytes()).await;
        assert!(
            !status.is_server_error(),
            "#{i}: {status} for signed {:?}",
            String::from_utf8_lossy(&body)
        );
    }
}
