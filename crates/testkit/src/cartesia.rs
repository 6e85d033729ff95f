//! A fake Cartesia TTS WebSocket (`/tts/websocket`): `X-API-Key` (or `?api_key=`) and
//! `cartesia_version` required; contexts with `continue`, `cancel`; `chunk`, `done` and `error`
//! messages.

use crate::server::{self, Out, OutTx};
use crate::tts::{play_text, tts_fake_api, Played, TtsState};
use base64::Engine as _;
use futures::StreamExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

pub struct FakeCartesia {
    addr: SocketAddr,
    state: Arc<TtsState>,
    _accept: crate::server::AbortOnDrop,
}

tts_fake_api!(FakeCartesia);

impl FakeCartesia {
    pub async fn start() -> Self {
        Self::start_with_key(crate::TEST_KEY).await
    }

    pub async fn start_with_key(key: &str) -> Self {
        let state = TtsState::new(key);
        let (addr, accept) = server::serve(state.clone(), connection).await;
        FakeCartesia {
            addr,
            state,
            _accept: accept,
        }
    }
}

async fn connection(tcp: tokio::net::TcpStream, state: Arc<TtsState>) {
    let accepted = crate::tts::accept_counted(tcp, &state, |req, key| {
        let query = req.uri().query().unwrap_or("");
        let given = server::header(req, "x-api-key")
            .map(str::to_string)
            .or_else(|| {
                server::header(req, "authorization")
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .map(str::to_string)
            })
            .or_else(|| {
                query
                    .split('&')
                    .find_map(|p| p.strip_prefix("api_key="))
                    .map(str::to_string)
            });
        if given.as_deref() != Some(key) {
            return Err(StatusCode::UNAUTHORIZED);
        }
        if server::header(req, "cartesia-version").is_none() && !query.contains("cartesia_version=")
        {
            return Err(StatusCode::BAD_REQUEST);
        }
        Ok(())
    })
    .await;
    let Some((mut ws, _)) = accepted else { return };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let mut contexts: HashMap<String, (mpsc::UnboundedSender<Option<String>>, JoinHandle<()>)> =
        HashMap::new();
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => handle(&text, &state, &out_tx, &mut contexts),
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
    for (_, (_, task)) in contexts {
        task.abort();
    }
}

fn error_json(context: &str, message: &str) -> String {
    serde_json::json!({"type": "error", "context_id": context, "status_code": 400, "done": true, "title": "Invalid request", "message": message, "error_code": "invalid_request"}).to_string()
}

fn handle(
    text: &str,
    state: &Arc<TtsState>,
    out: &OutTx,
    contexts: &mut HashMap<String, (mpsc::UnboundedSender<Option<String>>, JoinHandle<()>)>,
) {
    let Ok(req) = serde_json::from_str::<serde_json::Value>(text) else {
        let _ = out.send(Out::Text(error_json("", "invalid JSON")));
        return;
    };
    let context = req["context_id"].as_str().unwrap_or("").to_string();
    if req["cancel"].as_bool() == Some(true) {
        state
            .log
            .lock()
            .expect("fake state lock")
            .cancels
            .push(context.clone());
        if let Some((_, task)) = contexts.remove(&context) {
            task.abort();
        }
        return;
    }
    let problems = [
        (req["model_id"].is_string(), "model_id is required"),
        (req["transcript"].is_string(), "transcript is required"),
        (
            req["voice"]["mode"] == "id" && req["voice"]["id"].is_string(),
            "voice must be {mode: id, id}",
        ),
        (
            req["output_format"]["container"] == "raw"
                && req["output_format"]["encoding"] == "pcm_s16le",
            "output_format must be raw pcm_s16le",
        ),
        (
            req["output_format"]["sample_rate"].is_u64(),
            "output_format.sample_rate is required",
        ),
    ];
    if let Some((_, problem)) = problems.iter().find(|(ok, _)| !ok) {
        let _ = out.send(Out::Text(error_json(&context, problem)));
        return;
    }
    let transcript = req["transcript"].as_str().unwrap_or("").to_string();
    let more = req["continue"].as_bool().unwrap_or(false);
    let rate = req["output_format"]["sample_rate"]
        .as_u64()
        .unwrap_or(24000) as u32;
    state.note_text(&context, &transcript);
    let (tx, _) = contexts.entry(context.clone()).or_insert_with(|| {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(generate(
            context.clone(),
            rate,
            rx,
            out.clone(),
            state.clone(),
        ));
        (tx, task)
    });
    let _ = tx.send(Some(transcript));
    if !more {
        let _ = tx.send(None);
    }
}

async fn generate(
    context: String,
    rate: u32,
    mut pieces: mpsc::UnboundedReceiver<Option<String>>,
    out: OutTx,
    state: Arc<TtsState>,
) {
    let mut first = true;
    while let Some(piece) = pieces.recv().await {
        let Some(text) = piece else {
            let _ = out.send(Out::Text(serde_json::json!({"type": "done", "done": true, "status_code": 206, "context_id": context}).to_string()));
            return;
        };
        let audio = |chunk: Vec<u8>| {
            let data = base64::engine::general_purpose::STANDARD.encode(chunk);
            Out::Text(serde_json::json!({"type": "chunk", "data": data, "done": false, "status_code": 206, "step_time": 1.0, "context_id": context}).to_string())
        };
        let failure = || {
            vec![Out::Text(
                serde_json::json!({"type": "error", "context_id": context, "status_code": 500, "done": true, "title": "Internal error", "message": "generation failed", "error_code": "internal"})
                    .to_string(),
            )]
        };
        if !matches!(
            play_text(&text, rate, &state, &mut first, &out, audio, failure).await,
            Played::Whole
        ) {
            return;
        }
    }
}
