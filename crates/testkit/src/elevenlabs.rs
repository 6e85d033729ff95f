//! A fake ElevenLabs input-streaming WebSocket (`/v1/text-to-speech/{voice}/stream-input`):
//! `xi-api-key` required; the first message must be the single-space text that opens the
//! stream, pieces follow, an empty text ends it; audio comes back as base64 in `audio` fields,
//! then `isFinal: true`, then the server closes. Idle sockets close after `inactivity_timeout`.

use crate::server::{self, AbortOnDrop, Out, OutTx};
use crate::tts::{play_text, tts_fake_api, Played, TtsState};
use base64::Engine as _;
use futures::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

pub struct FakeElevenLabs {
    addr: SocketAddr,
    state: Arc<TtsState>,
    _accept: AbortOnDrop,
}

tts_fake_api!(FakeElevenLabs);

impl FakeElevenLabs {
    pub async fn start() -> Self {
        let state = TtsState::new(crate::TEST_KEY);
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (addr, accept) = server::serve(state.clone(), move |tcp, st| {
            connection(
                tcp,
                st,
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1,
            )
        })
        .await;
        FakeElevenLabs {
            addr,
            state,
            _accept: accept,
        }
    }
}

async fn connection(tcp: tokio::net::TcpStream, state: Arc<TtsState>, n: usize) {
    let accepted = crate::tts::accept_counted(tcp, &state, |req, key| {
        if server::header(req, "xi-api-key") != Some(key) {
            return Err(StatusCode::UNAUTHORIZED);
        }
        let path = req.uri().path();
        if !(path.starts_with("/v1/text-to-speech/") && path.ends_with("/stream-input")) {
            return Err(StatusCode::NOT_FOUND);
        }
        Ok(())
    })
    .await;
    let Some((mut ws, hs)) = accepted else { return };
    let rate: u32 = hs
        .param("output_format")
        .and_then(|f| f.strip_prefix("pcm_"))
        .and_then(|r| r.parse().ok())
        .unwrap_or(16000);
    let idle = Duration::from_secs(
        hs.param("inactivity_timeout")
            .and_then(|t| t.parse().ok())
            .unwrap_or(20),
    );
    let utterance = format!("stream-{n}");
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let (piece_tx, piece_rx) = mpsc::unbounded_channel();
    let generator = tokio::spawn(generate(rate, piece_rx, out_tx.clone(), state.clone()));
    let mut opened = false;
    loop {
        tokio::select! {
            msg = tokio::time::timeout(idle, ws.next()) => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(_) if !opened => break,
                    Err(_) => continue,
                };
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                        let Some(t) = v["text"].as_str() else {
                            let _ = out_tx.send(Out::Text(serde_json::json!({"message": "text is required", "error": "invalid_request", "code": 1008}).to_string()));
                            continue;
                        };
                        if !opened {
                            if t != " " {
                                let _ = out_tx.send(Out::Text(serde_json::json!({"message": "the first message must be a single space", "error": "invalid_request", "code": 1008}).to_string()));
                                let _ = out_tx.send(Out::Close);
                            }
                            opened = true;
                            continue;
                        }
                        if t.is_empty() {
                            let _ = piece_tx.send(None);
                        } else {
                            state.note_text(&utterance, t);
                            let _ = piece_tx.send(Some(t.to_string()));
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
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
    mut pieces: mpsc::UnboundedReceiver<Option<String>>,
    out: OutTx,
    state: Arc<TtsState>,
) {
    let mut first = true;
    while let Some(piece) = pieces.recv().await {
        let Some(text) = piece else {
            let _ = out.send(Out::Text(serde_json::json!({"isFinal": true}).to_string()));
            let _ = out.send(Out::Close);
            return;
        };
        let audio = |chunk: Vec<u8>| {
            let audio = base64::engine::general_purpose::STANDARD.encode(chunk);
            Out::Text(serde_json::json!({"audio": audio, "isFinal": null, "normalizedAlignment": null, "alignment": null}).to_string())
        };
        let failure = || {
            vec![Out::Text(serde_json::json!({"message": "generation failed", "error": "internal_error", "code": 1011}).to_string()), Out::Close]
        };
        if !matches!(
            play_text(&text, rate, &state, &mut first, &out, audio, failure).await,
            Played::Whole
        ) {
            return;
        }
    }
}
