//! Opening provider WebSockets with auth headers, and telling a refused key from a network fault.

use std::sync::atomic::{AtomicU32, Ordering};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Error as WsLibError;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Provider WebSockets open in this process right now (every call holds its STT and TTS ones).
static OPEN: AtomicU32 = AtomicU32::new(0);

/// How many provider connections this process holds open; workers report it in heartbeats.
pub fn open_connections() -> u32 {
    OPEN.load(Ordering::Relaxed)
}

/// A provider WebSocket, counted in [`open_connections`] while it exists.
pub(crate) struct Ws(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl Ws {
    fn new(inner: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Ws {
        OPEN.fetch_add(1, Ordering::Relaxed);
        Ws(inner)
    }
}

impl Drop for Ws {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::ops::Deref for Ws {
    type Target = WebSocketStream<MaybeTlsStream<TcpStream>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Ws {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
pub(crate) use tokio_tungstenite::tungstenite::Message;

#[derive(Debug)]
pub(crate) enum WsOpenError {
    /// 401/403: retrying cannot help.
    Auth,
    Other(String),
}

/// Connects to `url` sending `headers`; header values are never logged.
pub(crate) async fn open(url: &str, headers: &[(&'static str, String)]) -> Result<Ws, WsOpenError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| WsOpenError::Other(format!("bad url: {e}")))?;
    for (name, value) in headers {
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| WsOpenError::Other(format!("bad {name} header")))?;
        value.set_sensitive(true);
        request.headers_mut().insert(*name, value);
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(Ws::new(ws)),
        Err(WsLibError::Http(resp)) if matches!(resp.status().as_u16(), 401 | 403) => {
            Err(WsOpenError::Auth)
        }
        Err(WsLibError::Http(resp)) => Err(WsOpenError::Other(format!("HTTP {}", resp.status()))),
        Err(e) => Err(WsOpenError::Other(e.to_string())),
    }
}

/// `http(s)://` base URLs are accepted for WebSocket services too, as users paste them.
pub(crate) fn ws_base(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    }
}

/// Percent-encodes a query value (voice ids, language codes, model names).
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl WsOpenError {
    pub(crate) fn into_stt(self, provider: &str) -> crate::SttError {
        match self {
            WsOpenError::Auth => crate::SttError::Auth {
                provider: provider.into(),
            },
            WsOpenError::Other(message) => crate::SttError::Connect {
                provider: provider.into(),
                message,
            },
        }
    }

    pub(crate) fn into_tts(self, provider: &str) -> crate::TtsError {
        match self {
            WsOpenError::Auth => crate::TtsError::Auth {
                provider: provider.into(),
            },
            WsOpenError::Other(message) => crate::TtsError::Connect {
                provider: provider.into(),
                message,
            },
        }
    }
}

/// After a TTS connection dropped: fails the utterances it was speaking (the pipeline decides
/// whether to say them elsewhere) and opens a new one. `None` when the session should end.
pub(crate) async fn reopen_tts(
    provider: &str,
    reason: &str,
    lost: impl IntoIterator<Item = crate::UtteranceId>,
    url: &str,
    headers: &[(&'static str, String)],
    backoff: crate::Backoff,
    events: &tokio::sync::mpsc::Sender<Result<crate::TtsEvent, crate::TtsError>>,
) -> Option<Ws> {
    tracing::warn!(provider, reason, "TTS connection dropped; reconnecting.");
    for id in lost {
        let error = crate::TtsError::Connect {
            provider: provider.into(),
            message: reason.to_string(),
        };
        events
            .send(Ok(crate::TtsEvent::Failed { id, error }))
            .await
            .ok()?;
    }
    match open_with_retry(url, headers, backoff).await {
        Ok(ws) => Some(ws),
        Err(e) => {
            let _ = events.send(Err(e.into_tts(provider))).await;
            None
        }
    }
}

/// [`open`] with retries; a refused key is not retried.
pub(crate) async fn open_with_retry(
    url: &str,
    headers: &[(&'static str, String)],
    backoff: crate::Backoff,
) -> Result<Ws, WsOpenError> {
    backoff
        .retry(|| open(url, headers), |e| !matches!(e, WsOpenError::Auth))
        .await
}
