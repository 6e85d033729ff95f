//! Chat both ways, DTMF, attributes, participant events and leaving, against a real livekit-server with
//! LiveKit's Python SDK on the other side.

mod common;

use std::time::Duration;

use callfleet_rtc::{RoomEvent, RoomOptions};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_dtmf_attributes_and_a_leaving_participant_are_seen() {
    let Some(env) = env() else { return };
    let room = unique_room("chat");
    let (rust, mut events) = env.join(&room, "rust", RoomOptions::default()).await;
    let mut py = env.python(&[
        "--room",
        &room,
        "--identity",
        "py",
        "--wait-participant",
        "--send-chat",
        "привет from python",
        "--chat-delay",
        "1.0",
        "--leave-after",
        "5",
        "--set-attributes",
        r#"{"sip.phoneNumber": "+15550100"}"#,
        "--send-dtmf",
        "5:5",
    ]);
    // Signalling (joins, attributes) and data channels (chat, DTMF) are separate paths:
    // their events may come in any order.
    let (mut joined, mut chat, mut dtmf, mut attributes) = (None, None, None, None);
    while joined.is_none() || chat.is_none() || dtmf.is_none() || attributes.is_none() {
        wait_room_event(&mut events, Duration::from_secs(15), |ev| match ev {
            RoomEvent::ParticipantJoined(p) => {
                if p.attributes.contains_key("sip.phoneNumber") {
                    attributes = Some(p.attributes.clone());
                }
                joined = Some(p.identity);
                Some(())
            }
            RoomEvent::AttributesChanged {
                identity,
                attributes: a,
            } if identity == "py" => {
                attributes = Some(a);
                Some(())
            }
            RoomEvent::ChatMessage { from, text } => {
                chat = Some((from, text));
                Some(())
            }
            RoomEvent::Dtmf { from, code, digit } => {
                dtmf = Some((from, code, digit));
                Some(())
            }
            _ => None,
        })
        .await;
    }
    assert_eq!(joined.as_deref(), Some("py"));
    assert_eq!(
        chat,
        Some(("py".to_string(), "привет from python".to_string()))
    );
    assert_eq!(dtmf, Some(("py".to_string(), 5, "5".to_string())));
    assert_eq!(
        attributes
            .and_then(|a| a.get("sip.phoneNumber").cloned())
            .as_deref(),
        Some("+15550100")
    );

    rust.send_chat("hello from rust").await.expect("chat sent");
    let got = py.wait_event("chat", None, Duration::from_secs(10)).await;
    assert_eq!(got["text"], "hello from rust");
    assert_eq!(got["identity"], "rust");

    let left = wait_room_event(&mut events, Duration::from_secs(20), |ev| match ev {
        RoomEvent::ParticipantLeft { identity } => Some(identity),
        _ => None,
    })
    .await;
    assert_eq!(left, "py");
    py.finish().await;

    rust.leave().await;
    let reason = wait_room_event(&mut events, Duration::from_secs(5), |ev| match ev {
        RoomEvent::Disconnected { reason } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, "left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_participants_see_each_other_join_chat_and_leave() {
    let Some(env) = env() else { return };
    let room = unique_room("rust-pair");
    let (a, mut a_events) = env.join(&room, "alice", RoomOptions::default()).await;
    let (b, mut b_events) = env.join(&room, "bob", RoomOptions::default()).await;
    let joined = wait_room_event(&mut a_events, Duration::from_secs(10), |ev| match ev {
        RoomEvent::ParticipantJoined(p) => Some(p.identity),
        _ => None,
    })
    .await;
    assert_eq!(joined, "bob");
    a.send_chat("hi bob").await.expect("sent");
    let text = wait_room_event(&mut b_events, Duration::from_secs(10), |ev| match ev {
        RoomEvent::ChatMessage { from, text } if from == "alice" => Some(text),
        _ => None,
    })
    .await;
    assert_eq!(text, "hi bob");
    b.leave().await;
    let left = wait_room_event(&mut a_events, Duration::from_secs(10), |ev| match ev {
        RoomEvent::ParticipantLeft { identity } => Some(identity),
        _ => None,
    })
    .await;
    assert_eq!(left, "bob");
    a.leave().await;
}
