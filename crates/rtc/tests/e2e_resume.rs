//! The signalling socket is cut mid-call: the participant resumes and audio keeps flowing
//! both ways; chat works again afterwards.

mod common;

use std::time::Duration;

use callfleet_rtc::{Room, RoomEvent, RoomOptions};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_resumes_after_the_signalling_socket_is_cut() {
    let Some(env) = env() else { return };
    let (wav, _, _) = env.speech(
        "resume",
        "Counting slowly: one, two, three, four, five, six, seven, eight, nine, ten.",
    );
    let room = unique_room("resume");
    let proxy = CutProxy::start(&env.url).await;
    let (rust, mut events) = Room::connect(
        &proxy.url,
        &env.token(&room, "rust"),
        RoomOptions::default(),
    )
    .await
    .expect("joins through the proxy");
    let dir = env.dir.path().to_str().expect("utf-8 path").to_string();
    let mut py = env.python(&[
        "--room",
        &room,
        "--identity",
        "py",
        "--wait-participant",
        "--publish-wav",
        wav.to_str().expect("utf-8 path"),
        "--publish-repeat",
        "4",
        "--record-dir",
        &dir,
        "--record-seconds",
        "12",
        "--duration",
        "40",
    ]);
    let mut stream = wait_room_event(&mut events, Duration::from_secs(15), |ev| match ev {
        RoomEvent::TrackSubscribed { stream, .. } => Some(stream),
        _ => None,
    })
    .await;
    let track = rust.publish_audio("tone", 48_000).await.expect("published");
    let player = {
        let track = track.clone();
        tokio::spawn(
            async move { play(&track, &tone(440.0, 14.0, 48_000, 12_000.0), 48_000).await },
        )
    };
    let (rate, before) = collect_audio(&mut stream, 3.0, Duration::from_secs(10)).await;
    assert!(
        loud_fraction(&before, rate, 300.0) > 0.3,
        "speech flows before the cut"
    );

    assert!(
        proxy.cut() > 0,
        "the signalling connection went through the proxy"
    );
    // Keep draining audio while waiting, and count what arrives during the outage.
    let mut during = Vec::new();
    let mut state = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !state.contains(&"reconnected") {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(RoomEvent::Reconnecting) => state.push("reconnecting"),
                Some(RoomEvent::Reconnected) => state.push("reconnected"),
                Some(RoomEvent::Disconnected { reason }) => panic!("disconnected: {reason}"),
                Some(_) => {}
                None => panic!("events ended"),
            },
            f = stream.recv() => during.extend(f.expect("stream continues").samples),
            _ = tokio::time::sleep_until(deadline) => panic!("no resume within 15 s (saw {state:?})"),
        }
    }
    assert_eq!(state, ["reconnecting", "reconnected"]);
    let (_, after) = collect_audio(&mut stream, 3.0, Duration::from_secs(10)).await;
    eprintln!(
        "resume: {:.2} s of audio during the outage, loud fraction after {:.2}",
        during.len() as f64 / f64::from(rate),
        loud_fraction(&after, rate, 300.0)
    );
    assert!(
        after.len() as f64 >= 2.9 * f64::from(rate),
        "audio keeps arriving after the resume"
    );
    assert!(
        loud_fraction(&after, rate, 300.0) > 0.3,
        "speech flows after the resume"
    );

    rust.send_chat("after resume").await.expect("chat");
    let got = py.wait_event("chat", None, Duration::from_secs(10)).await;
    assert_eq!(got["text"], "after resume");

    let recorded = py
        .wait_event("recorded", None, Duration::from_secs(25))
        .await;
    let (prate, heard) = read_wav(std::path::Path::new(
        recorded["path"].as_str().expect("path"),
    ));
    let tail = &heard[heard.len().saturating_sub(4 * prate as usize)..];
    assert!(
        loud_fraction(tail, prate, 2000.0) > 0.9,
        "Python still hears the tone at the end"
    );
    assert!((dominant_frequency(tail, prate) - 440.0).abs() < 5.0);
    player.abort();
    rust.leave().await;
    py.finish().await;
}
