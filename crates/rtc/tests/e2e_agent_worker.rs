//! LiveKit's agent worker protocol against a real livekit-server: workers register under an
//! agent name, `CreateDispatch` offers each job to one of them, a declining worker's job goes to
//! another, the accepted job's token joins the room as an agent, and a worker that has
//! disconnected is offered nothing more.

mod common;

use callfleet_core::secret::Secret;
use callfleet_livekit_admin::LiveKitApi;
use callfleet_rtc::agent_worker::{
    AgentWorker, Availability, JobEnd, JobOffer, WorkerEvent, WorkerOptions,
};
use callfleet_rtc::{ParticipantKind, RoomEvent, RoomOptions};
use common::*;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

fn options(env: &Env, agent_name: &str) -> WorkerOptions {
    WorkerOptions {
        url: env.url.clone(),
        api_key: env.api_key.clone(),
        api_secret: env.api_secret.clone(),
        agent_name: agent_name.to_string(),
        version: "callfleet-test".into(),
        ping_interval: Duration::from_secs(5),
    }
}

async fn next_offer(
    events: &mut mpsc::Receiver<WorkerEvent>,
    within: Duration,
) -> Option<JobOffer> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(WorkerEvent::Offer(offer))) => return Some(offer),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

fn accept(identity: &str) -> Availability {
    Availability::Accept {
        identity: identity.into(),
        name: identity.into(),
        attributes: HashMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatches_reach_a_registered_worker_declines_move_on_and_gone_workers_get_nothing() {
    let Some(env) = env() else { return };
    let agent_name = format!("cf-proto-{}", std::process::id());
    let api =
        LiveKitApi::new(&env.url, &env.api_key, Secret::new(env.api_secret.clone())).expect("api");
    let (a, mut a_events) = AgentWorker::register(options(&env, &agent_name))
        .await
        .expect("worker a registers");
    let (b, mut b_events) = AgentWorker::register(options(&env, &agent_name))
        .await
        .expect("worker b registers");
    assert_ne!(a.id(), b.id());

    // One dispatch: whichever worker is offered it declines, so it must reach the other,
    // which accepts and gets the room's token with its identity.
    let room = unique_room("dispatch");
    api.create_dispatch(&room, &agent_name, r#"{"bot_id":"b1"}"#)
        .await
        .expect("CreateDispatch");
    let (first, first_events, second, second_events) = tokio::select! {
        Some(offer) = next_offer(&mut a_events, Duration::from_secs(10)) => {
            a.answer(&offer.job_id, Availability::Decline);
            (offer, &mut a_events, &b, &mut b_events)
        }
        Some(offer) = next_offer(&mut b_events, Duration::from_secs(10)) => {
            b.answer(&offer.job_id, Availability::Decline);
            (offer, &mut b_events, &a, &mut a_events)
        }
    };
    assert_eq!(first.room, room);
    assert_eq!(first.metadata, r#"{"bot_id":"b1"}"#);
    assert_eq!(first.agent_name, agent_name);
    let offer = next_offer(second_events, Duration::from_secs(10))
        .await
        .expect("the job is offered to the other worker after a decline");
    assert_eq!(offer.job_id, first.job_id);
    second.answer(&offer.job_id, accept("agent-proto"));
    let grant = loop {
        match tokio::time::timeout(Duration::from_secs(10), second_events.recv()).await {
            Ok(Some(WorkerEvent::Assigned(grant))) => break grant,
            Ok(Some(_)) => {}
            other => panic!("no assignment: {other:?}"),
        }
    };
    assert_eq!(grant.offer.job_id, offer.job_id);
    // The server's token joins the room as the agent we said we are, of kind AGENT.
    let url = grant.url.clone().unwrap_or_else(|| env.url.clone());
    let (agent_room, _agent_events) =
        callfleet_rtc::Room::connect(&url, &grant.token, RoomOptions::default())
            .await
            .expect("joins with the assignment's token");
    let (_watcher, mut watch) = env.join(&room, "watcher", RoomOptions::default()).await;
    let seen = wait_room_event(&mut watch, Duration::from_secs(10), |e| match e {
        RoomEvent::ParticipantJoined(p) if p.identity == "agent-proto" => Some(p.kind),
        _ => None,
    })
    .await;
    assert_eq!(seen, ParticipantKind::Agent);
    second.job_ended(&grant.offer.job_id, JobEnd::Success);
    agent_room.leave().await;
    let _ = first_events;

    // Worker a leaves: every later dispatch goes to b.
    a.close();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), a_events.recv()).await {
            Ok(Some(WorkerEvent::Closed(_))) | Ok(None) => break,
            Ok(Some(_)) => {}
            Err(_) => panic!("worker a's connection did not close"),
        }
    }
    for i in 0..3 {
        let room = unique_room(&format!("after-{i}"));
        api.create_dispatch(&room, &agent_name, "")
            .await
            .expect("CreateDispatch");
        let offer = next_offer(&mut b_events, Duration::from_secs(10))
            .await
            .expect("the remaining worker is offered the job");
        assert_eq!(offer.room, room);
        b.answer(&offer.job_id, Availability::Terminate);
    }
}
