//! Several rooms at once, each with a Rust and a Python participant; every room's audio is
//! verified in both directions (and that no room hears another's). `CALLFLEET_E2E_ROOMS`
//! (default 4) sets how many. A pass/fail test stays at a size two shared cores carry with
//! room to spare; `scripts/bench-rtc --rooms` runs the same scenario at twenty and prints figures.

mod common;

use common::rooms::rooms_at_once;
use common::*;

fn room_count() -> usize {
    std::env::var("CALLFLEET_E2E_ROOMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_at_once_all_audio_verified() {
    let Some(env) = env() else { return };
    let mut failures = Vec::new();
    for (i, outcome) in rooms_at_once(&env, room_count())
        .await
        .into_iter()
        .enumerate()
    {
        match outcome {
            Ok(o) => {
                eprintln!(
                    "room {i}: subscribed at {:.1} s (published at {:.1} s), speech correlation {:.3}, tone {:.0} Hz heard as {:.1} Hz",
                    o.subscribed_secs, o.published_secs, o.speech_correlation, o.tone_hz, o.heard_hz
                );
                if !o.audio_ok() {
                    failures.push(format!("room {i}: bad audio"));
                }
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
