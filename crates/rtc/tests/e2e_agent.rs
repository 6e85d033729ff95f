//! What LiveKit's clients read off an agent, against a real livekit-server with LiveKit's
//! Python SDK on the other side: the agent token makes the participant kind AGENT with its
//! first attributes, attributes it sets itself reach the others, and transcriptions go out as
//! `lk.transcription` text streams — its own (a delta stream closed with final attributes) and
//! a caller's, sent on the caller's behalf.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use callfleet_rtc::{agent_token, Room, RoomOptions, TextStreamOptions};
use common::*;

fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_is_seen_as_an_agent_with_its_state_and_transcriptions() {
    let Some(env) = env() else { return };
    let room = unique_room("agent");
    let mut py = env.python(&[
        "--room",
        &room,
        "--identity",
        "caller",
        "--wait-participant",
        "--duration",
        "30",
        "--leave-after",
        "25",
    ]);
    py.wait_event("joined", None, Duration::from_secs(15)).await;

    let token = agent_token(
        &env.api_key,
        &env.api_secret,
        &room,
        "agent-1",
        &[("lk.agent.state", "initializing")],
    )
    .expect("token");
    let (agent, _events) = Room::connect(&env.url, &token, RoomOptions::default())
        .await
        .expect("the agent joins");

    let joined = py
        .wait_event("participant_joined", None, Duration::from_secs(15))
        .await;
    assert_eq!(joined["identity"], "agent-1");
    assert_eq!(joined["kind"], "PARTICIPANT_KIND_AGENT", "{joined}");
    assert_eq!(joined["attributes"]["lk.agent.state"], "initializing");

    agent
        .set_attributes(attrs(&[("lk.agent.state", "listening")]))
        .await
        .unwrap();
    let changed = py
        .wait_event("attributes_changed", None, Duration::from_secs(10))
        .await;
    assert_eq!(changed["identity"], "agent-1");
    assert_eq!(changed["attributes"]["lk.agent.state"], "listening");

    // The caller's words, on the caller's behalf: an interim then the final of one segment.
    for (text, fin) in [("book a", "false"), ("book a table", "true")] {
        agent
            .send_text(
                text,
                TextStreamOptions {
                    topic: "lk.transcription".into(),
                    attributes: attrs(&[
                        ("lk.segment_id", "SG_caller_1"),
                        ("lk.transcribed_track_id", "TR_caller"),
                        ("lk.transcription_final", fin),
                    ]),
                    sender_identity: Some("caller".into()),
                },
            )
            .await
            .unwrap();
    }
    // The agent's own words as they are spoken: one stream, written in pieces, final on close.
    let mut own = agent
        .stream_text(TextStreamOptions {
            topic: "lk.transcription".into(),
            attributes: attrs(&[
                ("lk.segment_id", "SG_agent_1"),
                ("lk.transcribed_track_id", "TR_agent"),
                ("lk.transcription_final", "false"),
            ]),
            sender_identity: None,
        })
        .await
        .unwrap();
    own.write("Of course, ").await.unwrap();
    own.write("for how many?").await.unwrap();
    own.close(attrs(&[("lk.transcription_final", "true")]))
        .await
        .unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let t = py
            .wait_event("transcription", None, Duration::from_secs(10))
            .await;
        seen.push(t);
    }
    // Each stream is read by a task of its own: they may finish in any order.
    seen.sort_by_key(|t| {
        let text = |k: &str| t[k].as_str().unwrap_or_default().to_string();
        (text("identity"), text("text"))
    });
    let summary: Vec<(String, String, String, String)> = seen
        .iter()
        .map(|t| {
            let a = &t["attributes"];
            (
                t["identity"].as_str().unwrap_or_default().to_string(),
                t["text"].as_str().unwrap_or_default().to_string(),
                a["lk.segment_id"].as_str().unwrap_or_default().to_string(),
                a["lk.transcription_final"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let s = |a: &str, b: &str, c: &str, d: &str| {
        (a.to_string(), b.to_string(), c.to_string(), d.to_string())
    };
    assert_eq!(
        summary,
        vec![
            s("agent-1", "Of course, for how many?", "SG_agent_1", "true"),
            s("caller", "book a", "SG_caller_1", "false"),
            s("caller", "book a table", "SG_caller_1", "true"),
        ],
        "{seen:?}"
    );
    assert_eq!(
        seen[2]["attributes"]["lk.transcribed_track_id"],
        "TR_caller"
    );
    assert_eq!(seen[0]["attributes"]["lk.transcribed_track_id"], "TR_agent");

    agent.leave().await;
    // Dropping the peer ends it (kill on drop); nothing more to wait for.
    drop(py);
}
