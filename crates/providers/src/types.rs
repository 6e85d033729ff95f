//! Our own types for the four provider kinds. Sessions are channel pairs with the task that
//! drives the connection; dropping a session aborts that task, which is how a call cancels.

use callfleet_core::scenario::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Aborts the task it guards when dropped, so a forgotten session never leaks a connection.
#[derive(Debug)]
pub struct TaskGuard(Option<JoinHandle<()>>);

impl TaskGuard {
    pub fn new(handle: JoinHandle<()>) -> Self {
        TaskGuard(Some(handle))
    }

    pub fn none() -> Self {
        TaskGuard(None)
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Speech to text

/// How a streaming recognizer should listen.
#[derive(Debug, Clone, PartialEq)]
pub struct SttOptions {
    /// `ru`, `en`, `multi`; `None` lets the provider decide.
    pub language: Option<String>,
    /// Of the 16-bit mono PCM the session is fed.
    pub sample_rate: u32,
    /// Silence after which the recognizer marks a segment `speech_final`.
    pub endpointing_ms: u32,
    /// Gap in words after which the recognizer sends an utterance end.
    pub utterance_end_ms: u32,
    pub model: Option<String>,
}

impl Default for SttOptions {
    fn default() -> Self {
        SttOptions {
            language: None,
            sample_rate: 16_000,
            endpointing_ms: 300,
            utterance_end_ms: 1000,
            model: None,
        }
    }
}

/// Recognized text for a stretch of audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// This stretch's text is settled; a turn's text is the concatenation of final stretches.
    pub is_final: bool,
    /// The recognizer's endpointing heard a pause after this stretch.
    pub speech_final: bool,
    /// Sent in answer to [`SttSession::finalize`].
    pub from_finalize: bool,
    pub confidence: f32,
}

/// What a recognizer reports while it listens.
#[derive(Debug, Clone, PartialEq)]
pub enum SttEvent {
    SpeechStarted,
    Transcript(Transcript),
    /// No words for the configured gap: whatever was said is a complete utterance.
    UtteranceEnd,
    /// The connection dropped and was opened again; audio sent meanwhile was lost.
    Reconnected,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SttError {
    #[error("{provider}: connection failed: {message}")]
    Connect { provider: String, message: String },
    #[error("{provider}: the key was rejected")]
    Auth { provider: String },
    #[error("{provider}: {message}")]
    Protocol { provider: String, message: String },
    #[error("no speech-to-text provider left in the chain")]
    Exhausted,
    #[error("the session is closed")]
    Closed,
}

/// What the pipeline sends a recognizer.
#[derive(Debug, Clone, PartialEq)]
pub enum SttCommand {
    Audio(Vec<i16>),
    /// Flush: recognize what was heard so far without waiting for endpointing.
    Finalize,
    /// Flush and close; the events channel ends after the last results.
    Close,
}

/// One recognizer connection for one call.
#[derive(Debug)]
pub struct SttSession {
    provider: String,
    commands: mpsc::Sender<SttCommand>,
    events: mpsc::Receiver<Result<SttEvent, SttError>>,
    dropped_frames: u64,
    _task: TaskGuard,
}

/// Frames buffered toward a recognizer: about ten seconds of 20 ms frames, beyond which audio is
/// dropped rather than delaying the call.
pub const STT_QUEUE_FRAMES: usize = 512;

impl SttSession {
    /// A session over channels served by `task`; for provider implementations.
    pub fn new(
        provider: impl Into<String>,
        commands: mpsc::Sender<SttCommand>,
        events: mpsc::Receiver<Result<SttEvent, SttError>>,
        task: TaskGuard,
    ) -> Self {
        SttSession {
            provider: provider.into(),
            commands,
            events,
            dropped_frames: 0,
            _task: task,
        }
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Queues a frame without waiting; a frame that does not fit is dropped (and counted), since
    /// a caller's audio is worthless once it is late.
    pub fn send_audio(&mut self, samples: Vec<i16>) -> Result<(), SttError> {
        match self.commands.try_send(SttCommand::Audio(samples)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped_frames += 1;
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SttError::Closed),
        }
    }

    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    pub async fn finalize(&self) -> Result<(), SttError> {
        self.commands
            .send(SttCommand::Finalize)
            .await
            .map_err(|_| SttError::Closed)
    }

    pub async fn close(&self) -> Result<(), SttError> {
        self.commands
            .send(SttCommand::Close)
            .await
            .map_err(|_| SttError::Closed)
    }

    /// The next event; `Some(Err(_))` is final: the recognizer gave up.
    pub async fn recv(&mut self) -> Option<Result<SttEvent, SttError>> {
        self.events.recv().await
    }
}

/// A streaming recognizer.
pub trait SpeechToText: Send + Sync {
    fn name(&self) -> &str;
    /// Opens the call's connection; fails fast so a fallback can take over at call start.
    fn open(&self, options: SttOptions) -> BoxFuture<'_, Result<SttSession, SttError>>;
}

// ---------------------------------------------------------------------------------------------
// Language models

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A function the model may call, described by a JSON Schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// A call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The provider's id, or one we made up where it gives none (Ollama).
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// Calls an assistant message made.
    pub tool_calls: Vec<ToolCall>,
    /// For a tool result: the call it answers.
    pub tool_call: Option<ToolCall>,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call: None,
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    pub fn tool_result(call: &ToolCall, content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call: Some(call.clone()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    Other(String),
}

impl FinishReason {
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" => FinishReason::ToolCalls,
            other => FinishReason::Other(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    Token(String),
    ToolCall(ToolCall),
    Done(FinishReason),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("{provider}: connection failed: {message}")]
    Connect { provider: String, message: String },
    #[error("{provider}: the key was rejected")]
    Auth { provider: String },
    #[error("{provider}: HTTP {status}: {message}")]
    Status {
        provider: String,
        status: u16,
        message: String,
    },
    #[error("{provider}: {message}")]
    Provider { provider: String, message: String },
    #[error("{provider}: stream broke off: {message}")]
    Interrupted { provider: String, message: String },
    #[error("no language model left in the chain")]
    Exhausted,
}

impl LlmError {
    /// Worth another try at the same provider: the network, overload, the server's own fault.
    pub fn retryable(&self) -> bool {
        match self {
            LlmError::Connect { .. } | LlmError::Interrupted { .. } => true,
            LlmError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// One streamed reply; dropping it cancels the request (the connection is closed).
#[derive(Debug)]
pub struct LlmStream {
    provider: String,
    events: mpsc::Receiver<Result<LlmEvent, LlmError>>,
    _task: TaskGuard,
}

impl LlmStream {
    pub fn new(
        provider: impl Into<String>,
        events: mpsc::Receiver<Result<LlmEvent, LlmError>>,
        task: TaskGuard,
    ) -> Self {
        LlmStream {
            provider: provider.into(),
            events,
            _task: task,
        }
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The next token, tool call or the end; `None` after `Done` or an error.
    pub async fn recv(&mut self) -> Option<Result<LlmEvent, LlmError>> {
        self.events.recv().await
    }

    /// Cancels the request. Same as dropping; named so barge-in code reads as what it does.
    pub fn cancel(self) {}

    /// The whole text of the reply.
    pub async fn collect_text(mut self) -> Result<String, LlmError> {
        let mut text = String::new();
        while let Some(ev) = self.recv().await {
            match ev? {
                LlmEvent::Token(t) => text.push_str(&t),
                LlmEvent::ToolCall(_) => {}
                LlmEvent::Done(_) => break,
            }
        }
        Ok(text)
    }
}

/// A streaming chat model.
pub trait LanguageModel: Send + Sync {
    fn name(&self) -> &str;
    /// Starts a reply; resolves once the provider accepted the request (status checked), so a
    /// refusal is an `Err` here and a fallback can take over before anything was streamed.
    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<LlmStream, LlmError>>;
    /// Opens the connection (and loads the model where that applies) at call start.
    fn warm_up(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Tokens an engine reply may take when the bot sets no `max_tokens`: the engine asks for one or
/// two short spoken sentences (30–50 tokens), and a small local model left unbounded rambles on
/// while the caller waits for the whole reply.
pub const ENGINE_REPLY_TOKENS: u32 = 64;

/// A [`LanguageModel`] serving the scenario engine, which wants whole replies.
pub struct EngineLlm {
    model: std::sync::Arc<dyn LanguageModel>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
}

impl EngineLlm {
    pub fn new(model: std::sync::Arc<dyn LanguageModel>) -> Self {
        EngineLlm {
            model,
            temperature: None,
            max_tokens: None,
        }
    }

    pub fn with_sampling(mut self, temperature: Option<f32>, max_tokens: Option<u32>) -> Self {
        self.temperature = temperature;
        self.max_tokens = max_tokens;
        self
    }

    /// The engine's model for a call of a bot: its sampling from the bot's `providers.llm`, and the
    /// model warming up (connecting, or loading a local model) in the background meanwhile, so
    /// the call's first question does not wait for that.
    pub fn for_call(
        model: std::sync::Arc<dyn LanguageModel>,
        choice: Option<&callfleet_core::config::ProviderChoice>,
    ) -> Self {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let warming = model.clone();
            runtime.spawn(async move { warming.warm_up().await });
        }
        EngineLlm::new(model).with_sampling(
            choice.and_then(|c| c.temperature).map(|t| t as f32),
            choice.and_then(|c| c.max_tokens),
        )
    }
}

impl callfleet_core::scenario::Llm for EngineLlm {
    fn complete<'a>(
        &'a self,
        messages: Vec<callfleet_core::scenario::LlmMessage>,
    ) -> BoxFuture<'a, Result<String, callfleet_core::scenario::AssistError>> {
        Box::pin(async move { self.reply(messages, &|_| {}).await })
    }

    fn complete_streaming<'a>(
        &'a self,
        messages: Vec<callfleet_core::scenario::LlmMessage>,
        on_text: &'a (dyn Fn(&str) + Send + Sync),
    ) -> BoxFuture<'a, Result<String, callfleet_core::scenario::AssistError>> {
        Box::pin(self.reply(messages, on_text))
    }
}

impl EngineLlm {
    /// The reply, each whole sentence handed to `on_text` as soon as it is written. A reply cut
    /// off by the token limit ends at its last whole sentence (the caller never hears half of
    /// one; with no whole sentence it is kept); one that fails after sentences went out is
    /// those sentences, since the caller has heard them.
    async fn reply(
        &self,
        messages: Vec<callfleet_core::scenario::LlmMessage>,
        on_text: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<String, callfleet_core::scenario::AssistError> {
        let messages = messages
            .into_iter()
            .map(|m| {
                let role = match m.role {
                    "system" => Role::System,
                    "assistant" => Role::Assistant,
                    _ => Role::User,
                };
                ChatMessage::new(role, m.content)
            })
            .collect();
        let max_tokens = Some(self.max_tokens.unwrap_or(ENGINE_REPLY_TOKENS));
        let request = ChatRequest {
            messages,
            tools: Vec::new(),
            temperature: self.temperature,
            max_tokens,
        };
        let err = |e: LlmError| callfleet_core::scenario::AssistError(e.to_string());
        let mut stream = self.model.stream(request).await.map_err(err)?;
        let (mut text, mut sent) = (String::new(), 0usize);
        loop {
            match stream.recv().await {
                Some(Ok(LlmEvent::Token(t))) => {
                    text.push_str(&t);
                    if let Some(end) = last_sentence_end(&text[sent..], false) {
                        on_text(&text[sent..sent + end]);
                        sent += end;
                    }
                }
                Some(Ok(LlmEvent::ToolCall(_))) => {}
                Some(Ok(LlmEvent::Done(reason))) => {
                    if reason == FinishReason::Length {
                        if let Some(end) = last_sentence_end(&text, true) {
                            text.truncate(end.max(sent));
                        }
                    }
                    break;
                }
                None => break,
                Some(Err(e)) if sent == 0 => return Err(err(e)),
                Some(Err(e)) => {
                    tracing::warn!(provider = self.model.name(), error = %e, "The reply broke off; keeping the sentences already said.");
                    text.truncate(sent);
                    return Ok(text);
                }
            }
        }
        if sent < text.len() {
            on_text(&text[sent..]);
        }
        Ok(text)
    }
}

/// Where the last whole sentence of `text` ends (just after its full stop, `!`, `?` or `…`): the
/// mark must be followed by a space, or — with `at_end` — may end the text.
fn last_sentence_end(text: &str, at_end: bool) -> Option<usize> {
    text.char_indices()
        .filter(|&(i, c)| {
            let next = text[i + c.len_utf8()..].chars().next();
            matches!(c, '.' | '!' | '?' | '…' | '。') && next.map_or(at_end, char::is_whitespace)
        })
        .map(|(i, c)| i + c.len_utf8())
        .next_back()
}

#[cfg(test)]
mod engine_llm_tests {
    use super::*;

    #[test]
    fn sentences_end_at_a_mark_and_a_space() {
        let check = |text: &str, at_end: bool, want: Option<&str>| {
            assert_eq!(
                last_sentence_end(text, at_end).map(|i| &text[..i]),
                want,
                "{text:?}"
            )
        };
        check("We open at 8. On Sunday we", false, Some("We open at 8."));
        check(
            "Open 9 to 5! Closed Sunday? Yes. And th",
            false,
            Some("Open 9 to 5! Closed Sunday? Yes."),
        );
        check("Visit clinic.md for 3.5 hours of", false, None);
        check(
            "Мы открыты с 9. В субботу мы",
            false,
            Some("Мы открыты с 9."),
        );
        check("We open at 8.", false, None);
        check("We open at 8.", true, Some("We open at 8."));
        check("", true, None);
    }
}

// ---------------------------------------------------------------------------------------------
// Text to speech

#[derive(Debug, Clone, PartialEq)]
pub struct TtsOptions {
    pub voice: Option<String>,
    pub model: Option<String>,
    pub language: Option<String>,
    /// Of the 16-bit mono PCM asked for.
    pub sample_rate: u32,
}

impl Default for TtsOptions {
    fn default() -> Self {
        TtsOptions {
            voice: None,
            model: None,
            language: None,
            sample_rate: 24_000,
        }
    }
}

/// One utterance within a TTS session (a Cartesia context, an Aura flush, an ElevenLabs stream).
pub type UtteranceId = u64;

#[derive(Debug, Clone, PartialEq)]
pub enum TtsCommand {
    /// More text for the utterance, concatenated exactly as sent (keep the spaces).
    Text { id: UtteranceId, text: String },
    /// No more text: synthesize the rest.
    Finish { id: UtteranceId },
    /// Stop synthesizing; no more audio for it will be delivered.
    Cancel { id: UtteranceId },
}

#[derive(Debug, Clone, PartialEq)]
pub enum TtsEvent {
    Audio {
        id: UtteranceId,
        samples: Vec<i16>,
    },
    Done {
        id: UtteranceId,
    },
    /// This utterance failed; the session may still serve the next one.
    Failed {
        id: UtteranceId,
        error: TtsError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtsError {
    #[error("{provider}: connection failed: {message}")]
    Connect { provider: String, message: String },
    #[error("{provider}: the key was rejected")]
    Auth { provider: String },
    #[error("{provider}: {message}")]
    Provider { provider: String, message: String },
    #[error("no text-to-speech provider left in the chain")]
    Exhausted,
    #[error("the session is closed")]
    Closed,
}

/// One synthesizer connection for one call.
#[derive(Debug)]
pub struct TtsSession {
    provider: String,
    sample_rate: u32,
    next_id: AtomicU64,
    commands: mpsc::UnboundedSender<TtsCommand>,
    events: mpsc::Receiver<Result<TtsEvent, TtsError>>,
    _task: TaskGuard,
}

impl TtsSession {
    pub fn new(
        provider: impl Into<String>,
        sample_rate: u32,
        commands: mpsc::UnboundedSender<TtsCommand>,
        events: mpsc::Receiver<Result<TtsEvent, TtsError>>,
        task: TaskGuard,
    ) -> Self {
        TtsSession {
            provider: provider.into(),
            sample_rate,
            next_id: AtomicU64::new(1),
            commands,
            events,
            _task: task,
        }
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Of the audio this session delivers.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// A fresh utterance id; nothing is sent until its first text.
    pub fn start(&self) -> UtteranceId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn push_text(&self, id: UtteranceId, text: impl Into<String>) -> Result<(), TtsError> {
        self.send(TtsCommand::Text {
            id,
            text: text.into(),
        })
    }

    pub fn finish(&self, id: UtteranceId) -> Result<(), TtsError> {
        self.send(TtsCommand::Finish { id })
    }

    pub fn cancel(&self, id: UtteranceId) -> Result<(), TtsError> {
        self.send(TtsCommand::Cancel { id })
    }

    fn send(&self, c: TtsCommand) -> Result<(), TtsError> {
        self.commands.send(c).map_err(|_| TtsError::Closed)
    }

    /// The next event; `Some(Err(_))` means the session is dead.
    pub async fn recv(&mut self) -> Option<Result<TtsEvent, TtsError>> {
        self.events.recv().await
    }
}

/// A streaming synthesizer.
pub trait TextToSpeech: Send + Sync {
    fn name(&self) -> &str;
    fn open(&self, options: TtsOptions) -> BoxFuture<'_, Result<TtsSession, TtsError>>;
}

// ---------------------------------------------------------------------------------------------
// Embeddings

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    #[error("{provider}: connection failed: {message}")]
    Connect { provider: String, message: String },
    #[error("{provider}: HTTP {status}: {message}")]
    Status {
        provider: String,
        status: u16,
        message: String,
    },
    #[error("{provider}: {message}")]
    Protocol { provider: String, message: String },
    #[error("no embedder left in the chain")]
    Exhausted,
}

impl EmbedError {
    /// An embedding request that failed as an LLM request to the same service does: an HTTP
    /// status stays one, anything else is a failed connection.
    pub fn from_request(provider: &str, e: LlmError) -> Self {
        match e {
            LlmError::Status {
                status, message, ..
            } => EmbedError::Status {
                provider: provider.into(),
                status,
                message,
            },
            other => EmbedError::Connect {
                provider: provider.into(),
                message: other.to_string(),
            },
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            EmbedError::Connect { .. } => true,
            EmbedError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

pub trait Embedder: Send + Sync {
    fn name(&self) -> &str;
    /// One vector per text, in order.
    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>, EmbedError>>;
}
