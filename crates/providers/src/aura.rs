//! Deepgram Aura streaming TTS over its WebSocket (`/v1/speak`): `Speak` text, `Flush` to end an
//! utterance (answered by `Flushed`), `Clear` on barge-in (answered by `Cleared`); audio comes
//! back as binary frames of raw PCM. The socket carries one utterance at a time, so audio belongs
//! to the oldest utterance not yet flushed back.

use crate::bytes_pcm::PcmAssembler;
use crate::types::*;
use crate::ws::{self, Message, Ws, WsOpenError};
use crate::Backoff;
use callfleet_core::scenario::BoxFuture;
use callfleet_core::secret::Secret;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use std::collections::VecDeque;
use tokio::sync::mpsc;

const NAME: &str = "deepgram-aura";

#[derive(Debug, Clone)]
pub struct AuraTts {
    base_url: String,
    key: Secret,
    model: String,
    backoff: Backoff,
}

impl AuraTts {
    pub fn new(key: Secret) -> Self {
        AuraTts {
            base_url: "wss://api.deepgram.com".into(),
            key,
            model: "aura-2-thalia-en".into(),
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
        // Aura names its voices as models (`aura-2-thalia-en`); a configured voice wins.
        let model = o
            .voice
            .as_deref()
            .or(o.model.as_deref())
            .unwrap_or(&self.model);
        format!(
            "{}/v1/speak?model={}&encoding=linear16&sample_rate={}",
            self.base_url,
            ws::query_escape(model),
            o.sample_rate
        )
    }
}

fn open_error(e: WsOpenError) -> TtsError {
    e.into_tts(NAME)
}

impl TextToSpeech for AuraTts {
    fn name(&self) -> &str {
        NAME
    }

    fn open(&self, options: TtsOptions) -> BoxFuture<'_, Result<TtsSession, TtsError>> {
        Box::pin(async move {
            let url = self.url(&options);
            let headers = vec![("authorization", format!("Token {}", self.key.expose()))];
            let ws = ws::open_with_retry(&url, &headers, self.backoff)
                .await
                .map_err(open_error)?;
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let (ev_tx, ev_rx) = mpsc::channel(256);
            let conn = Connection {
                url,
                headers,
                backoff: self.backoff,
                queue: VecDeque::new(),
                clearing: 0,
                pcm: PcmAssembler::default(),
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

struct Pending {
    id: UtteranceId,
    flushed: bool,
}

struct Connection {
    url: String,
    headers: Vec<(&'static str, String)>,
    backoff: Backoff,
    /// Utterances in the order the server speaks them.
    queue: VecDeque<Pending>,
    /// `Clear`s sent and not yet answered; audio meanwhile is stale.
    clearing: u32,
    pcm: PcmAssembler,
}

impl Connection {
    async fn run(
        mut self,
        mut ws: Ws,
        mut commands: mpsc::UnboundedReceiver<TtsCommand>,
        events: Events,
    ) {
        loop {
            let Some(reason) = self.drive(&mut ws, &mut commands, &events).await else {
                return;
            };
            let lost: Vec<UtteranceId> = std::mem::take(&mut self.queue)
                .into_iter()
                .map(|p| p.id)
                .collect();
            self.clearing = 0;
            self.pcm = PcmAssembler::default();
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
                            if !self.queue.iter().any(|p| p.id == id) {
                                self.queue.push_back(Pending { id, flushed: false });
                            }
                            serde_json::json!({"type": "Speak", "text": text})
                        }
                        TtsCommand::Finish { id } => {
                            match self.queue.iter_mut().find(|p| p.id == id) {
                                Some(p) => p.flushed = true,
                                // Nothing was said: done at once, no Flush to wait for.
                                None => {
                                    if events.send(Ok(TtsEvent::Done { id })).await.is_err() {
                                        return None;
                                    }
                                    continue;
                                }
                            }
                            serde_json::json!({"type": "Flush"})
                        }
                        TtsCommand::Cancel { id } => {
                            if !self.queue.iter().any(|p| p.id == id) {
                                continue;
                            }
                            // Clear empties the server's whole buffer, so everything queued goes.
                            for p in std::mem::take(&mut self.queue) {
                                if p.id != id {
                                    let error = TtsError::Provider { provider: NAME.into(), message: "cleared with an earlier utterance".into() };
                                    if events.send(Ok(TtsEvent::Failed { id: p.id, error })).await.is_err() {
                                        return None;
                                    }
                                }
                            }
                            self.clearing += 1;
                            serde_json::json!({"type": "Clear"})
                        }
                    };
                    if let Err(e) = ws.send(Message::text(msg.to_string())).await {
                        return Some(e.to_string());
                    }
                }
                msg = ws.next() => {
                    let ev = match msg {
                        Some(Ok(Message::Binary(bytes))) => self.audio(&bytes),
                        Some(Ok(Message::Text(text))) => self.control(&text),
                        Some(Ok(Message::Close(frame))) => return Some(format!("closed by server: {frame:?}")),
                        Some(Ok(_)) => None,
                        Some(Err(e)) => return Some(e.to_string()),
                        None => return Some("connection ended".into()),
                    };
                    if let Some(ev) = ev {
                        if events.send(Ok(ev)).await.is_err() {
                            return None;
                        }
                    }
                }
            }
        }
    }

    fn audio(&mut self, bytes: &[u8]) -> Option<TtsEvent> {
        if self.clearing > 0 {
            return None;
        }
        let id = self.queue.front()?.id;
        Some(TtsEvent::Audio {
            id,
            samples: self.pcm.push(bytes),
        })
    }

    fn control(&mut self, text: &str) -> Option<TtsEvent> {
        let msg: ServerMessage = serde_json::from_str(text).ok()?;
        match msg.kind.as_str() {
            "Flushed" => {
                if self.clearing > 0 {
                    return None;
                }
                let front = self.queue.front()?;
                if !front.flushed {
                    return None;
                }
                let id = front.id;
                self.queue.pop_front();
                Some(TtsEvent::Done { id })
            }
            "Cleared" => {
                self.clearing = self.clearing.saturating_sub(1);
                None
            }
            "Error" => {
                let p = self.queue.pop_front()?;
                let message = msg
                    .description
                    .or(msg.err_msg)
                    .unwrap_or_else(|| "error".into());
                Some(TtsEvent::Failed {
                    id: p.id,
                    error: TtsError::Provider {
                        provider: NAME.into(),
                        message,
                    },
                })
            }
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct ServerMessage {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    err_msg: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_belongs_to_the_oldest_utterance_and_stops_while_clearing() {
        let mut c = Connection {
            url: String::new(),
            headers: Vec::new(),
            backoff: Backoff::NONE,
            queue: VecDeque::new(),
            clearing: 0,
            pcm: PcmAssembler::default(),
        };
        assert_eq!(c.audio(&[1, 0]), None);
        c.queue.push_back(Pending {
            id: 4,
            flushed: true,
        });
        assert_eq!(
            c.audio(&[1, 0]),
            Some(TtsEvent::Audio {
                id: 4,
                samples: vec![1]
            })
        );
        assert_eq!(c.control(r#"{"type":"Metadata","request_id":"r"}"#), None);
        assert_eq!(
            c.control(r#"{"type":"Flushed","sequence_id":0}"#),
            Some(TtsEvent::Done { id: 4 })
        );
        c.queue.push_back(Pending {
            id: 5,
            flushed: false,
        });
        c.clearing = 1;
        assert_eq!(c.audio(&[1, 0]), None);
        assert_eq!(c.control(r#"{"type":"Cleared","sequence_id":1}"#), None);
        assert_eq!(
            c.audio(&[2, 0]),
            Some(TtsEvent::Audio {
                id: 5,
                samples: vec![2]
            })
        );
    }
}
