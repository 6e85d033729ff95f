//! A fake Deepgram Aura TTS WebSocket (`/v1/speak`): `Authorization: Token <key>`; `Speak`
//! text is synthesized as it arrives (binary PCM frames), `Flush` is answered by `Flushed` once
//! the audio before it is out, `Clear` drops what is pending and is answered by `Cleared`,
//! `Close` closes.

use crate::server::{self, AbortOnDrop, Out, OutTx};
use crate::tts::{play_text, tts_fake_api, Played, TtsState};
use futures::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

pub struct FakeAura {
    addr: SocketAddr,
    state: Arc<TtsState>,
    _accept: AbortOnDrop,
}

tts_fake_api!(FakeAura);

impl FakeAura {
    pub async fn start() -> Self {
        let state = TtsState::new(crate::TEST_KEY);
        let (addr, accept) = server::serve(state.clone(), connection).await;
        FakeAura {
            addr,
            state,
            _accept: accept,
        }
    }
}

enum Job {
    Speak(String),
    Flush(u32),
}

async fn connection(tcp: tokio::net::TcpStream, state: Arc<TtsState>) {
    let accepted = crate::tts::accept_counted(tcp, &state, |req, key| {
        if server::header(req, "authorization") != Some(format!("Token {key}").as_str()) {
            return Err(StatusCode::UNAUTHORIZED);
        }
        if req.uri().path() != "/v1/speak" {
            return Err(StatusCode::NOT_FOUND);
        }
        Ok(())
    })
    .await;
    let Some((mut ws, hs)) = accepted else { return };
    let rate: u32 = hs
        .param("sample_rate")
        .and_then(|r| r.parse().ok())
        .unwrap_or(24000);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let spawn_gen = |out: OutTx| {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, tokio::spawn(generate(rate, rx, out, state.clone())))
    };
    let (mut jobs, mut generator) = spawn_gen(out_tx.clone());
    let mut flushes = 0u32;
    let mut clears = 0u32;
    let mut utterance = 1usize;
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    match v["type"].as_str() {
                        Some("Speak") => {
                            let t = v["text"].as_str().unwrap_or("").to_string();
                            state.note_text(&format!("utterance-{utterance}"), &t);
                            let _ = jobs.send(Job::Speak(t));
                        }
                        Some("Flush") => {
                            let _ = jobs.send(Job::Flush(flushes));
                            flushes += 1;
                            utterance += 1;
                        }
                        Some("Clear") => {
                            state.log.lock().expect("fake state lock").cancels.push(format!("utterance-{utterance}"));
                            generator.abort();
                            (jobs, generator) = spawn_gen(out_tx.clone());
                            let _ = out_tx.send(Out::Text(serde_json::json!({"type": "Cleared", "sequence_id": clears}).to_string()));
                            clears += 1;
                            utterance += 1;
                        }
                        Some("Close") => {
                            let _ = out_tx.send(Out::Close);
                        }
                        _ => {
                            let _ = out_tx.send(Out::Text(serde_json::json!({"type": "Warning", "description": "unknown message type", "code": "UNKNOWN_MESSAGE"}).to_string()));
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            out = out_rx.recv() => {
                let Some(out) = out else { break };
                if !server::send_out(&mut ws, out).await {
                    break;
                }
            }
        }
    }
    generator.abort();
}

async fn generate(
    rate: u32,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    out: OutTx,
    state: Arc<TtsState>,
) {
    let mut first = true;
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Flush(seq) => {
                first = true;
                let _ = out.send(Out::Text(
                    serde_json::json!({"type": "Flushed", "sequence_id": seq}).to_string(),
                ));
            }
            Job::Speak(text) => {
                let failure = || {
                    vec![Out::Text(serde_json::json!({"type": "Error", "description": "generation failed", "code": "INTERNAL"}).to_string())]
                };
                // A failed utterance leaves the socket open for the next; a dropped one does not.
                if let Played::Dropped =
                    play_text(&text, rate, &state, &mut first, &out, Out::Binary, failure).await
                {
                    return;
                }
            }
        }
    }
}
