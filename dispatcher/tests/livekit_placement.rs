//! Rooms LiveKit's agent dispatch gave a worker (`--dispatch livekit`): admitted like any
//! placement but on that worker with its call id, once per room; a resumed dispatch moves the call
//! from its dead worker with `attempt` + 1, and never takes a call from a live one. On the
//! in-process bus and on Redis.

use callfleet_core::BotConfig;
use callfleet_dispatcher::{
    resume_metadata, Dispatcher, DispatcherConfig, LiveKitJobRequest, PlaceError,
};
use callfleet_fleet::testing::test_buses;
use callfleet_fleet::{WorkerStatus, MESSAGE_VERSION};
use callfleet_store::testing::sqlite;
use callfleet_store::{NewBot, NewCompany, Store};
use std::sync::Arc;
use std::time::Duration;

const CONFIG: &str = "language: en\ngreeting: Hi\nfallback: Sorry\n";

async fn bot(store: &Store, limit: i64) -> String {
    let company = store
        .create_company(NewCompany {
            name: "A".into(),
            timezone: "UTC".into(),
            max_concurrent_calls: limit,
        })
        .await
        .unwrap();
    let config = BotConfig::parse_any(CONFIG).unwrap();
    let (bot, _) = store
        .create_bot(NewBot {
            company_id: &company.id,
            name: "bot",
            config: &config,
            source_text: CONFIG,
            source_format: "yaml",
        })
        .await
        .unwrap();
    bot.id
}

fn beat(id: &str) -> WorkerStatus {
    WorkerStatus {
        v: MESSAGE_VERSION,
        worker_id: id.into(),
        capacity: 10,
        active_calls: 0,
        cpu: 0.0,
        memory_bytes: 0,
        provider_connections: 0,
        draining: false,
        at: 0,
    }
}

fn request(worker: &str, call: &str, room: &str, bot: &str, resume: bool) -> LiveKitJobRequest {
    LiveKitJobRequest {
        worker_id: worker.into(),
        call_id: call.into(),
        room: room.into(),
        bot_id: bot.into(),
        agent_name: "clinic".into(),
        resume,
    }
}

#[tokio::test]
async fn a_livekit_dispatched_room_is_placed_on_its_worker_and_resumed_from_a_dead_one() {
    for (name, bus) in test_buses().await {
        let db = sqlite().await;
        let bot_id = bot(&db.store, 1).await;
        let dispatcher = Arc::new(Dispatcher::new(
            bus.clone(),
            db.store.clone(),
            DispatcherConfig::default(),
        ));
        for w in ["w1", "w2"] {
            bus.heartbeat(&beat(w), Duration::from_secs(30))
                .await
                .unwrap();
        }
        // Placed on the worker LiveKit chose (not the least loaded), with the worker's call id
        // and the agent name kept for failover.
        let placed = dispatcher
            .place_livekit(&request("w2", "call_1", "room-a", &bot_id, false))
            .await
            .unwrap();
        assert_eq!(placed.worker_id, "w2", "{name}");
        assert_eq!(placed.job.call_id, "call_1");
        assert_eq!(placed.job.livekit_agent.as_deref(), Some("clinic"));
        assert_eq!(bus.jobs_of("w2").await.unwrap(), vec![placed.job.clone()]);
        // A second dispatch of the room is refused, and so is a second call over the company's
        // limit of 1.
        assert!(matches!(
            dispatcher
                .place_livekit(&request("w1", "call_2", "room-a", &bot_id, false))
                .await,
            Err(PlaceError::AlreadyPlaced(_))
        ));
        assert!(matches!(
            dispatcher
                .place_livekit(&request("w1", "call_3", "room-b", &bot_id, false))
                .await,
            Err(PlaceError::CompanyLimit { .. })
        ));
        assert!(matches!(
            dispatcher
                .place_livekit(&request("w1", "call_4", "room-c", "bot_missing", false))
                .await,
            Err(PlaceError::BotNotFound(_))
        ));
        // While w2 lives, a resumed dispatch cannot take its call.
        assert!(matches!(
            dispatcher
                .place_livekit(&request("w1", "call_1", "room-a", &bot_id, true))
                .await,
            Err(PlaceError::AlreadyPlaced(_))
        ));
        // w2 dies: the resumed dispatch moves the call to w1, one attempt later.
        bus.deregister("w2").await.unwrap();
        let moved = dispatcher
            .place_livekit(&request("w1", "call_1", "room-a", &bot_id, true))
            .await
            .unwrap();
        assert_eq!((moved.worker_id.as_str(), moved.job.attempt), ("w1", 1));
        assert!(bus.jobs_of("w2").await.unwrap().is_empty(), "{name}");
        assert_eq!(bus.jobs_of("w1").await.unwrap(), vec![moved.job.clone()]);
        // The same resume again (a duplicate dispatch) is answered with the placement it has.
        let again = dispatcher
            .place_livekit(&request("w1", "call_1", "room-a", &bot_id, true))
            .await
            .unwrap();
        assert_eq!(again.job.attempt, 1);
        // A call nobody holds cannot be resumed.
        assert!(matches!(
            dispatcher
                .place_livekit(&request("w1", "call_gone", "room-z", &bot_id, true))
                .await,
            Err(PlaceError::CallGone(_))
        ));
        // What a re-dispatch tells the next worker.
        let metadata: serde_json::Value =
            serde_json::from_str(&resume_metadata(&moved.job)).unwrap();
        assert_eq!(metadata["resume_call_id"], "call_1");
        assert_eq!(metadata["bot_id"], bot_id.as_str());
    }
}
