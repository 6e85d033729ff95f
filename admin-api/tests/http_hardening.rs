//! The API as a public endpoint meets it: over real TCP, through `serve`, against clients that
//! trickle, oversize, guess keys and invent methods. Each case ends in a clear refusal while the
//! server keeps serving everyone else.

use callfleet_admin_api::{serve, ApiConfig, ApiContext};
use callfleet_core::secret::Secret;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ADMIN: &str = "admin-hardening-key";

/// Guards against a hang only; no test asserts how long anything took.
const HANG: Duration = Duration::from_secs(30);

struct Server {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _db: callfleet_store::testing::TestDb,
}

async fn server(config: ApiConfig) -> Server {
    let db = callfleet_store::testing::sqlite().await;
    let config = ApiConfig {
        admin_key: Secret::new(ADMIN),
        ..config
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ctx = ApiContext::new(config, db.store.clone());
    tokio::spawn(serve(listener, ctx, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        _stop: stop,
        _db: db,
    }
}

/// Everything the server sends until it closes the connection.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(HANG, stream.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

async fn healthy(addr: SocketAddr) {
    let reply = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert!(
        reply.status().is_success(),
        "the server still serves others"
    );
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_cut_off() {
    let s = server(ApiConfig {
        header_read_timeout: Duration::from_millis(300),
        ..ApiConfig::default()
    })
    .await;
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
        .await
        .unwrap();
    let reply = read_to_close(&mut slow).await;
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "no answer but a timeout: {reply:?}"
    );
    healthy(s.addr).await;
}

#[tokio::test]
async fn a_client_that_trickles_its_body_gets_an_error_not_a_held_connection() {
    let s = server(ApiConfig {
        body_read_timeout: Duration::from_millis(300),
        ..ApiConfig::default()
    })
    .await;
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /companies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\": \"Slo"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(HANG, slow.read(&mut buf))
        .await
        .expect("the server answers")
        .unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]);
    let status: u16 = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        (400..500).contains(&status),
        "a client error for an unfinished body: {reply:?}"
    );
    healthy(s.addr).await;
}

#[tokio::test]
async fn an_oversized_request_head_is_refused_before_it_is_buffered() {
    let s = server(ApiConfig {
        max_header_bytes: 16 << 10,
        ..ApiConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let huge = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\n\r\n",
        "a".repeat(100 << 10)
    );
    // The server may close while the rest is still being written.
    let _ = stream.write_all(huge.as_bytes()).await;
    let reply = read_to_close(&mut stream).await;
    assert!(
        reply.starts_with("HTTP/1.1 431"),
        "431 Request Header Fields Too Large: {:?}",
        reply.lines().next()
    );
    healthy(s.addr).await;
}

async fn get_from(source: IpAddr, addr: SocketAddr, key: &str) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .local_address(source)
        .build()
        .unwrap();
    client
        .get(format!("http://{addr}/companies"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn guessing_keys_is_limited_per_source_address() {
    let s = server(ApiConfig {
        auth_failures_per_min: 3,
        ..ApiConfig::default()
    })
    .await;
    let guesser: IpAddr = "127.0.0.1".parse().unwrap();
    for i in 0..3 {
        let reply = get_from(guesser, s.addr, &format!("guess-{i}")).await;
        assert_eq!(reply.status(), 401, "guess {i}");
    }
    let limited = get_from(guesser, s.addr, "guess-4").await;
    assert_eq!(limited.status(), 429, "the fourth guess in a minute");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=60).contains(&retry_after),
        "one failure back every 20 s: {retry_after}"
    );
    // Once spent, the address is refused before any key is looked up, even a right one.
    assert_eq!(get_from(guesser, s.addr, ADMIN).await.status(), 429);
    // Another address is not affected.
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(get_from(other, s.addr, "guess-5").await.status(), 401);
    assert_eq!(get_from(other, s.addr, ADMIN).await.status(), 200);
}

#[tokio::test]
async fn invented_methods_are_refused_and_share_one_metrics_label() {
    let s = server(ApiConfig::default()).await;
    let client = reqwest::Client::new();
    for method in ["FOO", "BAR", "PROPFIND", "X-1"] {
        let reply = client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("http://{}/companies", s.addr),
            )
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 405, "{method}");
    }
    let metrics = client
        .get(format!("http://{}/metrics", s.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("method=\"OTHER\""),
        "invented methods are counted as OTHER"
    );
    for method in ["FOO", "BAR", "PROPFIND", "X-1"] {
        assert!(
            !metrics.contains(&format!("method=\"{method}\"")),
            "{method} became a label"
        );
    }
}
