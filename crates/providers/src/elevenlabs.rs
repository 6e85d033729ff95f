//! ElevenLabs input-streaming TTS over its WebSocket
//! (`/v1/text-to-speech/{voice}/stream-input`). The protocol carries one utterance per connection
//! (a space to begin, text pieces, an empty text to end, then the server closes), so the session
//! keeps a spare connection opened ahead of time: the first piece of every reply finds a socket
//! already open, as if the call had one connection.

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
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const NAME: &str = "elevenlabs";

#[derive(Debug, Clone)]
pub struct ElevenLabsTts {
    base_url: String,
    key: Secret,
    model: String,
    voice: String,
    backoff: Backoff,
}

impl ElevenLabsTts {
    pub fn new(key: Secret) -> Self {
        ElevenLabsTts {
            base_url: "wss://api.elevenlabs.io".into(),
            key,
            model: "eleven_flash_v2_5".into(),
            voice: "21m00Tcm4TlvDq8ikWAM".into(),
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

    fn url(&self, o: &TtsOptions) -> String {
        let voice = o.voice.as_deref().unwrap_or(&self.voice);
        let model = o.model.as_deref().unwrap_or(&self.model);
        // A spare socket may wait a while for the next reply; the default idle limit is 20 s.
        let mut url = format!(
            "{}/v1/text-to-speech/{}/stream-input?model_id={}&output_format=pcm_{}&inactivity_timeout=180",
            self.base_url,
            ws::query_escape(voice),
            ws::query_escape(model),
            o.sample_rate
        );
        if let Some(lang) = &o.language {
            url.push_str("&language_code=");
            url.push_str(&ws::query_escape(lang));
        }
        url
    }
}

fn open_error(e: WsOpenError) -> TtsError {
    e.into_tts(NAME)
}

/// Where to open sockets; shared by the session task and its utterance tasks.
#[derive(Clone)]
struct Endpoint {
    url: String,
    headers: Vec<(&'static str, String)>,
    backoff: Backoff,
}

impl Endpoint {
    async fn open(&self) -> Result<Ws, TtsError> {
        ws::open_with_retry(&self.url, &self.headers, self.backoff)
            .await
            .map_err(open_error)
    }

    fn spare(self: &Arc<Self>) -> JoinHandle<Result<Ws, TtsError>> {
        let ep = self.clone();
        tokio::spawn(async move { ep.open().await })
    }
}

impl TextToSpeech for ElevenLabsTts {
    fn name(&self) -> &str {
        NAME
    }

    fn open(&self, options: TtsOptions) -> BoxFuture<'_, Result<TtsSession, TtsError>> {
        Box::pin(async move {
            let endpoint = Arc::new(Endpoint {
                url: self.url(&options),
                headers: vec![("xi-api-key", self.key.expose().to_string())],
                backoff: self.backoff,
            });
            // Opened now, at call start, so a bad key or an unreachable service shows at once.
            let first = endpoint.open().await?;
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let (ev_tx, ev_rx) = mpsc::channel(256);
            let task = tokio::spawn(run(endpoint, first, cmd_rx, ev_tx));
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

enum Piece {
    Text(String),
    Finish,
}

struct Active {
    pieces: mpsc::UnboundedSender<Piece>,
    task: JoinHandle<()>,
}

async fn run(
    endpoint: Arc<Endpoint>,
    first: Ws,
    mut commands: mpsc::UnboundedReceiver<TtsCommand>,
    events: Events,
) {
    let mut spare: Option<Ws> = Some(first);
    let mut opening: Option<JoinHandle<Result<Ws, TtsError>>> = None;
    let mut active: HashMap<UtteranceId, Active> = HashMap::new();
    // The socket for a new utterance is awaited between the lookup and the insert, so the map's
    // entry cannot be held across it.
    #[allow(clippy::map_entry)]
    while let Some(cmd) = commands.recv().await {
        active.retain(|_, a| !a.task.is_finished());
        match cmd {
            TtsCommand::Text { id, text } => {
                if !active.contains_key(&id) {
                    let ws = match spare.take() {
                        Some(ws) => Ok(ws),
                        None => match opening.take() {
                            Some(handle) => handle.await.unwrap_or_else(|e| {
                                Err(TtsError::Connect {
                                    provider: NAME.into(),
                                    message: e.to_string(),
                                })
                            }),
                            None => endpoint.open().await,
                        },
                    };
                    opening = Some(endpoint.spare());
                    match ws {
                        Ok(ws) => {
                            let (tx, rx) = mpsc::unbounded_channel();
                            let task = tokio::spawn(utterance(
                                endpoint.clone(),
                                ws,
                                id,
                                rx,
                                events.clone(),
                            ));
                            active.insert(id, Active { pieces: tx, task });
                        }
                        Err(error) => {
                            if events
                                .send(Ok(TtsEvent::Failed { id, error }))
                                .await
                                .is_err()
                            {
                                return;
                            }
                            continue;
                        }
                    }
                }
                if let Some(a) = active.get(&id) {
                    let _ = a.pieces.send(Piece::Text(text));
                }
            }
            TtsCommand::Finish { id } => match active.get(&id) {
                Some(a) => {
                    let _ = a.pieces.send(Piece::Finish);
                }
                None => {
                    if events.send(Ok(TtsEvent::Done { id })).await.is_err() {
                        return;
                    }
                }
            },
            TtsCommand::Cancel { id } => {
                // Closing the socket is how this protocol stops generating.
                if let Some(a) = active.remove(&id) {
                    a.task.abort();
                }
            }
        }
    }
    for a in active.into_values() {
        a.task.abort();
    }
}

/// Speaks one utterance on its own socket.
async fn utterance(
    endpoint: Arc<Endpoint>,
    mut ws: Ws,
    id: UtteranceId,
    mut pieces: mpsc::UnboundedReceiver<Piece>,
    events: Events,
) {
    let fail = |message: String| TtsEvent::Failed {
        id,
        error: TtsError::Provider {
            provider: NAME.into(),
            message,
        },
    };
    let begin = serde_json::json!({"text": " ", "voice_settings": {"stability": 0.5, "similarity_boost": 0.8, "speed": 1.0}});
    if ws.send(Message::text(begin.to_string())).await.is_err() {
        // The spare may have been closed by the server while it waited; one fresh try.
        match endpoint.open().await {
            Ok(fresh) => ws = fresh,
            Err(error) => {
                let _ = events.send(Ok(TtsEvent::Failed { id, error })).await;
                return;
            }
        }
        if let Err(e) = ws.send(Message::text(begin.to_string())).await {
            let _ = events.send(Ok(fail(e.to_string()))).await;
            return;
        }
    }
    let mut finishing = false;
    let mut pcm = PcmAssembler::default();
    loop {
        tokio::select! {
            piece = pieces.recv(), if !finishing => {
                let msg = match piece {
                    Some(Piece::Text(mut text)) => {
                        // The service wants every piece to end in a space.
                        if !text.ends_with(char::is_whitespace) {
                            text.push(' ');
                        }
                        serde_json::json!({"text": text, "try_trigger_generation": true})
                    }
                    Some(Piece::Finish) | None => {
                        finishing = true;
                        serde_json::json!({"text": ""})
                    }
                };
                if let Err(e) = ws.send(Message::text(msg.to_string())).await {
                    let _ = events.send(Ok(fail(e.to_string()))).await;
                    return;
                }
            }
            msg = ws.next() => {
                let ev = match msg {
                    Some(Ok(Message::Text(text))) => match handle(&text, &mut pcm) {
                        Reply::Audio(samples) => Some(TtsEvent::Audio { id, samples }),
                        Reply::Final => {
                            let _ = events.send(Ok(TtsEvent::Done { id })).await;
                            return;
                        }
                        Reply::Error(message) => {
                            let _ = events.send(Ok(fail(message))).await;
                            return;
                        }
                        Reply::Nothing => None,
                    },
                    Some(Ok(Message::Close(_))) | None if finishing => {
                        let _ = events.send(Ok(TtsEvent::Done { id })).await;
                        return;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let _ = events.send(Ok(fail(format!("closed by server: {frame:?}")))).await;
                        return;
                    }
                    None => {
                        let _ = events.send(Ok(fail("connection ended".into()))).await;
                        return;
                    }
                    Some(Ok(_)) => None,
                    Some(Err(e)) => {
                        let _ = events.send(Ok(fail(e.to_string()))).await;
                        return;
                    }
                };
                if let Some(ev) = ev {
                    if events.send(Ok(ev)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[derive(Debug, PartialEq)]
enum Reply {
    Audio(Vec<i16>),
    Final,
    Error(String),
    Nothing,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerMessage {
    #[serde(default)]
    audio: Option<String>,
    #[serde(default)]
    is_final: Option<bool>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn handle(text: &str, pcm: &mut PcmAssembler) -> Reply {
    let Ok(msg) = serde_json::from_str::<ServerMessage>(text) else {
        return Reply::Nothing;
    };
    if let Some(audio) = msg.audio.filter(|a| !a.is_empty()) {
        return match base64::engine::general_purpose::STANDARD.decode(audio) {
            Ok(bytes) => Reply::Audio(pcm.push(&bytes)),
            Err(e) => Reply::Error(format!("bad audio: {e}")),
        };
    }
    if msg.is_final == Some(true) {
        return Reply::Final;
    }
    match msg.error.or(msg.message) {
        Some(message) => Reply::Error(message),
        None => Reply::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages() {
        let cases = [
            (
                r#"{"audio":"AQACAA==","isFinal":null,"normalizedAlignment":null}"#,
                Reply::Audio(vec![1, 2]),
            ),
            (r#"{"isFinal":true}"#, Reply::Final),
            (
                r#"{"message":"Unusual activity","error":"quota_exceeded","code":1008}"#,
                Reply::Error("quota_exceeded".into()),
            ),
            (r#"{"alignment":{}}"#, Reply::Nothing),
        ];
        for (text, want) in cases {
            assert_eq!(handle(text, &mut PcmAssembler::default()), want, "{text}");
        }
    }
}
