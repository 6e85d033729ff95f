//! The server restarts mid-call (our session is gone): the room joins afresh, publishes its
//! track again and audio flows both ways with a participant who joins afterwards.

mod common;

use std::time::Duration;

use callfleet_rtc::{Room, RoomEvent, RoomOptions};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_rejoins_after_the_server_restarts() {
    let Some(env) = env() else { return };
    let Some(server) = PrivateServer::start((17980, 17981, 17982)) else {
        return;
    };
    let (wav, rate, sent) = env.speech(
        "rejoin",
        "The server came back and so did we. Four, five, six.",
    );
    let room = unique_room("rejoin");
    let (rust, mut events) = Room::connect(
        &server.url,
        &env.token(&room, "rust"),
        RoomOptions::default(),
    )
    .await
    .expect("joins");
    let track = rust.publish_audio("tone", 48_000).await.expect("published");
    let player = {
        let track = track.clone();
        tokio::spawn(
            async move { play(&track, &tone(440.0, 40.0, 48_000, 12_000.0), 48_000).await },
        )
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    server.restart();
    let mut state = Vec::new();
    while !state.contains(&"reconnected") {
        let ev = wait_room_event(&mut events, Duration::from_secs(30), |ev| match ev {
            RoomEvent::Reconnecting => Some("reconnecting"),
            RoomEvent::Reconnected => Some("reconnected"),
            RoomEvent::Disconnected { reason } => panic!("disconnected: {reason}"),
            _ => None,
        })
        .await;
        state.push(ev);
    }
    assert_eq!(state, ["reconnecting", "reconnected"]);

    // A participant joining the restarted server hears our tone and we hear their speech.
    let dir = env.dir.path().to_str().expect("utf-8 path").to_string();
    let url_arg = server.url.clone();
    let mut py = env.python(&[
        "--url",
        &url_arg,
        "--room",
        &room,
        "--identity",
        "py",
        "--wait-participant",
        "--publish-wav",
        wav.to_str().expect("utf-8 path"),
        "--record-dir",
        &dir,
        "--record-seconds",
        "3",
        "--duration",
        "20",
    ]);
    let mut stream = wait_room_event(&mut events, Duration::from_secs(20), |ev| match ev {
        RoomEvent::TrackSubscribed {
            stream,
            participant,
            ..
        } if participant.identity == "py" => Some(stream),
        _ => None,
    })
    .await;
    let (got_rate, received) = collect_audio(
        &mut stream,
        sent.len() as f64 / f64::from(rate) + 2.0,
        Duration::from_secs(20),
    )
    .await;
    let (corr, _) = best_correlation(&envelope(&sent, rate), &envelope(&received, got_rate));
    eprintln!("rejoin: speech correlation {corr:.3}");
    assert!(
        corr > 0.8,
        "speech after the rejoin (correlation {corr:.3})"
    );
    let recorded = py
        .wait_event("recorded", None, Duration::from_secs(20))
        .await;
    let (prate, heard) = read_wav(std::path::Path::new(
        recorded["path"].as_str().expect("path"),
    ));
    assert!(
        (dominant_frequency(&heard, prate) - 440.0).abs() < 5.0,
        "Python hears our tone after the rejoin"
    );
    player.abort();
    rust.leave().await;
    py.finish().await;
}
