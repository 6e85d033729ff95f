//! What answers the caller: the scenario engine for configured bots, or an LLM conversation.
//! Each streams its reply's text as it is produced; the pipeline runs it in its own task and
//! cancels it by dropping the reply's future (which closes the LLM stream).

use callfleet_core::config::FieldKind;
use callfleet_core::scenario::{BoxFuture, CallResult, LiveText, ScenarioEngine};
use callfleet_providers::{ChatMessage, ChatRequest, LanguageModel, LlmEvent};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A finished reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    /// Hang up once it has been said.
    pub ends_call: bool,
    /// The bot now waits for a phone number or e-mail.
    pub collecting_digits: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("responder failed: {0}")]
pub struct ResponderError(pub String);

/// Produces the bot's side of the conversation.
pub trait Responder: Send + 'static {
    fn greeting(&mut self) -> String;
    /// The language phrases (re-prompt, apology) are said in.
    fn language(&self) -> String;
    /// Answers `text`, sending the reply's text through `pieces` as it is produced (pieces
    /// concatenate to the reply).
    fn respond<'a>(
        &'a mut self,
        text: &'a str,
        pieces: mpsc::UnboundedSender<String>,
    ) -> BoxFuture<'a, Result<Reply, ResponderError>>;
    /// [`Responder::respond`], knowing how sure the recognizer was of `text` (0–1, the lowest of
    /// its finals; `None` for keypad digits or a recognizer that does not say). Responders that
    /// weigh what they store by it override this; the default ignores it.
    fn respond_heard<'a>(
        &'a mut self,
        text: &'a str,
        confidence: Option<f32>,
        pieces: mpsc::UnboundedSender<String>,
    ) -> BoxFuture<'a, Result<Reply, ResponderError>> {
        let _ = confidence;
        self.respond(text, pieces)
    }
    /// The caller cut the reply off after hearing `heard` of `said`.
    fn interrupted(&mut self, _said: &str, _heard: &str) {}
    /// The call ended; the conversation's result where the responder keeps one.
    fn finish(&mut self) -> Option<CallResult> {
        None
    }
}

/// The scenario engine as a responder.
pub struct ScenarioResponder {
    engine: ScenarioEngine,
}

impl ScenarioResponder {
    pub fn new(engine: ScenarioEngine) -> Self {
        ScenarioResponder { engine }
    }

    /// The engine, e.g. to checkpoint it after a turn.
    pub fn engine(&self) -> &ScenarioEngine {
        &self.engine
    }

    fn collecting_digits(&self) -> bool {
        let state = self.engine.state();
        let Some(active) = &state.active else {
            return false;
        };
        let Some(pending) = &active.pending else {
            return false;
        };
        self.engine
            .config()
            .scenarios
            .iter()
            .filter(|s| s.name == active.scenario)
            .flat_map(|s| s.collect_fields.iter())
            .any(|f| &f.name == pending && matches!(f.kind(), FieldKind::Phone | FieldKind::Email))
    }
}

impl Responder for ScenarioResponder {
    fn greeting(&mut self) -> String {
        self.engine.start_call().reply
    }

    fn language(&self) -> String {
        self.engine.state().language.code().to_string()
    }

    fn respond<'a>(
        &'a mut self,
        text: &'a str,
        pieces: mpsc::UnboundedSender<String>,
    ) -> BoxFuture<'a, Result<Reply, ResponderError>> {
        self.respond_heard(text, None, pieces)
    }

    /// A transcript the recognizer was unsure of fills no free-text field (the engine asks
    /// again rather than store a misheard value).
    fn respond_heard<'a>(
        &'a mut self,
        text: &'a str,
        confidence: Option<f32>,
        pieces: mpsc::UnboundedSender<String>,
    ) -> BoxFuture<'a, Result<Reply, ResponderError>> {
        Box::pin(async move {
            // The reply goes to TTS as the engine decides it: an answer the language model
            // writes is spoken from its first sentence on.
            let live: LiveText = Arc::new(move |piece: &str| {
                let _ = pieces.send(piece.to_string());
            });
            let out = self.engine.process_heard_live(text, confidence, live).await;
            Ok(Reply {
                ends_call: out.ends_call(),
                text: out.reply,
                collecting_digits: self.collecting_digits(),
            })
        })
    }

    fn finish(&mut self) -> Option<CallResult> {
        Some(self.engine.end_call())
    }
}

/// A free conversation with a language model, streamed token by token.
pub struct LlmResponder {
    llm: Arc<dyn LanguageModel>,
    history: Vec<ChatMessage>,
    greeting: String,
    language: String,
}

impl LlmResponder {
    pub fn new(
        llm: Arc<dyn LanguageModel>,
        system_prompt: &str,
        greeting: &str,
        language: &str,
    ) -> Self {
        LlmResponder {
            llm,
            history: vec![ChatMessage::system(system_prompt)],
            greeting: greeting.to_string(),
            language: language.to_string(),
        }
    }

    pub fn history(&self) -> &[ChatMessage] {
        &self.history
    }
}

impl Responder for LlmResponder {
    fn greeting(&mut self) -> String {
        self.history
            .push(ChatMessage::assistant(self.greeting.clone()));
        self.greeting.clone()
    }

    fn language(&self) -> String {
        self.language.clone()
    }

    fn respond<'a>(
        &'a mut self,
        text: &'a str,
        pieces: mpsc::UnboundedSender<String>,
    ) -> BoxFuture<'a, Result<Reply, ResponderError>> {
        Box::pin(async move {
            self.history.push(ChatMessage::user(text));
            let request = ChatRequest {
                messages: self.history.clone(),
                ..ChatRequest::default()
            };
            let mut stream = self
                .llm
                .stream(request)
                .await
                .map_err(|e| ResponderError(e.to_string()))?;
            let mut reply = String::new();
            let mut failure = None;
            while let Some(ev) = stream.recv().await {
                match ev {
                    Ok(LlmEvent::Token(t)) => {
                        reply.push_str(&t);
                        let _ = pieces.send(t);
                    }
                    Ok(LlmEvent::ToolCall(call)) => {
                        tracing::debug!(tool = %call.name, "Tool call ignored: no tools are wired to the LLM responder.")
                    }
                    Ok(LlmEvent::Done(_)) => break,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if !reply.is_empty() {
                self.history.push(ChatMessage::assistant(reply.clone()));
            }
            match failure {
                // Half a reply is still worth saying; the pipeline apologizes only for none.
                Some(e) if reply.is_empty() => Err(ResponderError(e.to_string())),
                _ => Ok(Reply {
                    text: reply,
                    ends_call: false,
                    collecting_digits: false,
                }),
            }
        })
    }

    fn interrupted(&mut self, said: &str, heard: &str) {
        // The model should know what the caller actually heard, not what it wrote.
        if let Some(last) = self.history.last_mut() {
            if last.content == said {
                last.content = format!("{heard}…");
            }
        }
    }
}
