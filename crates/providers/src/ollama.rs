//! Ollama over HTTP: `/api/chat` streamed as NDJSON (tokens, tool calls with object arguments,
//! a final `done` line, or an `error` line even after status 200) and `/api/embed`.

use crate::lines::LineBuffer;
use crate::types::*;
use crate::Backoff;
use callfleet_core::scenario::BoxFuture;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::mpsc;

const NAME: &str = "ollama";

#[derive(Debug, Clone)]
pub struct Ollama {
    base_url: String,
    model: String,
    http: reqwest::Client,
    backoff: Backoff,
}

impl Ollama {
    pub fn new(base_url: impl AsRef<str>, model: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Ollama {
            base_url: base_url.as_ref().trim_end_matches('/').to_string(),
            model: model.into(),
            http,
            backoff: Backoff::default(),
        }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    fn chat_body(&self, r: &ChatRequest) -> serde_json::Value {
        let messages: Vec<serde_json::Value> = r
            .messages
            .iter()
            .map(|m| {
                let mut v = serde_json::json!({"role": m.role.as_str(), "content": m.content});
                if !m.tool_calls.is_empty() {
                    v["tool_calls"] = m
                        .tool_calls
                        .iter()
                        .map(|c| serde_json::json!({"function": {"name": c.name, "arguments": c.arguments}}))
                        .collect();
                }
                if let Some(call) = &m.tool_call {
                    v["tool_name"] = serde_json::Value::String(call.name.clone());
                }
                v
            })
            .collect();
        let mut body = serde_json::json!({"model": self.model, "messages": messages, "stream": true, "keep_alive": "5m"});
        if !r.tools.is_empty() {
            body["tools"] = r
                .tools
                .iter()
                .map(|t| serde_json::json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect();
        }
        let mut options = serde_json::Map::new();
        if let Some(t) = r.temperature {
            options.insert("temperature".into(), serde_json::json!(t));
        }
        if let Some(n) = r.max_tokens {
            options.insert("num_predict".into(), serde_json::json!(n));
        }
        if !options.is_empty() {
            body["options"] = serde_json::Value::Object(options);
        }
        body
    }

    async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, LlmError> {
        let url = format!("{}{path}", self.base_url);
        crate::http::post_json(&self.http, &url, None, body, self.backoff, NAME, |text| {
            serde_json::from_str::<ErrorBody>(text)
                .ok()
                .map(|e| e.error)
        })
        .await
    }
}

impl LanguageModel for Ollama {
    fn name(&self) -> &str {
        NAME
    }

    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<LlmStream, LlmError>> {
        Box::pin(async move {
            let body = self.chat_body(&request);
            let resp = self.post("/api/chat", &body).await?;
            let (tx, rx) = mpsc::channel(256);
            let task = tokio::spawn(read_chat(resp, tx));
            Ok(LlmStream::new(NAME, rx, TaskGuard::new(task)))
        })
    }

    fn warm_up(&self) -> BoxFuture<'_, ()> {
        // An empty conversation makes Ollama load the model and keep it resident.
        Box::pin(async move {
            let body = serde_json::json!({"model": self.model, "messages": [], "keep_alive": "5m"});
            if let Err(e) = self
                .http
                .post(format!("{}/api/chat", self.base_url))
                .json(&body)
                .send()
                .await
            {
                tracing::debug!(provider = NAME, error = %e, "Warm-up failed.");
            }
        })
    }
}

type Events = mpsc::Sender<Result<LlmEvent, LlmError>>;

async fn read_chat(mut resp: reqwest::Response, events: Events) {
    let mut lines = LineBuffer::default();
    let mut calls = 0usize;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                let _ = events
                    .send(Err(LlmError::Interrupted {
                        provider: NAME.into(),
                        message: e.to_string(),
                    }))
                    .await;
                return;
            }
        };
        for line in lines.push(&chunk) {
            match parse_line(&line, &mut calls) {
                Ok((evs, done)) => {
                    for ev in evs {
                        if events.send(Ok(ev)).await.is_err() {
                            return;
                        }
                    }
                    if done {
                        return;
                    }
                }
                Err(e) => {
                    let _ = events.send(Err(e)).await;
                    return;
                }
            }
        }
    }
    if let Some(line) = lines.finish() {
        if let Ok((evs, true)) = parse_line(&line, &mut calls) {
            for ev in evs {
                let _ = events.send(Ok(ev)).await;
            }
            return;
        }
    }
    let _ = events
        .send(Err(LlmError::Interrupted {
            provider: NAME.into(),
            message: "stream ended before done".into(),
        }))
        .await;
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

#[derive(Deserialize)]
struct ChatLine {
    #[serde(default)]
    message: Option<LineMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct LineMessage {
    #[serde(default)]
    content: String,
    #[serde(default)]
    tool_calls: Vec<LineToolCall>,
}

#[derive(Deserialize)]
struct LineToolCall {
    function: LineFunction,
}

#[derive(Deserialize)]
struct LineFunction {
    name: String,
    #[serde(default)]
    arguments: serde_json::Value,
}

/// Events of one NDJSON line, and whether it was the last.
fn parse_line(line: &str, calls: &mut usize) -> Result<(Vec<LlmEvent>, bool), LlmError> {
    if line.trim().is_empty() {
        return Ok((Vec::new(), false));
    }
    let l: ChatLine = serde_json::from_str(line).map_err(|e| LlmError::Provider {
        provider: NAME.into(),
        message: format!("bad line: {e}"),
    })?;
    if let Some(message) = l.error {
        return Err(LlmError::Provider {
            provider: NAME.into(),
            message,
        });
    }
    let mut out = Vec::new();
    if let Some(m) = l.message {
        if !m.content.is_empty() {
            out.push(LlmEvent::Token(m.content));
        }
        for c in m.tool_calls {
            *calls += 1;
            out.push(LlmEvent::ToolCall(ToolCall {
                id: format!("call_{calls}"),
                name: c.function.name,
                arguments: c.function.arguments,
            }));
        }
    }
    if l.done {
        let reason = match l.done_reason.as_deref() {
            _ if *calls > 0 => FinishReason::ToolCalls,
            Some(r) => FinishReason::parse(r),
            None => FinishReason::Stop,
        };
        out.push(LlmEvent::Done(reason));
    }
    Ok((out, l.done))
}

/// Ollama's embeddings (`/api/embed`).
#[derive(Debug, Clone)]
pub struct OllamaEmbedder {
    inner: Ollama,
}

impl OllamaEmbedder {
    pub fn new(base_url: impl AsRef<str>, model: impl Into<String>) -> Self {
        OllamaEmbedder {
            inner: Ollama::new(base_url, model),
        }
    }
}

#[derive(Deserialize)]
struct EmbedResponse {
    embeddings: Vec<Vec<f32>>,
}

impl Embedder for OllamaEmbedder {
    fn name(&self) -> &str {
        NAME
    }

    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let body = serde_json::json!({"model": self.inner.model, "input": texts});
            let resp = self
                .inner
                .post("/api/embed", &body)
                .await
                .map_err(|e| EmbedError::from_request(NAME, e))?;
            let parsed: EmbedResponse = resp.json().await.map_err(|e| EmbedError::Protocol {
                provider: NAME.into(),
                message: e.to_string(),
            })?;
            if parsed.embeddings.len() != texts.len() {
                return Err(EmbedError::Protocol {
                    provider: NAME.into(),
                    message: "wrong number of vectors".into(),
                });
            }
            Ok(parsed.embeddings)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lines() {
        let mut calls = 0;
        type Want = Result<(Vec<LlmEvent>, bool), ()>;
        let cases: Vec<(&str, Want)> = vec![
            (
                r#"{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false}"#,
                Ok((vec![LlmEvent::Token("Hi".into())], false)),
            ),
            ("", Ok((vec![], false))),
            (
                r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"book","arguments":{"day":"mon"}}}]},"done":false}"#,
                Ok((
                    vec![LlmEvent::ToolCall(ToolCall {
                        id: "call_1".into(),
                        name: "book".into(),
                        arguments: serde_json::json!({"day":"mon"}),
                    })],
                    false,
                )),
            ),
            (
                r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":3}"#,
                Ok((vec![LlmEvent::Done(FinishReason::ToolCalls)], true)),
            ),
            (r#"{"error":"model not found"}"#, Err(())),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line, &mut calls).map_err(|_| ()), want, "{line}");
        }
    }

    #[test]
    fn tool_results_name_their_tool() {
        let o = Ollama::new("http://x", "m");
        let call = ToolCall {
            id: "c".into(),
            name: "book".into(),
            arguments: serde_json::json!({}),
        };
        let body = o.chat_body(&ChatRequest {
            messages: vec![ChatMessage::tool_result(&call, "ok")],
            max_tokens: Some(5),
            ..Default::default()
        });
        assert_eq!(
            body["messages"][0],
            serde_json::json!({"role":"tool","content":"ok","tool_name":"book"})
        );
        assert_eq!(body["options"]["num_predict"], 5);
        assert_eq!(body["stream"], true);
    }
}
