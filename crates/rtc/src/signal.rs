//! The signalling WebSocket: binary protobuf `SignalRequest` out, `SignalResponse` in.

use futures::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::error::RoomError;
use crate::secret::Token;

/// Protocol 16: everything an audio participant needs, without packet trailers or
/// negotiated data channels.
pub(crate) const PROTOCOL_VERSION: u32 = 16;

pub(crate) enum SignalInput {
    Response(Box<proto::SignalResponse>),
    Closed(String),
}

/// One signalling connection. Reader and writer run as tasks; dropping this closes both.
pub(crate) struct SignalConn {
    pub(crate) tx: mpsc::UnboundedSender<proto::SignalRequest>,
    pub(crate) rx: mpsc::Receiver<SignalInput>,
    close: mpsc::UnboundedSender<()>,
}

impl SignalConn {
    pub(crate) fn send(&self, msg: proto::signal_request::Message) -> bool {
        self.tx
            .send(proto::SignalRequest { message: Some(msg) })
            .is_ok()
    }

    pub(crate) fn close(&self) {
        let _ = self.close.send(());
    }
}

/// `ws://host:port` → `ws://host:port/rtc?...`. `reconnect_sid` asks the server to resume.
pub(crate) fn rtc_url(
    base: &str,
    auto_subscribe: bool,
    reconnect_sid: Option<&str>,
) -> Result<url::Url, RoomError> {
    let mut url = url::Url::parse(base).map_err(|e| RoomError::InvalidUrl(e.to_string()))?;
    match url.scheme() {
        "ws" | "wss" => {}
        "http" => url
            .set_scheme("ws")
            .map_err(|()| RoomError::InvalidUrl("scheme".into()))?,
        "https" => url
            .set_scheme("wss")
            .map_err(|()| RoomError::InvalidUrl("scheme".into()))?,
        other => return Err(RoomError::InvalidUrl(format!("unsupported scheme {other}"))),
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{path}/rtc"));
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("protocol", &PROTOCOL_VERSION.to_string());
        q.append_pair("auto_subscribe", if auto_subscribe { "1" } else { "0" });
        q.append_pair("sdk", "rust");
        q.append_pair("version", env!("CARGO_PKG_VERSION"));
        q.append_pair("adaptive_stream", "0");
        if let Some(sid) = reconnect_sid {
            q.append_pair("reconnect", "1");
            q.append_pair("sid", sid);
        }
    }
    Ok(url)
}

/// TLS for `wss://` with the Mozilla root set and aws-lc-rs, built per call so that no
/// process-wide crypto provider has to be chosen for the rest of the program.
pub(crate) fn tls_connector() -> Result<tokio_tungstenite::Connector, RoomError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| RoomError::Signal(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(
        config,
    )))
}

/// Open the socket. The token travels in the `Authorization` header, never in the URL, so
/// that URLs can be logged.
pub(crate) async fn connect(url: &url::Url, token: &Token) -> Result<SignalConn, RoomError> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| RoomError::InvalidUrl(e.to_string()))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| RoomError::InvalidToken)?;
    request.headers_mut().insert("Authorization", bearer);
    let connector = if url.scheme() == "wss" {
        Some(tls_connector()?)
    } else {
        None
    };
    let (ws, _response) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector)
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(resp) => {
                    let body = resp
                        .body()
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b).trim().to_string())
                        .unwrap_or_default();
                    RoomError::Rejected {
                        status: resp.status().as_u16(),
                        message: body,
                    }
                }
                other => RoomError::Signal(other.to_string()),
            })?;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut out_rx) = mpsc::unbounded_channel::<proto::SignalRequest>();
    let (in_tx, rx) = mpsc::channel::<SignalInput>(256);
    let (close, mut close_rx) = mpsc::unbounded_channel::<()>();

    tokio::spawn(async move {
        loop {
            tokio::select! {
                msg = out_rx.recv() => {
                    let Some(msg) = msg else { break };
                    if sink.send(Message::Binary(msg.encode_to_vec().into())).await.is_err() {
                        break;
                    }
                }
                _ = close_rx.recv() => {
                    // Flush what was queued before the close (e.g. a leave request).
                    while let Ok(msg) = out_rx.try_recv() {
                        let _ = sink.send(Message::Binary(msg.encode_to_vec().into())).await;
                    }
                    let _ = sink.close().await;
                    break;
                }
            }
        }
    });
    tokio::spawn(async move {
        let reason = loop {
            match stream.next().await {
                Some(Ok(Message::Binary(data))) => {
                    match proto::SignalResponse::decode(data.as_ref()) {
                        Ok(resp) => {
                            if in_tx
                                .send(SignalInput::Response(Box::new(resp)))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "Undecodable signal response."),
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    break frame
                        .map(|f| f.reason.to_string())
                        .unwrap_or_else(|| "closed".into())
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break e.to_string(),
                None => break "closed".into(),
            }
        };
        let _ = in_tx.send(SignalInput::Closed(reason)).await;
    });
    Ok(SignalConn { tx, rx, close })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtc_urls() {
        let check = |base: &str, reconnect: Option<&str>, expected: &str| {
            assert_eq!(
                rtc_url(base, true, reconnect)
                    .map(|u| u.to_string())
                    .ok()
                    .as_deref(),
                Some(expected),
                "{base}"
            );
        };
        check(
            "ws://127.0.0.1:7880",
            None,
            "ws://127.0.0.1:7880/rtc?protocol=16&auto_subscribe=1&sdk=rust&version=0.1.0&adaptive_stream=0",
        );
        check(
            "https://lk.example.com/base/",
            Some("PA_1"),
            "wss://lk.example.com/base/rtc?protocol=16&auto_subscribe=1&sdk=rust&version=0.1.0&adaptive_stream=0&reconnect=1&sid=PA_1",
        );
        check(
            "http://localhost:7880",
            None,
            "ws://localhost:7880/rtc?protocol=16&auto_subscribe=1&sdk=rust&version=0.1.0&adaptive_stream=0",
        );
        assert!(rtc_url("ftp://x", true, None).is_err());
        assert!(rtc_url("not a url", true, None).is_err());
    }

    #[tokio::test]
    async fn wss_speaks_tls() {
        // A listener that accepts and hangs up: the client must get as far as a TLS error.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        });
        let url = rtc_url(&format!("wss://127.0.0.1:{port}"), true, None).expect("url");
        let err = connect(&url, &Token::new("t")).await.err().expect("fails");
        let msg = err.to_string();
        assert!(!msg.contains("not compiled"), "{msg}");
        assert!(!msg.contains("t\""), "no token in errors: {msg}");
    }

    #[test]
    fn token_never_prints() {
        let t = Token::new("eyJhbGciOiJIUzI1NiJ9.secret.sig");
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }
}
