//! Accepting WebSocket clients the way the real services do: check the handshake's headers and
//! refuse with an HTTP status before upgrading.

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
pub(crate) use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Response};
pub(crate) use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::WebSocketStream;

pub(crate) type ServerWs = WebSocketStream<TcpStream>;

/// What a handshake carried.
#[derive(Debug, Clone, Default)]
pub(crate) struct Handshake {
    pub path: String,
    pub query: Vec<(String, String)>,
}

impl Handshake {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a loopback port");
    let addr = listener
        .local_addr()
        .expect("a bound socket has an address");
    (listener, addr)
}

/// Upgrades `tcp` if `authorize` accepts the request's headers; otherwise answers with its status.
pub(crate) async fn accept(
    tcp: TcpStream,
    authorize: impl FnOnce(&Request) -> Result<(), StatusCode> + Unpin,
) -> Option<(ServerWs, Handshake)> {
    let mut seen = Handshake::default();
    // The error type is tungstenite's own handshake response; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        seen.path = req.uri().path().to_string();
        seen.query = parse_query(req.uri().query().unwrap_or(""));
        match authorize(req) {
            Ok(()) => Ok(resp),
            Err(status) => {
                let mut r =
                    ErrorResponse::new(Some(format!("{{\"err_code\":\"{}\"}}", status.as_u16())));
                *r.status_mut() = status;
                Err(r)
            }
        }
    };
    let ws = tokio_tungstenite::accept_hdr_async(tcp, callback)
        .await
        .ok()?;
    Some((ws, seen))
}

pub(crate) fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// What a fake's connection loop sends next.
#[derive(Debug)]
pub(crate) enum Out {
    Text(String),
    Binary(Vec<u8>),
    /// A clean close frame.
    Close,
    /// Vanish without a close frame, as a crashed server or a cut cable does.
    Drop,
}

pub(crate) type OutTx = tokio::sync::mpsc::UnboundedSender<Out>;

/// Sends one queued message; `false` when the connection should end now.
pub(crate) async fn send_out(ws: &mut ServerWs, out: Out) -> bool {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    match out {
        Out::Text(t) => ws.send(Message::text(t)).await.is_ok(),
        Out::Binary(b) => ws.send(Message::binary(b)).await.is_ok(),
        Out::Close => {
            let _ = ws.close(None).await;
            false
        }
        Out::Drop => false,
    }
}

/// Stops a fake's accept loop when the fake is dropped, so each test cleans up after itself.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds a loopback port and hands every connection to `handler` with the fake's state.
pub(crate) async fn serve<S, F, Fut>(
    state: std::sync::Arc<S>,
    handler: F,
) -> (SocketAddr, AbortOnDrop)
where
    S: Send + Sync + 'static,
    F: Fn(TcpStream, std::sync::Arc<S>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (listener, addr) = bind().await;
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(handler(tcp, state.clone()));
        }
    });
    (addr, AbortOnDrop(task))
}
