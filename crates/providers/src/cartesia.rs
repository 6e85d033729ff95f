//! Cartesia streaming TTS over its WebSocket: one connection per call, one context per utterance.
//! Text pieces go out with `continue: true` exactly as the LLM produced them, the utterance ends
//! with an empty `continue: false`, and barge-in sends `cancel`. Audio arrives as base64 PCM in
//! `chunk` messages, tagged with the context.

use crate::bytes_pcm::PcmAssembler;
use crate::types::*;
use crate::ws::{self, Message, Ws, WsOpenError};
use crate::Backoff;
use base64::Engine as _;
use callfleet_core::scenario::BoxFuture;
use callfleet_core::secret::Secret;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use std::collections::HashMap;
use tokio::sync::mpsc;

const NAME: &str = "cartesia";
/// The API version this client was written against; Cartesia keeps old versions working.
pub const API_VERSION: &str = "2025-04-16";

#[derive(Debug, Clone)]
pub struct CartesiaTts {
    base_url: String,
    key: Secret,
    model: String,
    voice: String,
    backoff: Backoff,
}

impl CartesiaTts {
    pub fn new(key: Secret) -> Self {
        CartesiaTts {
            base_url: "wss://api.cartesia.ai".into(),
            key,
            model: "sonic-2".into(),
            voice: "a0e99841-438c-4a64-b679-ae501e7d6091".into(),
            backoff: Backoff::default(),
        }
    }

    pub fn with_base_url(mut self, url: impl AsRef<str>) -> Self {
        self.base_url = ws::ws_base(url.as_ref());
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    fn url(&self) -> String {
        format!(
            "{}/tts/websocket?cartesia_version={API_VERSION}",
            self.base_url
        )
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("x-api-key", self.key.expose().to_string()),
            ("cartesia-version", API_VERSION.to_string()),
        ]
    }
}

fn open_error(e: WsOpenError) -> TtsError {
    e.into_tts(NAME)
}

impl TextToSpeech for CartesiaTts {
    fn name(&self) -> &str {
        NAME
    }

    fn open(&self, options: TtsOptions) -> BoxFuture<'_, Result<TtsSession, TtsError>> {
        Box::pin(async move {
            let url = self.url();
            let headers = self.headers();
            let ws = ws::open_with_retry(&url, &headers, self.backoff)
                .await
                .map_err(open_error)?;
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let (ev_tx, ev_rx) = mpsc::channel(256);
            let conn = Connection {
                url,
                headers,
                backoff: self.backoff,
                model: options.model.clone().unwrap_or_else(|| self.model.clone()),
                voice: options.voice.clone().unwrap_or_else(|| self.voice.clone()),
                language: options.language.clone(),
                sample_rate: options.sample_rate,
                contexts: HashMap::new(),
            };
            let task = tokio::spawn(conn.run(ws, cmd_rx, ev_tx));
            Ok(TtsSession::new(
                NAME,
                options.sample_rate,
                cmd_tx,
                ev_rx,
                TaskGuard::new(task),
            ))
        })
    }
}

type Events = mpsc::Sender<Result<TtsEvent, TtsError>>;

struct Connection {
    url: String,
    headers: Vec<(&'static str, String)>,
    backoff: Backoff,
    model: String,
    voice: String,
    language: Option<String>,
    sample_rate: u32,
    /// Utterances started on this connection and not yet done or cancelled.
    contexts: HashMap<UtteranceId, PcmAssembler>,
}

fn context_id(id: UtteranceId) -> String {
    format!("callfleet-{id}")
}

fn utterance_of(context: &str) -> Option<UtteranceId> {
    context.strip_prefix("callfleet-")?.parse().ok()
}

impl Connection {
    fn request(&self, id: UtteranceId, transcript: &str, more: bool) -> serde_json::Value {
        let mut req = serde_json::json!({
            "model_id": self.model,
            "transcript": transcript,
            "voice": {"mode": "id", "id": self.voice},
            "context_id": context_id(id),
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": self.sample_rate},
            "continue": more,
            // Speak as soon as a piece arrives: the pipeline already cuts text at clauses.
            "max_buffer_delay_ms": 0,
            "add_timestamps": false,
        });
        if let Some(lang) = &self.language {
            req["language"] = serde_json::Value::String(lang.clone());
        }
        req
    }

    async fn run(
        mut self,
        mut ws: Ws,
        mut commands: mpsc::UnboundedReceiver<TtsCommand>,
        events: Events,
    ) {
        loop {
            let reason = match self.drive(&mut ws, &mut commands, &events).await {
                None => return,
                Some(reason) => reason,
            };
            let lost: Vec<UtteranceId> = std::mem::take(&mut self.contexts).into_keys().collect();
            match ws::reopen_tts(
                NAME,
                &reason,
                lost,
                &self.url,
                &self.headers,
                self.backoff,
                &events,
            )
            .await
            {
                Some(new) => ws = new,
                None => return,
            }
        }
    }

    /// Serves the connection until the session ends (`None`) or the connection drops.
    async fn drive(
        &mut self,
        ws: &mut Ws,
        commands: &mut mpsc::UnboundedReceiver<TtsCommand>,
        events: &Events,
    ) -> Option<String> {
        loop {
            tokio::select! {
                cmd = commands.recv() => {
                    let msg = match cmd? {
                        TtsCommand::Text { id, text } => {
                            self.contexts.entry(id).or_default();
                            self.request(id, &text, true)
                        }
                        TtsCommand::Finish { id } => {
                            self.contexts.entry(id).or_default();
                            self.request(id, "", false)
                        }
                        TtsCommand::Cancel { id } => {
                            if self.contexts.remove(&id).is_none() {
                                continue;
                            }
                            serde_json::json!({"context_id": context_id(id), "cancel": true})
                        }
                    };
                    if let Err(e) = ws.send(Message::text(msg.to_string())).await {
                        return Some(e.to_string());
                    }
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        for ev in self.handle(&text) {
                            if events.send(Ok(ev)).await.is_err() {
                                return None;
                            }
                        }
                    }
                    Some(Ok(Message::Close(frame))) => return Some(format!("closed by server: {frame:?}")),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Some(e.to_string()),
                    None => return Some("connection ended".into()),
                },
            }
        }
    }

    fn handle(&mut self, text: &str) -> Vec<TtsEvent> {
        let msg: ServerMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(provider = NAME, error = %e, "Unparsed TTS message.");
                return Vec::new();
            }
        };
        let id = msg.context_id.as_deref().and_then(utterance_of);
        match msg.kind.as_str() {
            "chunk" => {
                let Some(id) = id else { return Vec::new() };
                // Audio still in flight for a cancelled context is not for the caller's ears.
                let Some(pcm) = self.contexts.get_mut(&id) else {
                    return Vec::new();
                };
                match base64::engine::general_purpose::STANDARD.decode(msg.data.unwrap_or_default())
                {
                    Ok(bytes) => vec![TtsEvent::Audio {
                        id,
                        samples: pcm.push(&bytes),
                    }],
                    Err(e) => vec![self.fail(id, format!("bad audio chunk: {e}"))],
                }
            }
            "done" => match id {
                Some(id) if self.contexts.remove(&id).is_some() => vec![TtsEvent::Done { id }],
                _ => Vec::new(),
            },
            "error" => {
                let message = msg
                    .message
                    .or(msg.error)
                    .or(msg.title)
                    .unwrap_or_else(|| "error".into());
                match id {
                    Some(id) if self.contexts.contains_key(&id) => vec![self.fail(id, message)],
                    Some(_) => Vec::new(),
                    None => {
                        let ids: Vec<_> = self.contexts.keys().copied().collect();
                        ids.into_iter()
                            .map(|id| self.fail(id, message.clone()))
                            .collect()
                    }
                }
            }
            _ => Vec::new(),
        }
    }

    fn fail(&mut self, id: UtteranceId, message: String) -> TtsEvent {
        self.contexts.remove(&id);
        TtsEvent::Failed {
            id,
            error: TtsError::Provider {
                provider: NAME.into(),
                message,
            },
        }
    }
}

#[derive(Deserialize)]
struct ServerMessage {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    context_id: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    title: Option<String>,
    /// Older API versions put the message here.
    #[serde(default)]
    error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        Connection {
            url: String::new(),
            headers: Vec::new(),
            backoff: Backoff::NONE,
            model: "sonic-2".into(),
            voice: "v".into(),
            language: Some("en".into()),
            sample_rate: 16000,
            contexts: HashMap::new(),
        }
    }

    #[test]
    fn server_messages_map_to_events() {
        let mut c = conn();
        c.contexts.insert(7, PcmAssembler::default());
        let cases: Vec<(&str, Vec<TtsEvent>)> = vec![
            (
                r#"{"type":"chunk","data":"AQACAA==","done":false,"status_code":206,"context_id":"callfleet-7"}"#,
                vec![TtsEvent::Audio {
                    id: 7,
                    samples: vec![1, 2],
                }],
            ),
            (
                r#"{"type":"chunk","data":"AQA=","context_id":"callfleet-8"}"#,
                vec![],
            ),
            (
                r#"{"type":"timestamps","context_id":"callfleet-7"}"#,
                vec![],
            ),
            (
                r#"{"type":"done","done":true,"context_id":"callfleet-7"}"#,
                vec![TtsEvent::Done { id: 7 }],
            ),
            (
                r#"{"type":"done","done":true,"context_id":"callfleet-7"}"#,
                vec![],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(c.handle(text), want, "{text}");
        }
        c.contexts.insert(9, PcmAssembler::default());
        let got = c.handle(r#"{"type":"error","done":true,"title":"Bad","message":"voice not found","error_code":"x","context_id":"callfleet-9"}"#);
        assert_eq!(
            got,
            vec![TtsEvent::Failed {
                id: 9,
                error: TtsError::Provider {
                    provider: NAME.into(),
                    message: "voice not found".into()
                }
            }]
        );
    }

    #[test]
    fn requests_continue_until_the_empty_last_piece() {
        let c = conn();
        let r = c.request(3, "Hello, ", true);
        assert_eq!(r["transcript"], "Hello, ");
        assert_eq!(r["continue"], true);
        assert_eq!(r["context_id"], "callfleet-3");
        assert_eq!(r["output_format"]["sample_rate"], 16000);
        assert_eq!(c.request(3, "", false)["continue"], false);
    }
}
