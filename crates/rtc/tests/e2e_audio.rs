//! Speech both ways between the Rust participant and LiveKit's Python SDK, through a real
//! livekit-server.

mod common;

use std::time::Duration;

use callfleet_rtc::{RoomEvent, RoomOptions};
use common::*;

const SPEECH: &str =
    "The quick brown fox jumps over the lazy dog. Call fleet answers the phone, one two three.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_speech_reaches_rust_as_correlated_pcm() {
    let Some(env) = env() else { return };
    let (wav, rate, sent) = env.speech("speech", SPEECH);
    let room = unique_room("speech-in");
    let options = RoomOptions {
        sample_rate: 16_000,
        ..Default::default()
    };
    let (rust, mut events) = env.join(&room, "rust", options).await;
    let py = env.python(&[
        "--room",
        &room,
        "--identity",
        "py",
        "--wait-participant",
        "--publish-wav",
        wav.to_str().expect("utf-8 path"),
        "--duration",
        "15",
    ]);
    let (participant, mut stream) =
        wait_room_event(&mut events, Duration::from_secs(15), |ev| match ev {
            RoomEvent::TrackSubscribed {
                participant,
                stream,
                ..
            } => Some((participant, stream)),
            _ => None,
        })
        .await;
    assert_eq!(participant.identity, "py");
    let secs = sent.len() as f64 / f64::from(rate) + 2.0;
    let (got_rate, received) = collect_audio(&mut stream, secs, Duration::from_secs(20)).await;
    assert_eq!(got_rate, 16_000, "frames arrive at the rate asked for");
    let (corr, lag) = best_correlation(&envelope(&sent, rate), &envelope(&received, got_rate));
    eprintln!(
        "speech in: {} s received, envelope correlation {corr:.3} at lag {} ms",
        received.len() / 16_000,
        lag * 20
    );
    assert!(
        corr > 0.8,
        "received audio should follow the sent speech (correlation {corr:.3})"
    );

    // The same stream, resampled on the consumer side to 8 kHz.
    let mut stream8 = stream.resampled(8_000);
    let (r8, _) = collect_audio(&mut stream8, 0.2, Duration::from_secs(5)).await;
    assert!(r8 == 8_000 || r8 == 0);
    rust.leave().await;
    py.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_tone_and_speech_reach_python() {
    let Some(env) = env() else { return };
    let (_, speech_rate, speech) = env.speech("speech-out", SPEECH);
    let room = unique_room("speech-out");
    let (rust, mut events) = env.join(&room, "rust", RoomOptions::default()).await;
    let dir = env.dir.path().to_str().expect("utf-8 path").to_string();
    // 1 s of 440 Hz at 24 kHz, 0.5 s silence, then the speech at espeak-ng's own rate.
    let tone_rate = 24_000;
    let tone_samples = tone(440.0, 1.0, tone_rate, 12_000.0);
    let total = 1.5 + speech.len() as f64 / f64::from(speech_rate) + 1.0;
    let mut py = env.python(&[
        "--room",
        &room,
        "--identity",
        "py",
        "--record-dir",
        &dir,
        "--record-seconds",
        &format!("{total:.1}"),
        "--duration",
        "25",
    ]);
    wait_room_event(&mut events, Duration::from_secs(15), |ev| match ev {
        RoomEvent::ParticipantJoined(p) if p.identity == "py" => Some(()),
        _ => None,
    })
    .await;
    let track = rust
        .publish_audio("voice", 48_000)
        .await
        .expect("track published");
    py.wait_event("track_subscribed", None, Duration::from_secs(15))
        .await;
    play(&track, &tone_samples, tone_rate).await;
    play(&track, &vec![0; tone_rate as usize / 2], tone_rate).await;
    play(&track, &speech, speech_rate).await;
    track.wait_played_out().await;
    // Every 20 ms of what was pushed left as one frame, counted on the track and the process.
    let sent = track.stats();
    let pushed_secs = (tone_samples.len() + tone_rate as usize / 2) as f64 / f64::from(tone_rate)
        + speech.len() as f64 / f64::from(speech_rate);
    assert!(
        (sent.frames as f64 - pushed_secs * 50.0).abs() <= 3.0,
        "{sent:?} for {pushed_secs:.2} s of audio"
    );
    assert!(sent.late_frames <= sent.frames);
    assert!(callfleet_rtc::process_send_stats().frames >= sent.frames);
    let recorded = py
        .wait_event("recorded", None, Duration::from_secs(20))
        .await;
    let (rate, received) = read_wav(std::path::Path::new(
        recorded["path"].as_str().expect("path"),
    ));
    assert_eq!(rate, 48_000);

    // Find the tone: the first loud stretch; its frequency must be 440 Hz.
    let env_rx = envelope(&received, rate);
    let onset = env_rx
        .iter()
        .position(|&e| e > 2000.0)
        .expect("the tone arrived");
    let start = onset * 960 + 4800;
    let freq = dominant_frequency(&received[start..start + 24_000], rate);
    eprintln!("tone out: {freq:.1} Hz");
    assert!((freq - 440.0).abs() < 5.0, "tone frequency {freq:.1} Hz");

    // The speech after it follows the sent envelope.
    let speech_part = &received[(onset * 960 + 72_000).min(received.len())..];
    let (corr, lag) = best_correlation(
        &envelope(&speech, speech_rate),
        &envelope(speech_part, rate),
    );
    eprintln!(
        "speech out: envelope correlation {corr:.3} at lag {} ms",
        lag * 20
    );
    assert!(
        corr > 0.8,
        "Python should hear the speech (correlation {corr:.3})"
    );
    rust.leave().await;
    py.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successive_publishers_each_get_a_stream() {
    let Some(env) = env() else { return };
    let (wav, _, _) = env.speech("successive", "First speaker. Second speaker.");
    let wav = wav.to_str().expect("utf-8 path").to_string();
    let room = unique_room("successive");
    let (rust, mut events) = env.join(&room, "rust", RoomOptions::default()).await;
    for who in ["first", "second"] {
        let py = env.python(&[
            "--room",
            &room,
            "--identity",
            who,
            "--wait-participant",
            "--publish-wav",
            &wav,
            "--publish-delay",
            "0.2",
            "--leave-after",
            "5",
        ]);
        let mut stream = wait_room_event(&mut events, Duration::from_secs(15), |ev| match ev {
            RoomEvent::TrackSubscribed {
                participant,
                stream,
                ..
            } if participant.identity == who => Some(stream),
            _ => None,
        })
        .await;
        let (rate, audio) = collect_audio(&mut stream, 2.5, Duration::from_secs(10)).await;
        let loud = loud_fraction(&audio, rate, 300.0);
        eprintln!(
            "{who}: {:.2} s of audio, loud fraction {loud:.2}",
            audio.len() as f64 / f64::from(rate.max(1))
        );
        assert!(loud > 0.2, "{who}: speech arrives");
        let left = wait_room_event(&mut events, Duration::from_secs(15), |ev| match ev {
            RoomEvent::ParticipantLeft { identity } => Some(identity),
            _ => None,
        })
        .await;
        assert_eq!(left, who);
        let ended = tokio::time::timeout(Duration::from_secs(3), async {
            while stream.recv().await.is_some() {}
        })
        .await;
        assert!(ended.is_ok(), "{who}: the stream ends when they leave");
        py.finish().await;
    }
    rust.leave().await;
}
