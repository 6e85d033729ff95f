//! Deepgram live transcription over its WebSocket (`/v1/listen`): raw PCM in binary frames,
//! `KeepAlive` while the caller's audio pauses, `Finalize` to flush, `CloseStream` to finish;
//! `Results` (is_final / speech_final), `SpeechStarted` and `UtteranceEnd` out.

use crate::bytes_pcm::to_le_bytes;
use crate::types::*;
use crate::ws::{self, Message, Ws, WsOpenError};
use crate::Backoff;
use callfleet_core::scenario::BoxFuture;
use callfleet_core::secret::Secret;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

const NAME: &str = "deepgram";

/// Deepgram's streaming recognizer.
#[derive(Debug, Clone)]
pub struct DeepgramStt {
    base_url: String,
    key: Secret,
    model: String,
    backoff: Backoff,
    keepalive: Duration,
}

impl DeepgramStt {
    pub fn new(key: Secret) -> Self {
        DeepgramStt {
            base_url: "wss://api.deepgram.com".into(),
            key,
            model: "nova-3".into(),
            backoff: Backoff::default(),
            // The server closes a silent stream after about ten seconds.
            keepalive: Duration::from_secs(4),
        }
    }

    pub fn with_base_url(mut self, url: impl AsRef<str>) -> Self {
        self.base_url = ws::ws_base(url.as_ref());
        self
    }

    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long the stream may go without audio before a `KeepAlive` is sent.
    pub fn with_keepalive(mut self, every: Duration) -> Self {
        self.keepalive = every;
        self
    }

    fn url(&self, o: &SttOptions) -> String {
        let model = o.model.as_deref().unwrap_or(&self.model);
        let mut url = format!(
            "{}/v1/listen?model={}&encoding=linear16&sample_rate={}&channels=1&interim_results=true&endpointing={}&utterance_end_ms={}&vad_events=true&smart_format=true",
            self.base_url,
            ws::query_escape(model),
            o.sample_rate,
            o.endpointing_ms,
            o.utterance_end_ms.max(1000),
        );
        if let Some(lang) = &o.language {
            url.push_str("&language=");
            url.push_str(&ws::query_escape(lang));
        }
        url
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![("authorization", format!("Token {}", self.key.expose()))]
    }
}

fn open_error(e: WsOpenError) -> SttError {
    e.into_stt(NAME)
}

impl SpeechToText for DeepgramStt {
    fn name(&self) -> &str {
        NAME
    }

    fn open(&self, options: SttOptions) -> BoxFuture<'_, Result<SttSession, SttError>> {
        Box::pin(async move {
            let url = self.url(&options);
            let headers = self.headers();
            let ws = ws::open_with_retry(&url, &headers, self.backoff)
                .await
                .map_err(open_error)?;
            let (cmd_tx, cmd_rx) = mpsc::channel(STT_QUEUE_FRAMES);
            let (ev_tx, ev_rx) = mpsc::channel(256);
            let conn = Connection {
                url,
                headers,
                backoff: self.backoff,
                keepalive: self.keepalive,
            };
            let task = tokio::spawn(conn.run(ws, cmd_rx, ev_tx));
            Ok(SttSession::new(NAME, cmd_tx, ev_rx, TaskGuard::new(task)))
        })
    }
}

struct Connection {
    url: String,
    headers: Vec<(&'static str, String)>,
    backoff: Backoff,
    keepalive: Duration,
}

enum Ended {
    Finished,
    Dropped(String),
}

type Events = mpsc::Sender<Result<SttEvent, SttError>>;

impl Connection {
    async fn run(self, mut ws: Ws, mut commands: mpsc::Receiver<SttCommand>, events: Events) {
        loop {
            match self.drive(&mut ws, &mut commands, &events).await {
                Ended::Finished => return,
                Ended::Dropped(reason) => {
                    tracing::warn!(provider = NAME, reason = %reason, "STT connection dropped; reconnecting.");
                    match ws::open_with_retry(&self.url, &self.headers, self.backoff).await {
                        Ok(new) => {
                            ws = new;
                            if events.send(Ok(SttEvent::Reconnected)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = events.send(Err(open_error(e))).await;
                            return;
                        }
                    }
                }
            }
        }
    }

    async fn drive(
        &self,
        ws: &mut Ws,
        commands: &mut mpsc::Receiver<SttCommand>,
        events: &Events,
    ) -> Ended {
        let mut last_sent = Instant::now();
        let mut closing = false;
        loop {
            tokio::select! {
                cmd = commands.recv(), if !closing => {
                    let msg = match cmd {
                        Some(SttCommand::Audio(samples)) => Message::binary(to_le_bytes(&samples)),
                        Some(SttCommand::Finalize) => Message::text(r#"{"type":"Finalize"}"#),
                        Some(SttCommand::Close) | None => {
                            closing = true;
                            Message::text(r#"{"type":"CloseStream"}"#)
                        }
                    };
                    if let Err(e) = ws.send(msg).await {
                        return if closing { Ended::Finished } else { Ended::Dropped(e.to_string()) };
                    }
                    last_sent = Instant::now();
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(ev) = parse(&text) {
                            if events.send(Ok(ev)).await.is_err() {
                                return Ended::Finished;
                            }
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return if closing { Ended::Finished } else { Ended::Dropped(format!("closed by server: {frame:?}")) };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return if closing { Ended::Finished } else { Ended::Dropped(e.to_string()) },
                    None => return if closing { Ended::Finished } else { Ended::Dropped("connection ended".into()) },
                },
                _ = tokio::time::sleep_until(last_sent + self.keepalive), if !closing => {
                    if let Err(e) = ws.send(Message::text(r#"{"type":"KeepAlive"}"#)).await {
                        return Ended::Dropped(e.to_string());
                    }
                    last_sent = Instant::now();
                }
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum ServerMessage {
    Results(Results),
    SpeechStarted {},
    UtteranceEnd {},
    Metadata {},
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Results {
    #[serde(default)]
    is_final: bool,
    #[serde(default)]
    speech_final: bool,
    #[serde(default)]
    from_finalize: bool,
    channel: Channel,
}

#[derive(Deserialize)]
struct Channel {
    #[serde(default)]
    alternatives: Vec<Alternative>,
}

#[derive(Deserialize)]
struct Alternative {
    #[serde(default)]
    transcript: String,
    #[serde(default)]
    confidence: f32,
}

fn parse(text: &str) -> Option<SttEvent> {
    let msg: ServerMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(provider = NAME, error = %e, "Unparsed STT message.");
            return None;
        }
    };
    match msg {
        ServerMessage::Results(r) => {
            let alt = r.channel.alternatives.into_iter().next();
            let (text, confidence) = alt
                .map(|a| (a.transcript, a.confidence))
                .unwrap_or_default();
            Some(SttEvent::Transcript(Transcript {
                text,
                is_final: r.is_final,
                speech_final: r.speech_final,
                from_finalize: r.from_finalize,
                confidence,
            }))
        }
        ServerMessage::SpeechStarted {} => Some(SttEvent::SpeechStarted),
        ServerMessage::UtteranceEnd {} => Some(SttEvent::UtteranceEnd),
        ServerMessage::Metadata {} | ServerMessage::Other => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages() {
        let cases: &[(&str, Option<SttEvent>)] = &[
            (
                r#"{"type":"Results","channel_index":[0,1],"duration":1.0,"start":0.0,"is_final":true,"speech_final":false,"channel":{"alternatives":[{"transcript":"hello","confidence":0.9,"words":[]}]},"metadata":{"request_id":"x"}}"#,
                Some(SttEvent::Transcript(Transcript {
                    text: "hello".into(),
                    is_final: true,
                    speech_final: false,
                    from_finalize: false,
                    confidence: 0.9,
                })),
            ),
            (
                r#"{"type":"SpeechStarted","channel":[0],"timestamp":1.5}"#,
                Some(SttEvent::SpeechStarted),
            ),
            (
                r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":2.1}"#,
                Some(SttEvent::UtteranceEnd),
            ),
            (r#"{"type":"Metadata","request_id":"x"}"#, None),
            (r#"{"type":"Whatever"}"#, None),
            ("not json", None),
        ];
        for (text, want) in cases {
            assert_eq!(&parse(text), want, "{text}");
        }
    }

    #[test]
    fn url_carries_the_listening_options() {
        let stt = DeepgramStt::new(Secret::new("k")).with_base_url("http://127.0.0.1:9");
        let url = stt.url(&SttOptions {
            language: Some("ru".into()),
            ..SttOptions::default()
        });
        assert!(
            url.starts_with(
                "ws://127.0.0.1:9/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000"
            ),
            "{url}"
        );
        assert!(
            url.contains("interim_results=true")
                && url.contains("endpointing=300")
                && url.ends_with("&language=ru"),
            "{url}"
        );
    }
}
