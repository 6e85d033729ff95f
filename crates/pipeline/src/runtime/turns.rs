//! What the turn detector decides, done: a caller's turn ended (the reply requested), a barge-in
//! (the reply, its synthesis and its queued audio cancelled, what was heard recorded), a false
//! alarm resumed, a re-prompt or a hang-up on silence, and the end-of-turn model consulted off
//! the executor.

use super::call::{Call, Speaking};
use super::reply::Request;
use super::{AgentState, CallEnd, CallOutput, PipelineError};
use crate::phrases;
use crate::splitter::SentenceSplitter;
use crate::turn::{Endpoint, TurnAction, TurnInput};
use callfleet_core::domain::{Speaker, Turn};

impl Call {
    pub(super) async fn act(&mut self, actions: Vec<TurnAction>) -> Result<(), PipelineError> {
        for action in actions {
            let now = self.now();
            match action {
                TurnAction::EndOfTurn { text, via } => {
                    let judgement = self.detector.take_judgement();
                    tracing::debug!(?via, ?judgement, text = %text, "End of turn.");
                    self.stop_speaking();
                    self.resumable = None;
                    self.user_turns += 1;
                    let turn = Turn {
                        speaker: Speaker::User,
                        text: text.clone(),
                        at_ms: now.as_millis() as u64,
                        interrupted: false,
                    };
                    self.transcript.push(turn.clone());
                    self.emit(CallOutput::Transcript(turn)).await?;
                    self.emit(CallOutput::State(AgentState::Thinking)).await?;
                    self.turn_id += 1;
                    let mut s = Speaking::new(Some(self.turn_id));
                    s.timer.last_voiced = self.detector.last_voiced();
                    s.timer.stt_final = self.last_final;
                    s.timer.end_of_turn = Some(now);
                    s.timer.endpoint = Some(via.as_str());
                    s.timer.judgement = judgement;
                    self.speaking = Some(s);
                    self.splitter = SentenceSplitter::new(self.config.split);
                    // Keypad digits and typed text are what was pressed or typed, however sure the
                    // recognizer was of the speech before them.
                    let confidence = self.heard_confidence.take();
                    let heard = matches!(via, Endpoint::Stt | Endpoint::Silence);
                    let _ = self.requests.send(Request::Respond {
                        turn: self.turn_id,
                        text,
                        confidence: heard.then_some(confidence).flatten(),
                    });
                }
                TurnAction::Interrupt => self.interrupt().await?,
                TurnAction::Resume => match self.resumable.take() {
                    Some(rest) => self.say_phrase(rest, false, false),
                    None => {
                        self.detector.handle(now, TurnInput::AgentSpeaking(true));
                        self.detector.handle(now, TurnInput::AgentSpeaking(false));
                    }
                },
                TurnAction::Reprompt => {
                    self.say_phrase(phrases::reprompt(&self.language).to_string(), true, false)
                }
                TurnAction::PredictEndOfTurn { request } => self.predict_end_of_turn(request),
                TurnAction::Hangup => {
                    self.say_phrase(phrases::goodbye(&self.language).to_string(), true, true);
                    self.pending_end = Some(CallEnd::SilenceTimeout);
                }
            }
        }
        Ok(())
    }

    /// Text the caller typed: a turn at once. A reply being spoken is cut off first, as if the
    /// caller had spoken over it.
    pub(super) async fn typed(&mut self, text: String) -> Result<(), PipelineError> {
        let text = text.trim().to_string();
        if text.is_empty() {
            return Ok(());
        }
        if self.speaking.as_ref().is_some_and(|s| s.started_playing) {
            self.interrupt().await?;
            let now = self.now();
            let actions = self.detector.handle(now, TurnInput::AgentSpeaking(false));
            self.act(actions).await?;
        }
        self.act(vec![TurnAction::EndOfTurn {
            text,
            via: Endpoint::Typed,
        }])
        .await
    }

    /// Runs the end-of-turn model off the executor; its verdict comes back through `verdicts`.
    fn predict_end_of_turn(&self, request: u64) {
        let Some(model) = self.turn_model.clone() else {
            let _ = self.verdict_tx.send((request, None));
            return;
        };
        let audio = self.recent_audio.to_speech_end();
        let tx = self.verdict_tx.clone();
        tokio::task::spawn_blocking(move || {
            let verdict = match model.lock() {
                Ok(mut m) => m.complete_probability(&audio),
                Err(_) => Err("the model panicked on an earlier call".to_string()),
            };
            let probability = match verdict {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "The end-of-turn model failed; endpointing without it this time.");
                    None
                }
            };
            tracing::debug!(request, ?probability, "End-of-turn verdict.");
            let _ = tx.send((request, probability));
        });
    }

    /// Barge-in: cancel the reply, then its synthesis, then the queued audio — in that order —
    /// and record what the caller actually heard.
    async fn interrupt(&mut self) -> Result<(), PipelineError> {
        let Some(s) = self.speaking.take() else {
            return Ok(());
        };
        if let Some(turn) = s.turn {
            let _ = self.cancels.send(turn);
        }
        if let (Some(tts), Some(id)) = (&self.tts, s.utterance) {
            let _ = tts.cancel(id);
        }
        self.queue.clear();
        self.next_frame = None;
        self.emit(CallOutput::Clear).await?;
        // The caller is talking over the agent: it listens again.
        self.emit(CallOutput::State(AgentState::Listening)).await?;
        let said = s.text.trim().to_string();
        let heard = s.heard(self.config.output_rate).to_string();
        // `heard` is a prefix of `said`: the rest is what follows it.
        let rest = said[heard.len()..].trim_start().to_string();
        self.resumable = (!rest.is_empty()).then_some(rest);
        let now = self.now();
        let turn = Turn {
            speaker: Speaker::Bot,
            text: heard.clone(),
            at_ms: now.as_millis() as u64,
            interrupted: true,
        };
        self.transcript.push(turn.clone());
        self.emit(CallOutput::Transcript(turn)).await?;
        let _ = self.requests.send(Request::Interrupted { said, heard });
        if let Some(m) = &self.metrics {
            m.interrupted(&self.config.bot_id);
        }
        if s.turn.is_some() {
            self.record_metrics(&s.timer).await?;
        }
        Ok(())
    }
}
