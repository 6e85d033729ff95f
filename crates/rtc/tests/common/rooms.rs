//! Many rooms at once: the e2e scale test (a few rooms, pass/fail) and the bench (twenty,
//! figures) run the same scenario.
//!
//! Each room has a Rust participant and a LiveKit Python one (all Python rooms in one
//! `peer.py` process). The far end publishes speech once it hears the Rust side's tone, which
//! the Rust side publishes once it has subscribed to the far end: every step waits for the one
//! before it, never for a fixed time, so a slow machine only makes the run slower. The limits
//! below only stop a hang, and say which room hung at which step.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use callfleet_rtc::{RoomEvent, RoomOptions};
use tokio::sync::mpsc;

use super::*;

/// The longest any one step may take before the room is reported as hung.
const STEP_LIMIT: Duration = Duration::from_secs(120);

/// What one room measured.
#[derive(Debug)]
pub struct RoomOutcome {
    pub room: String,
    /// Seconds from starting the far-end process to its `published` for this room.
    pub published_secs: f64,
    /// Seconds from starting the far-end process to `TrackSubscribed` on the Rust side.
    pub subscribed_secs: f64,
    /// Envelope correlation of the far end's speech with what the Rust side decoded.
    pub speech_correlation: f64,
    /// The tone this room's Rust side sent, and the dominant frequency the far end recorded.
    pub tone_hz: f64,
    pub heard_hz: f64,
}

impl RoomOutcome {
    /// Speech shape (coarse windows: the Python far end stutters when the cores are busy)
    /// and the room's own tone (within half the 25 Hz spacing: no room hears another's).
    pub fn audio_ok(&self) -> bool {
        self.speech_correlation >= 0.5 && (self.heard_hz - self.tone_hz).abs() <= 12.0
    }
}

fn unix_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Run `n` rooms at once; one result per room, `Err` naming the step a room hung at.
pub async fn rooms_at_once(env: &Env, n: usize) -> Vec<Result<RoomOutcome, String>> {
    let (wav, rate, sent) = env.speech(
        "scale",
        "Twenty rooms at once, each one talking. Seven, eight, nine.",
    );
    let prefix = unique_room("scale");
    let dir = env.dir.path().to_str().expect("utf-8 path").to_string();
    let envelope_sent = envelope_ms(&sent, rate, 60);
    let speech_secs = sent.len() as f64 / f64::from(rate);

    let mut rooms = Vec::new();
    for i in 0..n {
        let options = RoomOptions {
            sample_rate: 16_000,
            ..Default::default()
        };
        rooms.push(env.join(&format!("{prefix}{i}"), "rust", options).await);
    }
    let started = unix_secs();
    let mut py = env.python(&[
        "--room",
        &prefix,
        "--rooms",
        &n.to_string(),
        "--identity",
        "py",
        // All rooms joining at once make the far end's libwebrtc trickle up to ~350 ICE
        // candidates per room in a burst; past 200 queued requests livekit-server silently
        // stops reading that participant's signalling and its track never arrives (#21).
        "--one-by-one",
        "--wait-participant",
        "--publish-wav",
        wav.to_str().expect("utf-8 path"),
        "--start-after-subscribed",
        "--publish-delay",
        "0.5",
        "--record-dir",
        &dir,
        "--record-seconds",
        "3",
        "--exit-when-done",
        "--duration",
        &STEP_LIMIT.as_secs().to_string(),
    ]);

    // Each room's task gets the far end's events for its room.
    let mut routes: HashMap<String, mpsc::UnboundedSender<serde_json::Value>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (room, mut events)) in rooms.into_iter().enumerate() {
        let name = format!("{prefix}{i}");
        let (tx, mut far) = mpsc::unbounded_channel::<serde_json::Value>();
        routes.insert(name.clone(), tx);
        let envelope_sent = envelope_sent.clone();
        tasks.spawn(async move {
            let tone_hz = 300.0 + 25.0 * i as f64;
            let mut far_seen = Vec::new();
            let mut published_at = f64::NAN;
            let hung = |step: &str, far_seen: &[String]| {
                format!("room {i}: {step} (the far end said: {far_seen:?})")
            };
            // 1. The far end's track, as `TrackSubscribed`.
            let deadline = tokio::time::Instant::now() + STEP_LIMIT;
            let mut stream = loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Some(RoomEvent::TrackSubscribed { stream, .. }) => break stream,
                        Some(_) => {}
                        None => return (i, Err(hung("room events ended", &far_seen))),
                    },
                    Some(v) = far.recv() => {
                        let event = v["event"].as_str().unwrap_or("").to_string();
                        if event == "publish_failed" {
                            return (i, Err(hung(&format!("the far end could not publish: {}", v["error"]), &far_seen)));
                        }
                        if event == "published" {
                            published_at = v["t"].as_f64().unwrap_or(f64::NAN);
                        }
                        far_seen.push(event);
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        return (i, Err(hung("no TrackSubscribed", &far_seen)));
                    }
                }
            };
            let subscribed_at = unix_secs();
            // 2. Our tone, until the far end has recorded it; the far end starts speaking
            //    once it hears us, and we listen until it is done.
            let track = match room.publish_audio("tone", 16_000).await {
                Ok(t) => t,
                Err(e) => return (i, Err(hung(&format!("publish failed: {e}"), &far_seen))),
            };
            let player = tokio::spawn(async move {
                let second = tone(tone_hz, 1.0, 16_000, 10_000.0);
                loop {
                    play(&track, &second, 16_000).await;
                }
            });
            // Listen from the first loud frame for the speech's length and 3 s more (room for
            // stalls of a starved far end), whenever the far end gets to it; the far end stays
            // until we leave, so its stream cannot end first.
            let mut received = Vec::new();
            let mut got_rate = 16_000;
            let mut onset = None;
            let mut recorded = None;
            let deadline = tokio::time::Instant::now() + STEP_LIMIT;
            let heard_all = |received: &Vec<i16>, onset: Option<usize>, rate: u32| {
                onset.is_some_and(|o| received.len() >= o + ((speech_secs + 3.0) * f64::from(rate)) as usize)
            };
            while !heard_all(&received, onset, got_rate) || recorded.is_none() {
                tokio::select! {
                    f = stream.recv(), if !heard_all(&received, onset, got_rate) => match f {
                        Some(frame) => {
                            got_rate = frame.sample_rate;
                            if onset.is_none() && loud_fraction(&frame.samples, got_rate, 300.0) > 0.0 {
                                onset = Some(received.len());
                            }
                            received.extend(frame.samples);
                        }
                        None => return (i, Err(hung("the far end's stream ended", &far_seen))),
                    },
                    Some(v) = far.recv() => {
                        let event = v["event"].as_str().unwrap_or("").to_string();
                        match event.as_str() {
                            "published" => published_at = v["t"].as_f64().unwrap_or(f64::NAN),
                            "recorded" => recorded = v["path"].as_str().map(str::to_string),
                            _ => {}
                        }
                        far_seen.push(event);
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        let step = if onset.is_none() { "no speech from the far end" } else if recorded.is_none() { "no recording from the far end" } else { "the speech stopped arriving" };
                        return (i, Err(hung(step, &far_seen)));
                    }
                }
            }
            player.abort();
            let (corr, _) = best_correlation(&envelope_sent, &envelope_ms(&received, got_rate, 60));
            let (prate, heard) = read_wav(std::path::Path::new(&recorded.expect("recorded")));
            room.leave().await;
            (
                i,
                Ok(RoomOutcome {
                    room: name,
                    published_secs: published_at - started,
                    subscribed_secs: subscribed_at - started,
                    speech_correlation: corr,
                    tone_hz,
                    heard_hz: dominant_frequency(&heard, prate),
                }),
            )
        });
    }

    // Route the far end's events to the rooms while they run.
    let mut results: Vec<Option<Result<RoomOutcome, String>>> = (0..n).map(|_| None).collect();
    let mut far_open = true;
    while !tasks.is_empty() {
        tokio::select! {
            ev = py.next_event(STEP_LIMIT), if far_open => match ev {
                Some(v) => {
                    if let Some(tx) = v["room"].as_str().and_then(|r| routes.get(r)) {
                        let _ = tx.send(v);
                    }
                }
                None => far_open = false,
            },
            Some(done) = tasks.join_next() => {
                let (i, res) = done.expect("room task");
                results[i] = Some(res);
            }
        }
    }
    py.finish().await;
    results
        .into_iter()
        .map(|r| r.expect("every room reported"))
        .collect()
}
