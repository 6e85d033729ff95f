//! OpenAI-compatible chat completions (OpenAI, Groq, vLLM, llama.cpp server) streamed as
//! server-sent events, with tool-call fragments accumulated by `index` until the choice
//! finishes; and `/embeddings`.

use crate::lines::{sse_data, LineBuffer};
use crate::types::*;
use crate::Backoff;
use callfleet_core::scenario::BoxFuture;
use callfleet_core::secret::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;

const NAME: &str = "openai";

#[derive(Debug, Clone)]
pub struct OpenAi {
    /// Up to and including `/v1`.
    base_url: String,
    key: Option<Secret>,
    model: String,
    http: reqwest::Client,
    backoff: Backoff,
}

impl OpenAi {
    pub fn new(base_url: impl AsRef<str>, key: Option<Secret>, model: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        OpenAi {
            base_url: base_url.as_ref().trim_end_matches('/').to_string(),
            key,
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
                        .map(|c| serde_json::json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments.to_string()}}))
                        .collect();
                }
                if let Some(call) = &m.tool_call {
                    v["tool_call_id"] = serde_json::Value::String(call.id.clone());
                }
                v
            })
            .collect();
        let mut body =
            serde_json::json!({"model": self.model, "messages": messages, "stream": true});
        if !r.tools.is_empty() {
            body["tools"] = r
                .tools
                .iter()
                .map(|t| serde_json::json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect();
        }
        if let Some(t) = r.temperature {
            body["temperature"] = serde_json::json!(t);
        }
        if let Some(n) = r.max_tokens {
            body["max_tokens"] = serde_json::json!(n);
        }
        body
    }

    async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, LlmError> {
        let url = format!("{}{path}", self.base_url);
        let message = |text: &str| {
            serde_json::from_str::<ErrorBody>(text)
                .ok()
                .map(|e| e.error.message)
        };
        crate::http::post_json(
            &self.http,
            &url,
            self.key.as_ref(),
            body,
            self.backoff,
            NAME,
            message,
        )
        .await
    }
}

impl LanguageModel for OpenAi {
    fn name(&self) -> &str {
        NAME
    }

    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<LlmStream, LlmError>> {
        Box::pin(async move {
            let body = self.chat_body(&request);
            let resp = self.post("/chat/completions", &body).await?;
            let (tx, rx) = mpsc::channel(256);
            let task = tokio::spawn(read_chat(resp, tx));
            Ok(LlmStream::new(NAME, rx, TaskGuard::new(task)))
        })
    }
}

type Events = mpsc::Sender<Result<LlmEvent, LlmError>>;

async fn read_chat(mut resp: reqwest::Response, events: Events) {
    let mut lines = LineBuffer::default();
    let mut acc = ChunkAccumulator::default();
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
            let Some(data) = sse_data(&line) else {
                continue;
            };
            match acc.data(data) {
                Ok(evs) => {
                    for ev in evs {
                        if events.send(Ok(ev)).await.is_err() {
                            return;
                        }
                    }
                    if acc.finished {
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
    let _ = events
        .send(Err(LlmError::Interrupted {
            provider: NAME.into(),
            message: "stream ended before [DONE]".into(),
        }))
        .await;
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// Tool calls arrive in fragments keyed by index: the id and name once, the arguments as
/// pieces of a JSON string. They are whole only when the choice finishes.
#[derive(Default)]
struct ChunkAccumulator {
    calls: BTreeMap<usize, (String, String, String)>,
    finish: Option<FinishReason>,
    finished: bool,
}

impl ChunkAccumulator {
    fn data(&mut self, data: &str) -> Result<Vec<LlmEvent>, LlmError> {
        if data.trim() == "[DONE]" {
            self.finished = true;
            let mut out = self.flush_calls();
            out.push(LlmEvent::Done(
                self.finish.take().unwrap_or(FinishReason::Stop),
            ));
            return Ok(out);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| LlmError::Provider {
            provider: NAME.into(),
            message: format!("bad chunk: {e}"),
        })?;
        if let Some(err) = chunk.error {
            return Err(LlmError::Provider {
                provider: NAME.into(),
                message: err.message,
            });
        }
        let mut out = Vec::new();
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                out.push(LlmEvent::Token(text));
            }
            for d in choice.delta.tool_calls {
                let entry = self.calls.entry(d.index).or_default();
                if let Some(id) = d.id {
                    entry.0 = id;
                }
                if let Some(f) = d.function {
                    if let Some(name) = f.name {
                        entry.1.push_str(&name);
                    }
                    if let Some(args) = f.arguments {
                        entry.2.push_str(&args);
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(FinishReason::parse(&reason));
                out.extend(self.flush_calls());
            }
        }
        Ok(out)
    }

    fn flush_calls(&mut self) -> Vec<LlmEvent> {
        std::mem::take(&mut self.calls)
            .into_iter()
            .map(|(index, (id, name, args))| {
                let arguments = if args.trim().is_empty() {
                    serde_json::json!({})
                } else {
                    // A model that emits broken JSON still gets its call through, as a string.
                    serde_json::from_str(&args).unwrap_or(serde_json::Value::String(args))
                };
                let id = if id.is_empty() {
                    format!("call_{index}")
                } else {
                    id
                };
                LlmEvent::ToolCall(ToolCall {
                    id,
                    name,
                    arguments,
                })
            })
            .collect()
    }
}

/// `/v1/embeddings` of an OpenAI-compatible server.
#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    inner: OpenAi,
}

impl OpenAiEmbedder {
    pub fn new(base_url: impl AsRef<str>, key: Option<Secret>, model: impl Into<String>) -> Self {
        OpenAiEmbedder {
            inner: OpenAi::new(base_url, key, model),
        }
    }
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: usize,
    embedding: Vec<f32>,
}

impl Embedder for OpenAiEmbedder {
    fn name(&self) -> &str {
        NAME
    }

    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let body = serde_json::json!({"model": self.inner.model, "input": texts});
            let resp = self
                .inner
                .post("/embeddings", &body)
                .await
                .map_err(|e| EmbedError::from_request(NAME, e))?;
            let mut parsed: EmbeddingsResponse =
                resp.json().await.map_err(|e| EmbedError::Protocol {
                    provider: NAME.into(),
                    message: e.to_string(),
                })?;
            if parsed.data.len() != texts.len() {
                return Err(EmbedError::Protocol {
                    provider: NAME.into(),
                    message: "wrong number of vectors".into(),
                });
            }
            parsed.data.sort_by_key(|d| d.index);
            Ok(parsed.data.into_iter().map(|d| d.embedding).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_call_fragments_accumulate_by_index() {
        let mut acc = ChunkAccumulator::default();
        let chunks = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Sure"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"book","arguments":""}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"note","arguments":"{\"t\":"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"day\":"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"mon\"}"}},{"index":1,"function":{"arguments":"1}"}}]},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            "[DONE]",
        ];
        let got: Vec<LlmEvent> = chunks.iter().flat_map(|c| acc.data(c).unwrap()).collect();
        assert_eq!(
            got,
            vec![
                LlmEvent::Token("Sure".into()),
                LlmEvent::ToolCall(ToolCall {
                    id: "call_a".into(),
                    name: "book".into(),
                    arguments: serde_json::json!({"day":"mon"})
                }),
                LlmEvent::ToolCall(ToolCall {
                    id: "call_b".into(),
                    name: "note".into(),
                    arguments: serde_json::json!({"t":1})
                }),
                LlmEvent::Done(FinishReason::ToolCalls),
            ]
        );
    }

    #[test]
    fn errors_inside_the_stream() {
        let mut acc = ChunkAccumulator::default();
        let err = acc
            .data(r#"{"error":{"message":"overloaded","type":"server_error","code":null}}"#)
            .unwrap_err();
        assert_eq!(
            err,
            LlmError::Provider {
                provider: NAME.into(),
                message: "overloaded".into()
            }
        );
    }
}
