//! How a fake synthesizer behaves, shared by the Cartesia, ElevenLabs and Aura fakes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A fake synthesizer's script. Audio is a tone whose length follows the text (`ms_per_char`),
/// sent in chunks of `chunk_ms`.
#[derive(Debug, Clone)]
pub struct TtsScript {
    /// Before the first audio of each utterance.
    pub first_byte_delay: Duration,
    /// Between chunks; zero sends them back to back.
    pub chunk_interval: Duration,
    pub ms_per_char: u32,
    pub chunk_ms: u32,
    /// After this many chunks on a connection the server reports an error for the utterance.
    pub fail_after_chunks: Option<usize>,
    /// After this many chunks the server drops the connection without a word.
    pub disconnect_after_chunks: Option<usize>,
    pub tone_hz: f32,
}

impl Default for TtsScript {
    fn default() -> Self {
        TtsScript {
            first_byte_delay: Duration::ZERO,
            chunk_interval: Duration::ZERO,
            ms_per_char: 70,
            chunk_ms: 100,
            fail_after_chunks: None,
            disconnect_after_chunks: None,
            tone_hz: 440.0,
        }
    }
}

/// What a fake synthesizer saw, for assertions.
#[derive(Debug, Clone, Default)]
pub struct TtsLog {
    pub connections: usize,
    pub refused: usize,
    /// Text per utterance (context id, or a counter where the protocol has none), as received.
    pub texts: Vec<(String, String)>,
    pub cancels: Vec<String>,
    pub chunks_sent: usize,
}

#[derive(Debug, Default)]
pub(crate) struct TtsState {
    pub script: Mutex<TtsScript>,
    pub log: Mutex<TtsLog>,
    /// Connections to refuse with HTTP 503 before accepting again.
    pub refuse_next: AtomicUsize,
    pub key: Mutex<String>,
}

impl TtsState {
    pub(crate) fn new(key: &str) -> Arc<Self> {
        let s = TtsState::default();
        *s.key.lock().expect("fresh lock") = key.to_string();
        Arc::new(s)
    }

    pub(crate) fn script(&self) -> TtsScript {
        self.script.lock().expect("fake state lock").clone()
    }

    pub(crate) fn note_text(&self, utterance: &str, text: &str) {
        let mut log = self.log.lock().expect("fake state lock");
        match log.texts.iter_mut().find(|(u, _)| u == utterance) {
            Some((_, t)) => t.push_str(text),
            None => log.texts.push((utterance.to_string(), text.to_string())),
        }
    }

    /// Counts a chunk and says what to do with it.
    pub(crate) fn next_chunk(&self) -> ChunkFate {
        let script = self.script();
        let mut log = self.log.lock().expect("fake state lock");
        log.chunks_sent += 1;
        let n = log.chunks_sent;
        if script.disconnect_after_chunks.is_some_and(|k| n > k) {
            drop(log);
            self.script
                .lock()
                .expect("fake state lock")
                .disconnect_after_chunks = None;
            return ChunkFate::Disconnect;
        }
        if script.fail_after_chunks.is_some_and(|k| n > k) {
            drop(log);
            self.script
                .lock()
                .expect("fake state lock")
                .fail_after_chunks = None;
            return ChunkFate::Fail;
        }
        ChunkFate::Send
    }

    pub(crate) fn take_refusal(&self) -> bool {
        self.refuse_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

pub(crate) enum ChunkFate {
    Send,
    Fail,
    Disconnect,
}

/// The audio for `text`, cut into chunks.
pub(crate) fn synthesize(text: &str, sample_rate: u32, script: &TtsScript) -> Vec<Vec<u8>> {
    let chars = text.chars().filter(|c| !c.is_whitespace()).count() as u32;
    if chars == 0 {
        return Vec::new();
    }
    let samples = crate::audio::tone(
        chars * script.ms_per_char,
        sample_rate,
        script.tone_hz,
        4000,
    );
    crate::audio::frames(&samples, script.chunk_ms, sample_rate)
        .into_iter()
        .map(|f| f.iter().flat_map(|s| s.to_le_bytes()).collect())
        .collect()
}

/// Shared surface of the TTS fakes.
macro_rules! tts_fake_api {
    ($ty:ident) => {
        impl $ty {
            pub fn url(&self) -> String {
                format!("ws://{}", self.addr)
            }
            pub fn set_script(&self, script: crate::TtsScript) {
                *self.state.script.lock().expect("fake state lock") = script;
            }
            pub fn update_script(&self, f: impl FnOnce(&mut crate::TtsScript)) {
                f(&mut self.state.script.lock().expect("fake state lock"));
            }
            /// Refuse the next `n` connections with HTTP 503.
            pub fn refuse_next(&self, n: usize) {
                self.state
                    .refuse_next
                    .store(n, std::sync::atomic::Ordering::SeqCst);
            }
            pub fn log(&self) -> crate::tts::TtsLog {
                self.state.log.lock().expect("fake state lock").clone()
            }
        }
    };
}
pub(crate) use tts_fake_api;

/// How playing a piece of text ended.
pub(crate) enum Played {
    Whole,
    /// The script made the server report an error (sent already).
    Failed,
    /// The script cut the connection.
    Dropped,
}

/// Sends the audio for `text` paced by the script: `audio` frames each chunk, `failure` is what
/// the service says when generation fails.
pub(crate) async fn play_text(
    text: &str,
    rate: u32,
    state: &TtsState,
    first: &mut bool,
    out: &crate::server::OutTx,
    audio: impl Fn(Vec<u8>) -> crate::server::Out,
    failure: impl Fn() -> Vec<crate::server::Out>,
) -> Played {
    let script = state.script();
    for chunk in synthesize(text, rate, &script) {
        let wait = if *first {
            script.first_byte_delay
        } else {
            script.chunk_interval
        };
        *first = false;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        match state.next_chunk() {
            ChunkFate::Send => {
                let _ = out.send(audio(chunk));
            }
            ChunkFate::Fail => {
                for o in failure() {
                    let _ = out.send(o);
                }
                return Played::Failed;
            }
            ChunkFate::Disconnect => {
                let _ = out.send(crate::server::Out::Drop);
                return Played::Dropped;
            }
        }
    }
    Played::Whole
}

/// Accepts a TTS client: refuses it while the script says so, else lets `check` judge the
/// handshake against the fake's key; counts both outcomes.
pub(crate) async fn accept_counted(
    tcp: tokio::net::TcpStream,
    state: &TtsState,
    check: impl FnOnce(&crate::server::Request, &str) -> Result<(), crate::server::StatusCode> + Unpin,
) -> Option<(crate::server::ServerWs, crate::server::Handshake)> {
    let refuse = state.take_refusal();
    let key = state.key.lock().expect("fake state lock").clone();
    let accepted = crate::server::accept(tcp, |req| {
        if refuse {
            Err(crate::server::StatusCode::SERVICE_UNAVAILABLE)
        } else {
            check(req, &key)
        }
    })
    .await;
    let mut log = state.log.lock().expect("fake state lock");
    match accepted {
        Some(a) => {
            log.connections += 1;
            Some(a)
        }
        None => {
            log.refused += 1;
            None
        }
    }
}
