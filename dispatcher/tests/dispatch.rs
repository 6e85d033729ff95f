//! Placement, admission control, failover and webhooks, on the in-process bus and on Redis.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use callfleet_core::domain::CallDirection;
use callfleet_core::BotConfig;
use callfleet_dispatcher::{
    webhook_router, Dispatcher, DispatcherConfig, PlaceError, PlacementRequest, WebhookState,
};
use callfleet_fleet::testing::test_buses;
use callfleet_fleet::{FleetBus, WorkerStatus, MESSAGE_VERSION};
use callfleet_store::testing::{sqlite, TestDb};
use callfleet_store::{BotPatch, NewBot, NewCompany, Store};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const CONFIG: &str = "language: en\ngreeting: Hi\nfallback: Sorry\n";

async fn company_with_bot(store: &Store, limit: i64) -> (String, String) {
    let company = store
        .create_company(NewCompany {
            name: "A".into(),
            timezone: "UTC".into(),
            max_concurrent_calls: limit,
        })
        .await
        .unwrap();
    let config = BotConfig::parse_any(CONFIG).unwrap();
    let new = NewBot {
        company_id: &company.id,
        name: "bot",
        config: &config,
        source_text: CONFIG,
        source_format: "yaml",
    };
    let (bot, _) = store.create_bot(new).await.unwrap();
    store
        .put_bot_config(&bot.id, &config, CONFIG, "yaml")
        .await
        .unwrap();
    (company.id, bot.id)
}

fn worker(id: &str, active: u32, capacity: u32) -> WorkerStatus {
    WorkerStatus {
        v: MESSAGE_VERSION,
        worker_id: id.into(),
        capacity,
        active_calls: active,
        cpu: 0.1,
        memory_bytes: 0,
        provider_connections: 0,
        draining: false,
        at: 0,
    }
}

fn request(room: &str, bot: &str) -> PlacementRequest {
    PlacementRequest {
        room: room.into(),
        bot_id: bot.into(),
        direction: CallDirection::Web,
        caller_identity: None,
        from_number: None,
        to_number: None,
    }
}

fn dispatcher(bus: &Arc<dyn FleetBus>, db: &TestDb, id: &str) -> Arc<Dispatcher> {
    let config = DispatcherConfig {
        id: id.into(),
        ..DispatcherConfig::default()
    };
    Arc::new(Dispatcher::new(bus.clone(), db.store.clone(), config))
}

#[tokio::test]
async fn rooms_go_to_the_least_loaded_worker_once() {
    for (name, bus) in test_buses().await {
        let db = sqlite().await;
        let (_, bot) = company_with_bot(&db.store, 10).await;
        let d = dispatcher(&bus, &db, "d1");
        bus.heartbeat(&worker("w1", 3, 10), Duration::from_secs(30))
            .await
            .unwrap();
        bus.heartbeat(&worker("w2", 1, 10), Duration::from_secs(30))
            .await
            .unwrap();
        let placed = d.place(request("room-1", &bot)).await.unwrap();
        assert_eq!(placed.worker_id, "w2", "{name}");
        assert_eq!(
            placed.job.config_version, 2,
            "{name}: the bot's current config version"
        );
        assert_eq!(
            placed.job.config["greeting"], "Hi",
            "{name}: the job carries the config itself"
        );
        assert_eq!(
            bus.next_job("w2", Duration::from_secs(1))
                .await
                .unwrap()
                .unwrap()
                .call_id,
            placed.job.call_id,
            "{name}"
        );
        let again = d.place(request("room-1", &bot)).await.unwrap_err();
        assert!(
            matches!(again, PlaceError::AlreadyPlaced(_)),
            "{name}: {again}"
        );
        let other = dispatcher(&bus, &db, "d2");
        assert!(
            matches!(
                other.place(request("room-1", &bot)).await,
                Err(PlaceError::AlreadyPlaced(_))
            ),
            "{name}: another dispatcher too"
        );
    }
}

#[tokio::test]
async fn concurrent_dispatchers_place_a_room_exactly_once() {
    for (name, bus) in test_buses().await {
        let db = sqlite().await;
        let (_, bot) = company_with_bot(&db.store, 100).await;
        bus.heartbeat(&worker("w1", 0, 100), Duration::from_secs(30))
            .await
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let d = dispatcher(&bus, &db, &format!("d{i}"));
            let bot = bot.clone();
            tasks.spawn(async move { d.place(request("room-race", &bot)).await.is_ok() });
        }
        let mut successes = 0;
        while let Some(ok) = tasks.join_next().await {
            successes += usize::from(ok.unwrap());
        }
        assert_eq!(successes, 1, "{name}");
        assert_eq!(bus.jobs_of("w1").await.unwrap().len(), 1, "{name}");
    }
}

#[tokio::test]
async fn admission_control_says_why_nothing_was_placed() {
    for (name, bus) in test_buses().await {
        let db = sqlite().await;
        let (_, bot) = company_with_bot(&db.store, 2).await;
        let d = dispatcher(&bus, &db, "d1");
        assert!(
            matches!(
                d.place(request("r0", &bot)).await,
                Err(PlaceError::NoCapacity)
            ),
            "{name}: no workers"
        );
        bus.heartbeat(&worker("w1", 0, 10), Duration::from_secs(30))
            .await
            .unwrap();
        d.place(request("r0", &bot))
            .await
            .expect("the failed attempt released its claim");
        d.place(request("r1", &bot)).await.unwrap();
        let limited = d.place(request("r2", &bot)).await.unwrap_err();
        assert!(
            matches!(limited, PlaceError::CompanyLimit { limit: 2, .. }),
            "{name}: {limited}"
        );
        assert!(
            matches!(
                d.place(request("r3", "bot_missing")).await,
                Err(PlaceError::BotNotFound(_))
            ),
            "{name}"
        );
        let (_, bot2) = company_with_bot(&db.store, 5).await;
        db.store
            .update_bot(
                &bot2,
                BotPatch {
                    status: Some(callfleet_core::domain::BotStatus::Disabled),
                    name: None,
                },
            )
            .await
            .unwrap();
        assert!(
            matches!(
                d.place(request("r4", &bot2)).await,
                Err(PlaceError::BotDisabled(_))
            ),
            "{name}"
        );
        bus.heartbeat(
            &WorkerStatus {
                draining: true,
                ..worker("w1", 2, 10)
            },
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        let (_, bot3) = company_with_bot(&db.store, 5).await;
        assert!(
            matches!(
                d.place(request("r5", &bot3)).await,
                Err(PlaceError::NoCapacity)
            ),
            "{name}: draining workers take nothing"
        );
    }
}

/// Lets `d` pass for the bus named `name`: the in-process bus reads tokio's clock, so its TTLs run
/// out on the paused clock at once; Redis keeps its own time, so for it the test sleeps.
async fn pass(name: &str, d: Duration) {
    if name == "redis" {
        tokio::time::sleep(d).await;
    } else {
        tokio::time::pause();
        tokio::time::advance(d).await;
        tokio::time::resume();
    }
}

#[tokio::test]
async fn a_dead_workers_calls_move_to_live_workers() {
    for (name, bus) in test_buses().await {
        let db = sqlite().await;
        let (_, bot) = company_with_bot(&db.store, 10).await;
        let d = dispatcher(&bus, &db, "d1");
        // Long enough that w1 is surely alive through two placements on a loaded machine (the
        // Redis bus keeps the TTL in Redis, so no paused clock can stand in for its wait).
        bus.heartbeat(&worker("w1", 0, 10), Duration::from_millis(1500))
            .await
            .unwrap();
        let a = d.place(request("room-a", &bot)).await.unwrap();
        let b = d.place(request("room-b", &bot)).await.unwrap();
        assert_eq!(
            (a.worker_id.as_str(), b.worker_id.as_str()),
            ("w1", "w1"),
            "{name}"
        );
        bus.heartbeat(&worker("w2", 0, 10), Duration::from_secs(30))
            .await
            .unwrap();
        bus.heartbeat(&worker("w3", 0, 10), Duration::from_secs(30))
            .await
            .unwrap();
        assert!(
            d.failover_tick().await.unwrap().is_empty(),
            "{name}: w1 is still alive"
        );

        pass(name, Duration::from_millis(2000)).await; // w1 stops beating
        let moved = d.failover_tick().await.unwrap();
        let mut targets: Vec<(String, String, u32)> = moved
            .iter()
            .map(|p| (p.job.room.clone(), p.worker_id.clone(), p.job.attempt))
            .collect();
        targets.sort();
        assert_eq!(
            targets,
            [
                ("room-a".to_string(), "w2".to_string(), 1),
                ("room-b".to_string(), "w3".to_string(), 1)
            ],
            "{name}: spread over the live workers, marked as a second attempt"
        );
        assert_eq!(
            moved[0].job.call_id,
            if moved[0].job.room == "room-a" {
                a.job.call_id.clone()
            } else {
                b.job.call_id.clone()
            },
            "{name}: same call id, so the checkpoint follows"
        );
        assert!(
            !bus.known_workers()
                .await
                .unwrap()
                .contains(&"w1".to_string()),
            "{name}: w1 forgotten"
        );
        assert!(
            d.failover_tick().await.unwrap().is_empty(),
            "{name}: nothing moves twice"
        );
    }
}

fn signed(body: &str, key: &str, secret: &str) -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()));
    livekit_api::access_token::AccessToken::with_api_key(key, secret)
        .with_sha256(&hash)
        .to_jwt()
        .unwrap()
}

async fn post(app: &axum::Router, body: &str, auth: &str) -> StatusCode {
    let request = Request::post("/livekit/webhook")
        .header("content-type", "application/webhook+json")
        .header("authorization", auth)
        .body(Body::from(body.to_string()))
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn webhooks_are_verified_and_route_sip_calls_by_called_number() {
    for (name, bus) in test_buses().await {
        let db = sqlite().await;
        let (company, bot) = company_with_bot(&db.store, 10).await;
        db.store
            .add_phone_number(&company, &bot, "+74951234567")
            .await
            .unwrap();
        bus.heartbeat(&worker("w1", 0, 10), Duration::from_secs(30))
            .await
            .unwrap();
        let app = webhook_router(WebhookState::new(
            dispatcher(&bus, &db, "d1"),
            "lkkey",
            "lksecret",
        ));

        let sip = serde_json::json!({
            "event": "participant_joined",
            "id": "EV_1",
            "createdAt": "1700000000",
            "room": {"sid": "RM_1", "name": "sip-room-1"},
            "participant": {"sid": "PA_1", "identity": "sip_caller", "kind": "SIP",
                "attributes": {"sip.phoneNumber": "+79161234567", "sip.trunkPhoneNumber": "+74951234567"}}
        })
        .to_string();
        assert_eq!(
            post(&app, &sip, &signed(&sip, "lkkey", "lksecret")).await,
            StatusCode::OK,
            "{name}"
        );
        let job = bus
            .next_job("w1", Duration::from_secs(1))
            .await
            .unwrap()
            .expect("SIP call placed");
        assert_eq!(job.bot_id, bot, "{name}");
        assert_eq!(
            (
                job.direction,
                job.from_number.as_deref(),
                job.caller_identity.as_deref()
            ),
            (
                CallDirection::Inbound,
                Some("+79161234567"),
                Some("sip_caller")
            ),
            "{name}"
        );

        let wrong_secret = signed(&sip, "lkkey", "not-the-secret");
        assert_eq!(
            post(&app, &sip, &wrong_secret).await,
            StatusCode::UNAUTHORIZED,
            "{name}"
        );
        let tampered = sip.replace("+74951234567", "+74950000000");
        assert_eq!(
            post(&app, &tampered, &signed(&sip, "lkkey", "lksecret")).await,
            StatusCode::UNAUTHORIZED,
            "{name}: body hash"
        );
        assert_eq!(
            post(&app, &sip, &signed(&sip, "otherkey", "lksecret")).await,
            StatusCode::UNAUTHORIZED,
            "{name}: issuer"
        );
        assert_eq!(
            post(&app, &sip, "").await,
            StatusCode::UNAUTHORIZED,
            "{name}"
        );

        let unknown = sip
            .replace("+74951234567", "+74950000000")
            .replace("sip-room-1", "sip-room-2");
        assert_eq!(
            post(&app, &unknown, &signed(&unknown, "lkkey", "lksecret")).await,
            StatusCode::OK,
            "{name}"
        );
        let web = serde_json::json!({"event": "room_started", "id": "EV_2", "room": {"name": "web-room", "metadata": format!("{{\"bot_id\":\"{bot}\"}}")}}).to_string();
        assert_eq!(
            post(&app, &web, &signed(&web, "lkkey", "lksecret")).await,
            StatusCode::OK,
            "{name}"
        );
        let job = bus
            .next_job("w1", Duration::from_secs(1))
            .await
            .unwrap()
            .expect("web room placed");
        assert_eq!(
            (job.room.as_str(), job.direction),
            ("web-room", CallDirection::Web),
            "{name}: the unknown number placed nothing"
        );
    }
}

/// Placements racing for one company (from two dispatchers) cannot pass its concurrent-call
/// limit: counting and assigning is one step per company.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_placements_never_pass_the_company_limit() {
    for (name, bus) in test_buses().await {
        let db = sqlite().await;
        let (_, bot) = company_with_bot(&db.store, 3).await;
        for w in ["w1", "w2"] {
            bus.heartbeat(&worker(w, 0, 100), Duration::from_secs(60))
                .await
                .unwrap();
        }
        let (d1, d2) = (dispatcher(&bus, &db, "d1"), dispatcher(&bus, &db, "d2"));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..24 {
            let d = if i % 2 == 0 { d1.clone() } else { d2.clone() };
            let bot = bot.clone();
            tasks.spawn(async move { d.place(request(&format!("race-{i}"), &bot)).await });
        }
        let (mut placed, mut limited) = (0, 0);
        while let Some(outcome) = tasks.join_next().await {
            match outcome.unwrap() {
                Ok(_) => placed += 1,
                Err(PlaceError::CompanyLimit { .. }) => limited += 1,
                Err(e) => panic!("{name}: {e}"),
            }
        }
        assert_eq!((placed, limited), (3, 21), "{name}");
        let mut held = 0;
        for w in ["w1", "w2"] {
            held += bus.jobs_of(w).await.unwrap().len();
        }
        assert_eq!(held, 3, "{name}");
    }
}

/// A room whose call ended can be placed again at once; while the call runs it cannot.
#[tokio::test]
async fn an_ended_calls_room_is_released() {
    for (name, bus) in test_buses().await {
        let db = sqlite().await;
        let (_, bot) = company_with_bot(&db.store, 10).await;
        bus.heartbeat(&worker("w1", 0, 10), Duration::from_secs(60))
            .await
            .unwrap();
        let d = dispatcher(&bus, &db, "d1");
        let first = d.place(request("room-again", &bot)).await.unwrap();
        assert!(
            bus.holds_job("w1", &first.job.call_id).await.unwrap(),
            "{name}"
        );
        assert!(matches!(
            d.place(request("room-again", &bot)).await,
            Err(PlaceError::AlreadyPlaced(_))
        ));
        // The worker ends the call: it finishes the job and frees the room.
        bus.finish_job("w1", &first.job.call_id).await.unwrap();
        bus.release_room("room-again").await.unwrap();
        assert!(
            !bus.holds_job("w1", &first.job.call_id).await.unwrap(),
            "{name}"
        );
        let second = d.place(request("room-again", &bot)).await.unwrap();
        assert_ne!(second.job.call_id, first.job.call_id, "{name}");
    }
}
