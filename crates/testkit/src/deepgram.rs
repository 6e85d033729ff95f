//! A fake Deepgram live STT WebSocket (`/v1/listen`). It "recognizes" by loudness: each stretch
//! of loud audio is one utterance whose words are the next scripted transcript, revealed in
//! interim results as the speech goes on; silence of `endpointing` ms (audio time) makes the
//! result final with `speech_final`, and `utterance_end_ms` of it sends `UtteranceEnd`.
//! `Authorization: Token <key>` and `encoding=linear16` are required; `KeepAlive`, `Finalize`
//! and `CloseStream` behave as documented, and ten seconds without data closes the stream.

use crate::server::{self, AbortOnDrop, Out};
use futures::StreamExt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone)]
pub struct SttScript {
    /// The words of each stretch of speech, in order; later stretches get no words.
    pub transcripts: Vec<String>,
    /// Thinking time before each final result, as the real service takes.
    pub final_delay: Duration,
    /// Loudness (RMS) above which a 10 ms window is speech.
    pub speech_rms: f64,
    pub interim_every_ms: u32,
    /// Drop the connection (once) after this much audio on it.
    pub disconnect_after_ms: Option<u32>,
    /// How sure the recognizer says it is of each result (the alternative's and each word's
    /// `confidence`).
    pub confidence: f64,
}

impl Default for SttScript {
    fn default() -> Self {
        SttScript {
            transcripts: Vec::new(),
            final_delay: Duration::ZERO,
            speech_rms: 500.0,
            interim_every_ms: 200,
            disconnect_after_ms: None,
            confidence: 0.98,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SttLog {
    pub connections: usize,
    pub refused: usize,
    pub keepalives: usize,
    pub finalizes: usize,
    pub close_streams: usize,
    pub audio_ms: u64,
    /// Every query string the clients connected with.
    pub queries: Vec<String>,
}

#[derive(Default)]
struct State {
    script: Mutex<SttScript>,
    log: Mutex<SttLog>,
    /// Index of the next transcript, across connections (a reconnect goes on with the script).
    next: AtomicUsize,
    refuse_next: AtomicUsize,
    key: String,
}

pub struct FakeDeepgram {
    addr: SocketAddr,
    state: Arc<State>,
    _accept: AbortOnDrop,
}

impl FakeDeepgram {
    pub async fn start(script: SttScript) -> Self {
        let (listener, addr) = server::bind().await;
        let state = Arc::new(State {
            script: Mutex::new(script),
            key: crate::TEST_KEY.into(),
            ..State::default()
        });
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(connection(tcp, st.clone()));
            }
        });
        FakeDeepgram {
            addr,
            state,
            _accept: AbortOnDrop(accept),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn log(&self) -> SttLog {
        self.state.log.lock().expect("fake state lock").clone()
    }

    pub fn update_script(&self, f: impl FnOnce(&mut SttScript)) {
        f(&mut self.state.script.lock().expect("fake state lock"));
    }

    pub fn refuse_next(&self, n: usize) {
        self.state.refuse_next.store(n, Ordering::SeqCst);
    }
}

struct Listener {
    rate: u32,
    endpointing_ms: u32,
    utterance_end_ms: Option<u32>,
    interim: bool,
    vad_events: bool,
    carry: Vec<i16>,
    audio_ms: u64,
    speech: Option<Speech>,
    /// Audio time of silence since the last final, while an utterance end is owed.
    owed_utterance_end: Option<u32>,
    confidence: f64,
}

struct Speech {
    words: Vec<String>,
    start_ms: u64,
    speech_ms: u32,
    silence_ms: u32,
    shown: usize,
}

fn results(
    confidence: f64,
    start_ms: u64,
    end_ms: u64,
    text: &str,
    is_final: bool,
    speech_final: bool,
    from_finalize: bool,
) -> String {
    serde_json::json!({
        "type": "Results",
        "channel_index": [0, 1],
        "duration": (end_ms.saturating_sub(start_ms)) as f64 / 1000.0,
        "start": start_ms as f64 / 1000.0,
        "is_final": is_final,
        "speech_final": speech_final,
        "from_finalize": from_finalize,
        "channel": {"alternatives": [{"transcript": text, "confidence": confidence, "words": text.split_whitespace().map(|w| serde_json::json!({"word": w.to_lowercase(), "punctuated_word": w, "start": 0.0, "end": 0.0, "confidence": confidence})).collect::<Vec<_>>()}]},
        "metadata": {"request_id": "fake-request", "model_info": {"name": "fake", "version": "0", "arch": "fake"}, "model_uuid": "fake"},
    })
    .to_string()
}

impl Listener {
    /// Messages owed for `samples` of audio.
    fn hear(&mut self, samples: &[i16], state: &State) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        self.carry.extend_from_slice(samples);
        let window = (self.rate / 100) as usize;
        // Only the knobs, not the transcripts: a long script must not cost a copy per window.
        let (speech_rms, interim_every_ms) = {
            let script = state.script.lock().expect("fake state lock");
            (script.speech_rms, script.interim_every_ms)
        };
        while self.carry.len() >= window {
            let w: Vec<i16> = self.carry.drain(..window).collect();
            self.audio_ms += 10;
            let loud = crate::audio::rms(&w) > speech_rms;
            match (&mut self.speech, loud) {
                (None, true) => {
                    let i = state.next.fetch_add(1, Ordering::SeqCst);
                    let words = state
                        .script
                        .lock()
                        .expect("fake state lock")
                        .transcripts
                        .get(i)
                        .map(|t| t.split_whitespace().map(str::to_string).collect())
                        .unwrap_or_default();
                    self.owed_utterance_end = None;
                    if self.vad_events {
                        out.push((serde_json::json!({"type": "SpeechStarted", "channel": [0], "timestamp": self.audio_ms as f64 / 1000.0}).to_string(), false));
                    }
                    self.speech = Some(Speech {
                        words,
                        start_ms: self.audio_ms - 10,
                        speech_ms: 10,
                        silence_ms: 0,
                        shown: 0,
                    });
                }
                (Some(s), true) => {
                    s.speech_ms += 10;
                    s.silence_ms = 0;
                    if self.interim
                        && s.speech_ms % interim_every_ms.max(10) == 0
                        && s.shown < s.words.len()
                    {
                        s.shown += 1;
                        out.push((
                            results(
                                self.confidence,
                                s.start_ms,
                                self.audio_ms,
                                &s.words[..s.shown].join(" "),
                                false,
                                false,
                                false,
                            ),
                            false,
                        ));
                    }
                }
                (Some(s), false) => {
                    s.silence_ms += 10;
                    if s.silence_ms >= self.endpointing_ms {
                        out.push((
                            results(
                                self.confidence,
                                s.start_ms,
                                self.audio_ms,
                                &s.words.join(" "),
                                true,
                                true,
                                false,
                            ),
                            true,
                        ));
                        self.speech = None;
                        self.owed_utterance_end = Some(s_silence(self.endpointing_ms));
                    }
                }
                (None, false) => {
                    if let (Some(silent), Some(limit)) =
                        (self.owed_utterance_end.as_mut(), self.utterance_end_ms)
                    {
                        *silent += 10;
                        if *silent >= limit {
                            out.push((serde_json::json!({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": self.audio_ms as f64 / 1000.0}).to_string(), false));
                            self.owed_utterance_end = None;
                        }
                    }
                }
            }
        }
        out
    }

    /// The final result for speech cut short by `Finalize` or `CloseStream`.
    fn flush(&mut self, from_finalize: bool) -> String {
        match self.speech.take() {
            Some(s) => results(
                self.confidence,
                s.start_ms,
                self.audio_ms,
                &s.words.join(" "),
                true,
                false,
                from_finalize,
            ),
            None => results(
                self.confidence,
                self.audio_ms,
                self.audio_ms,
                "",
                true,
                false,
                from_finalize,
            ),
        }
    }
}

fn s_silence(endpointing_ms: u32) -> u32 {
    endpointing_ms
}

async fn connection(tcp: tokio::net::TcpStream, state: Arc<State>) {
    let refuse = state
        .refuse_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let key = state.key.clone();
    let accepted = server::accept(tcp, |req| {
        if refuse {
            return Err(StatusCode::SERVICE_UNAVAILABLE);
        }
        if server::header(req, "authorization") != Some(format!("Token {key}").as_str()) {
            return Err(StatusCode::UNAUTHORIZED);
        }
        if req.uri().path() != "/v1/listen" {
            return Err(StatusCode::NOT_FOUND);
        }
        if !req
            .uri()
            .query()
            .unwrap_or("")
            .contains("encoding=linear16")
        {
            return Err(StatusCode::BAD_REQUEST);
        }
        Ok(())
    })
    .await;
    let Some((mut ws, hs)) = accepted else {
        state.log.lock().expect("fake state lock").refused += 1;
        return;
    };
    {
        let mut log = state.log.lock().expect("fake state lock");
        log.connections += 1;
        log.queries.push(
            hs.query
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&"),
        );
    }
    let num = |name: &str| hs.param(name).and_then(|v| v.parse::<u32>().ok());
    let mut listener = Listener {
        rate: num("sample_rate").unwrap_or(16000),
        endpointing_ms: num("endpointing").unwrap_or(10),
        utterance_end_ms: num("utterance_end_ms"),
        interim: hs.param("interim_results") == Some("true"),
        vad_events: hs.param("vad_events") == Some("true"),
        carry: Vec::new(),
        audio_ms: 0,
        speech: None,
        owed_utterance_end: None,
        confidence: state.script.lock().expect("fake state lock").confidence,
    };
    let mut heard_on_connection: u64 = 0;
    loop {
        let msg = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(m) => m,
            Err(_) => {
                // NET-0001: no audio or KeepAlive for ten seconds.
                let _ = server::send_out(&mut ws, Out::Close).await;
                return;
            }
        };
        let outs: Vec<Out> = match msg {
            Some(Ok(Message::Binary(bytes))) => {
                let samples: Vec<i16> = bytes
                    .chunks_exact(2)
                    .map(|p| i16::from_le_bytes([p[0], p[1]]))
                    .collect();
                let ms = samples.len() as u64 * 1000 / listener.rate.max(1) as u64;
                heard_on_connection += ms;
                state.log.lock().expect("fake state lock").audio_ms += ms;
                let limit = state
                    .script
                    .lock()
                    .expect("fake state lock")
                    .disconnect_after_ms;
                if limit.is_some_and(|l| heard_on_connection >= l as u64) {
                    state
                        .script
                        .lock()
                        .expect("fake state lock")
                        .disconnect_after_ms = None;
                    return;
                }
                let mut outs = Vec::new();
                for (text, is_final) in listener.hear(&samples, &state) {
                    if is_final {
                        let delay = state.script.lock().expect("fake state lock").final_delay;
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                    }
                    outs.push(Out::Text(text));
                }
                outs
            }
            Some(Ok(Message::Text(text))) => {
                let kind = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["type"].as_str().map(str::to_string));
                let mut log = state.log.lock().expect("fake state lock");
                match kind.as_deref() {
                    Some("KeepAlive") => {
                        log.keepalives += 1;
                        Vec::new()
                    }
                    Some("Finalize") => {
                        log.finalizes += 1;
                        vec![Out::Text(listener.flush(true))]
                    }
                    Some("CloseStream") => {
                        log.close_streams += 1;
                        let mut outs = Vec::new();
                        if listener.speech.is_some() {
                            outs.push(Out::Text(listener.flush(false)));
                        }
                        outs.push(Out::Text(
                            serde_json::json!({"type": "Metadata", "transaction_key": "deprecated", "request_id": "fake-request", "created": "2026-01-01T00:00:00Z", "duration": listener.audio_ms as f64 / 1000.0, "channels": 1}).to_string(),
                        ));
                        outs.push(Out::Close);
                        outs
                    }
                    _ => Vec::new(),
                }
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            Some(Ok(_)) => Vec::new(),
        };
        for out in outs {
            if !server::send_out(&mut ws, out).await {
                return;
            }
        }
    }
}
