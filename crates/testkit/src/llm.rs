//! Fake chat servers: Ollama (`/api/chat` NDJSON, `/api/embed`) and OpenAI-compatible
//! (`/v1/chat/completions` SSE with tool-call fragments, `/v1/embeddings`, Bearer key required).
//! Replies are scripted token by token with delays, or echo the caller when nothing is queued.

use crate::server::AbortOnDrop;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How a scripted reply goes wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmFailure {
    /// Refuse the request with this HTTP status and message.
    Status(u16, String),
    /// After this many tokens, an error inside the 200 stream.
    ErrorAfter(usize, String),
    /// After this many tokens, the connection is cut.
    DisconnectAfter(usize),
}

/// One scripted reply.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmReply {
    pub tokens: Vec<String>,
    /// (name, arguments) of tool calls sent after the tokens.
    pub tool_calls: Vec<(String, serde_json::Value)>,
    pub first_token_delay: Duration,
    pub token_interval: Duration,
    pub failure: Option<LlmFailure>,
}

impl LlmReply {
    /// `text` cut into word tokens, each but the first with its leading space, as models stream.
    pub fn text(text: &str) -> Self {
        let mut tokens = Vec::new();
        for (i, w) in text.split(' ').enumerate() {
            tokens.push(if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            });
        }
        LlmReply {
            tokens,
            tool_calls: Vec::new(),
            first_token_delay: Duration::ZERO,
            token_interval: Duration::ZERO,
            failure: None,
        }
    }

    pub fn delays(mut self, first_token: Duration, between: Duration) -> Self {
        self.first_token_delay = first_token;
        self.token_interval = between;
        self
    }

    pub fn failing(mut self, failure: LlmFailure) -> Self {
        self.failure = Some(failure);
        self
    }

    pub fn tool_call(mut self, name: &str, arguments: serde_json::Value) -> Self {
        self.tool_calls.push((name.to_string(), arguments));
        self
    }
}

#[derive(Default)]
struct LlmState {
    queue: Mutex<VecDeque<LlmReply>>,
    /// Delays applied to echo replies.
    echo_delays: Mutex<(Duration, Duration)>,
    requests: Mutex<Vec<serde_json::Value>>,
    key: Option<String>,
    /// Standing replies: a request whose messages hold every needle gets the reply (again and
    /// again), after the queue and before echoing.
    rules: Mutex<Vec<(Vec<String>, LlmReply)>>,
}

impl LlmReply {
    /// At most `limit` tokens, as a server given a token cap sends; whether it cut any.
    fn capped(mut self, limit: Option<u64>) -> (Self, bool) {
        let cut = limit.is_some_and(|n| (n as usize) < self.tokens.len());
        if let (true, Some(n)) = (cut, limit) {
            self.tokens.truncate(n as usize);
        }
        (self, cut)
    }
}

impl LlmState {
    fn next_reply(&self, body: &serde_json::Value) -> LlmReply {
        if let Some(r) = self.queue.lock().expect("fake state lock").pop_front() {
            return r;
        }
        let said: String = body["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["content"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        let rules = self.rules.lock().expect("fake state lock");
        if let Some((_, reply)) = rules
            .iter()
            .find(|(needles, _)| needles.iter().all(|n| said.contains(n.as_str())))
        {
            return reply.clone();
        }
        drop(rules);
        let last_user = body["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .to_string();
        let (first, between) = *self.echo_delays.lock().expect("fake state lock");
        LlmReply::text(&format!("You said: {last_user}.")).delays(first, between)
    }
}

/// Deterministic unit vectors from text, so equal texts embed equally.
pub fn fake_embedding(text: &str) -> Vec<f32> {
    let mut v = [0f32; 8];
    for (i, b) in text.bytes().enumerate() {
        v[(b as usize + i) % 8] += 1.0 + (b % 7) as f32;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter().map(|x| x / norm).collect()
}

fn inputs(body: &serde_json::Value) -> Vec<String> {
    match &body["input"] {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// A streamed body fed by a channel; an `Err` item cuts the connection.
fn channel_body() -> (mpsc::UnboundedSender<Result<Bytes, std::io::Error>>, Body) {
    let (tx, rx) = mpsc::unbounded_channel::<Result<Bytes, std::io::Error>>();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, Body::from_stream(stream))
}

/// Plays a reply: `token(i, text)` and `calls()` frame the pieces; returns early on failures.
async fn play(
    reply: LlmReply,
    tx: mpsc::UnboundedSender<Result<Bytes, std::io::Error>>,
    token: impl Fn(&str) -> String,
    error: impl Fn(&str) -> String,
    calls: impl Fn(&[(String, serde_json::Value)]) -> Vec<String>,
    done: impl Fn(bool) -> Vec<String>,
) {
    if !reply.first_token_delay.is_zero() {
        tokio::time::sleep(reply.first_token_delay).await;
    }
    for (i, t) in reply.tokens.iter().enumerate() {
        match &reply.failure {
            Some(LlmFailure::ErrorAfter(n, message)) if *n == i => {
                let _ = tx.send(Ok(Bytes::from(error(message))));
                return;
            }
            Some(LlmFailure::DisconnectAfter(n)) if *n == i => {
                // Let what was sent reach the client before the cut, as on a real network.
                tokio::time::sleep(Duration::from_millis(30)).await;
                let _ = tx.send(Err(std::io::Error::other("fake disconnect")));
                return;
            }
            _ => {}
        }
        if i > 0 && !reply.token_interval.is_zero() {
            tokio::time::sleep(reply.token_interval).await;
        }
        if tx.send(Ok(Bytes::from(token(t)))).is_err() {
            return;
        }
    }
    for piece in calls(&reply.tool_calls) {
        let _ = tx.send(Ok(Bytes::from(piece)));
    }
    for piece in done(!reply.tool_calls.is_empty()) {
        let _ = tx.send(Ok(Bytes::from(piece)));
    }
}

async fn serve(router: Router) -> (SocketAddr, AbortOnDrop) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a loopback port");
    let addr = listener
        .local_addr()
        .expect("a bound socket has an address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, AbortOnDrop(task))
}

macro_rules! llm_fake_api {
    ($ty:ident) => {
        impl $ty {
            /// Queues replies, served in order before falling back to echoing.
            pub fn push_reply(&self, reply: LlmReply) {
                self.state
                    .queue
                    .lock()
                    .expect("fake state lock")
                    .push_back(reply);
            }
            /// A standing reply to every request whose messages hold all of `needles`
            /// (rules are tried in the order added, after the queue).
            pub fn reply_when(&self, needles: &[&str], reply: LlmReply) {
                self.state
                    .rules
                    .lock()
                    .expect("fake state lock")
                    .push((needles.iter().map(|n| n.to_string()).collect(), reply));
            }
            pub fn set_echo_delays(&self, first_token: Duration, between: Duration) {
                *self.state.echo_delays.lock().expect("fake state lock") = (first_token, between);
            }
            /// Every request body received.
            pub fn requests(&self) -> Vec<serde_json::Value> {
                self.state.requests.lock().expect("fake state lock").clone()
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------

pub struct FakeOllama {
    addr: SocketAddr,
    state: Arc<LlmState>,
    _server: AbortOnDrop,
}

llm_fake_api!(FakeOllama);

impl FakeOllama {
    pub async fn start() -> Self {
        let state = Arc::new(LlmState::default());
        let router = Router::new()
            .route("/api/chat", post(ollama_chat))
            .route("/api/embed", post(ollama_embed))
            .with_state(state.clone());
        let (addr, server) = serve(router).await;
        FakeOllama {
            addr,
            state,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn ollama_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({"error": message}))).into_response()
}

async fn ollama_chat(State(state): State<Arc<LlmState>>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return ollama_error(StatusCode::BAD_REQUEST, "invalid JSON");
    };
    state
        .requests
        .lock()
        .expect("fake state lock")
        .push(body.clone());
    let Some(model) = body["model"].as_str() else {
        return ollama_error(StatusCode::BAD_REQUEST, "model is required");
    };
    if model == "missing" {
        return ollama_error(
            StatusCode::NOT_FOUND,
            &format!("model \"{model}\" not found, try pulling it first"),
        );
    }
    let Some(messages) = body["messages"].as_array() else {
        return ollama_error(StatusCode::BAD_REQUEST, "messages is required");
    };
    let model = model.to_string();
    if messages.is_empty() {
        // Loading the model, as a warm-up request does.
        return Json(serde_json::json!({"model": model, "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": ""}, "done_reason": "load", "done": true})).into_response();
    }
    let (reply, cut) = state
        .next_reply(&body)
        .capped(body["options"]["num_predict"].as_u64());
    let done_reason = if cut { "length" } else { "stop" };
    if let Some(LlmFailure::Status(code, message)) = &reply.failure {
        return ollama_error(
            StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message,
        );
    }
    let (tx, stream) = channel_body();
    let m = model.clone();
    tokio::spawn(play(
        reply,
        tx,
        move |t| {
            format!(
                "{}\n",
                serde_json::json!({"model": m, "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": t}, "done": false})
            )
        },
        |e| format!("{}\n", serde_json::json!({"error": e})),
        {
            let m = model.clone();
            move |calls| {
                if calls.is_empty() {
                    return Vec::new();
                }
                let calls: Vec<_> = calls
                    .iter()
                    .map(|(n, a)| serde_json::json!({"function": {"name": n, "arguments": a}}))
                    .collect();
                vec![format!(
                    "{}\n",
                    serde_json::json!({"model": m, "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": false})
                )]
            }
        },
        move |_| {
            vec![format!(
                "{}\n",
                serde_json::json!({"model": model, "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": done_reason, "total_duration": 1, "eval_count": 1, "eval_duration": 1})
            )]
        },
    ));
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(stream)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn ollama_embed(
    State(state): State<Arc<LlmState>>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    state
        .requests
        .lock()
        .expect("fake state lock")
        .push(body.clone());
    if !body["model"].is_string() {
        return ollama_error(StatusCode::BAD_REQUEST, "model is required");
    }
    let embeddings: Vec<Vec<f32>> = inputs(&body).iter().map(|t| fake_embedding(t)).collect();
    Json(serde_json::json!({"model": body["model"], "embeddings": embeddings})).into_response()
}

// ---------------------------------------------------------------------------------------------

pub struct FakeOpenAi {
    addr: SocketAddr,
    state: Arc<LlmState>,
    _server: AbortOnDrop,
}

llm_fake_api!(FakeOpenAi);

impl FakeOpenAi {
    pub async fn start() -> Self {
        let state = Arc::new(LlmState {
            key: Some(crate::TEST_KEY.into()),
            ..LlmState::default()
        });
        let router = Router::new()
            .route("/v1/chat/completions", post(openai_chat))
            .route("/v1/embeddings", post(openai_embed))
            .with_state(state.clone());
        let (addr, server) = serve(router).await;
        FakeOpenAi {
            addr,
            state,
            _server: server,
        }
    }

    /// Up to and including `/v1`, as clients are configured.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

fn openai_error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"message": message, "type": kind, "code": code}})),
    )
        .into_response()
}

fn authorized(state: &LlmState, headers: &HeaderMap) -> bool {
    let Some(key) = &state.key else { return true };
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {key}").as_str())
}

fn sse(v: serde_json::Value) -> String {
    format!("data: {v}\n\n")
}

async fn openai_chat(
    State(state): State<Arc<LlmState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&state, &headers) {
        return openai_error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_request_error",
            "invalid_api_key",
        );
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request.",
            "invalid_request_error",
            "invalid_json",
        );
    };
    state
        .requests
        .lock()
        .expect("fake state lock")
        .push(body.clone());
    if !body["model"].is_string() || !body["messages"].is_array() {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "model and messages are required",
            "invalid_request_error",
            "missing_required_parameter",
        );
    }
    if body["stream"] != true {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "this fake only streams",
            "invalid_request_error",
            "unsupported",
        );
    }
    let (reply, cut) = state.next_reply(&body).capped(body["max_tokens"].as_u64());
    if let Some(LlmFailure::Status(code, message)) = &reply.failure {
        return openai_error(
            StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message,
            "server_error",
            "error",
        );
    }
    let (tx, stream) = channel_body();
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        sse(
            serde_json::json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let _ = tx.send(Ok(Bytes::from(chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        serde_json::Value::Null,
    ))));
    tokio::spawn(play(
        reply,
        tx,
        move |t| chunk(serde_json::json!({"content": t}), serde_json::Value::Null),
        |e| sse(serde_json::json!({"error": {"message": e, "type": "server_error", "code": null}})),
        move |calls| {
            // Real servers split the arguments string across chunks; so does this one.
            let mut out = Vec::new();
            for (i, (name, args)) in calls.iter().enumerate() {
                out.push(chunk(
                    serde_json::json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    serde_json::Value::Null,
                ));
                let text = args.to_string();
                let chars: Vec<char> = text.chars().collect();
                for piece in chars.chunks(chars.len().div_ceil(3).max(1)) {
                    let piece: String = piece.iter().collect();
                    out.push(chunk(serde_json::json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}), serde_json::Value::Null));
                }
            }
            out
        },
        move |tools| {
            let reason = if tools {
                "tool_calls"
            } else if cut {
                "length"
            } else {
                "stop"
            };
            vec![
                chunk(serde_json::json!({}), serde_json::json!(reason)),
                "data: [DONE]\n\n".to_string(),
            ]
        },
    ));
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(stream)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn openai_embed(
    State(state): State<Arc<LlmState>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    if !authorized(&state, &headers) {
        return openai_error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_request_error",
            "invalid_api_key",
        );
    }
    state
        .requests
        .lock()
        .expect("fake state lock")
        .push(body.clone());
    let data: Vec<_> = inputs(&body)
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"object": "embedding", "index": i, "embedding": fake_embedding(t)}))
        .collect();
    Json(serde_json::json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}})).into_response()
}
