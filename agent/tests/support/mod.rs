//! What the agent's end-to-end tests share: the livekit-server and LiveKit Python SDK they run
//! against (or why a test cannot run), speech made with espeak-ng, and the settings the agent
//! joins rooms with.
#![allow(dead_code)]

use callfleet_agent::LiveKitSettings;
use callfleet_core::secret::Secret;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A running livekit-server and a Python with LiveKit's SDK.
pub struct LiveKitEnv {
    pub url: String,
    pub python: PathBuf,
}

/// Says why `test` cannot run; under CI that fails the test instead.
pub fn missing(test: &str, what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} (CI is set, so this end-to-end test fails instead of skipping)");
    }
    eprintln!("note: skipping the {test} test: {what}");
}

/// The server at `CALLFLEET_LIVEKIT_URL` and the Python at `CALLFLEET_PYTHON` (the defaults
/// `scripts/rtc-test-env.sh` sets up), or `None` when one is missing.
pub fn livekit_env(test: &str) -> Option<LiveKitEnv> {
    let url =
        std::env::var("CALLFLEET_LIVEKIT_URL").unwrap_or_else(|_| "ws://127.0.0.1:7880".into());
    let host_port = url
        .split("://")
        .nth(1)
        .unwrap_or(&url)
        .trim_end_matches('/')
        .to_string();
    if host_port
        .parse()
        .ok()
        .is_none_or(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_err())
    {
        missing(test, &format!("no livekit-server at {url}"));
        return None;
    }
    let python = std::env::var_os("CALLFLEET_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/callfleet/venv/bin/python")
        });
    if !python.exists() {
        missing(test, "no Python with the LiveKit SDK");
        return None;
    }
    Some(LiveKitEnv { url, python })
}

/// Writes `text` spoken by espeak-ng (American English) to `wav`; false when espeak-ng is missing.
pub fn espeak_wav(wav: &Path, text: &str) -> bool {
    let spoken = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(wav)
        .arg(text)
        .status();
    matches!(spoken, Ok(s) if s.success())
}

pub fn api_key() -> String {
    std::env::var("CALLFLEET_LIVEKIT_API_KEY").unwrap_or_else(|_| "devkey".into())
}

pub fn api_secret() -> String {
    std::env::var("CALLFLEET_LIVEKIT_API_SECRET").unwrap_or_else(|_| "secret".into())
}

/// What the agent joins rooms on `url` with.
pub fn settings(url: &str) -> LiveKitSettings {
    LiveKitSettings {
        url: url.to_string(),
        api_key: api_key(),
        api_secret: Secret::new(api_secret()),
        grants: Default::default(),
    }
}
