//! Twenty rooms at once, each with a Rust and a Python participant; every room's audio is
//! verified in both directions (and that no room hears another's).

mod common;

use std::time::Duration;

use callfleet_rtc::{RoomEvent, RoomOptions};
use common::*;

fn room_count() -> usize {
    std::env::var("CALLFLEET_E2E_ROOMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_rooms_at_once_all_audio_verified() {
    let Some(env) = env() else { return };
    let (wav, rate, sent) = env.speech(
        "scale",
        "Twenty rooms at once, each one talking. Seven, eight, nine.",
    );
    let prefix = unique_room("scale");
    let dir = env.dir.path().to_str().expect("utf-8 path").to_string();
    let speech_secs = sent.len() as f64 / f64::from(rate);

    let mut rooms = Vec::new();
    for i in 0..room_count() {
        let options = RoomOptions {
            sample_rate: 16_000,
            ..Default::default()
        };
        rooms.push(env.join(&format!("{prefix}{i}"), "rust", options).await);
    }
    let mut py = env.python(&[
        "--room",
        &prefix,
        "--rooms",
        &room_count().to_string(),
        "--identity",
        "py",
        "--wait-participant",
        "--publish-wav",
        wav.to_str().expect("utf-8 path"),
        "--publish-delay",
        "3",
        "--record-dir",
        &dir,
        "--record-seconds",
        "6",
        "--duration",
        "40",
    ]);

    let mut tasks = Vec::new();
    for (i, (room, mut events)) in rooms.into_iter().enumerate() {
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = wait_room_event(&mut events, Duration::from_secs(30), |ev| match ev {
                RoomEvent::TrackSubscribed { stream, .. } => Some(stream),
                _ => None,
            })
            .await;
            // Each room publishes its own tone, so a cross-wired room would be caught.
            let track = room.publish_audio("tone", 16_000).await.expect("published");
            let freq = 300.0 + 25.0 * i as f64;
            let player = {
                let track = track.clone();
                tokio::spawn(async move {
                    play(&track, &tone(freq, 8.0, 16_000, 10_000.0), 16_000).await
                })
            };
            let (got_rate, received) =
                collect_audio(&mut stream, speech_secs + 4.0, Duration::from_secs(30)).await;
            let (corr, _) = best_correlation(
                &envelope_ms(&sent, rate, 60),
                &envelope_ms(&received, got_rate, 60),
            );
            player.await.expect("player");
            (room, corr, freq)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("room task"));
    }
    let mut heard = Vec::new();
    for i in 0..room_count() {
        let room_name = format!("{prefix}{i}");
        let rec = py
            .wait_event("recorded", Some(&room_name), Duration::from_secs(30))
            .await;
        let (prate, samples) = read_wav(std::path::Path::new(rec["path"].as_str().expect("path")));
        heard.push(dominant_frequency(&samples, prate));
    }
    let mut failures = Vec::new();
    for (i, ((room, corr, freq), got)) in results.iter().zip(&heard).enumerate() {
        eprintln!("room {i}: speech correlation {corr:.3}, tone {freq:.0} Hz heard as {got:.1} Hz");
        // Speech shape (coarse windows: the Python far end stutters when the two cores are busy)
        // and each room's own tone (half the 25 Hz spacing: no room hears another).
        if *corr < 0.5 || (got - freq).abs() > 12.0 {
            failures.push(i);
        }
        room.leave().await;
    }
    py.finish().await;
    assert!(failures.is_empty(), "rooms with bad audio: {failures:?}");
}
