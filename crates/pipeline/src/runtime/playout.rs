//! Frames out: the queue played in real time, one frame per slot, and once an utterance has
//! been heard in full, its transcript turn, its metrics, and what follows (the detector told
//! the agent is quiet; the call ended if the utterance ended it).

use super::call::Call;
use super::{AgentState, CallEnd, CallOutput, PipelineError};
use crate::metrics::TurnTimer;
use crate::turn::TurnInput;
use callfleet_core::domain::{Speaker, Turn};
use std::time::Duration;
use tokio::time::Instant;

impl Call {
    pub(super) fn frame_ready(&self) -> bool {
        let n = self.config.frame_samples();
        if self.queue.len() >= n {
            return true;
        }
        // A short last frame goes out once nothing more is coming.
        !self.queue.is_empty() && self.speaking.as_ref().is_none_or(|s| s.tts_done)
    }

    pub(super) async fn play_frame(&mut self) -> Result<(), PipelineError> {
        let n = self.config.frame_samples().min(self.queue.len());
        let mut frame: Vec<i16> = self.queue.drain(..n).collect();
        frame.resize(self.config.frame_samples(), 0);
        let now_i = Instant::now();
        // Frames keep a steady 20 ms cadence from the first one; after an underrun the clock
        // restarts rather than bursting to catch up.
        let next = match self.next_frame {
            Some(t) if t + Duration::from_millis(self.config.frame_ms as u64) > now_i => t,
            _ => now_i,
        };
        self.next_frame = Some(next + Duration::from_millis(self.config.frame_ms as u64));
        let now = self.now();
        let mut first = false;
        if let Some(s) = &mut self.speaking {
            s.samples_played += n as u64;
            if !s.started_playing {
                s.started_playing = true;
                s.timer.first_frame_out = Some(now);
                first = true;
            }
        }
        if first {
            self.emit(CallOutput::State(AgentState::Speaking)).await?;
        }
        self.emit(CallOutput::Audio(frame)).await?;
        let rate = self.config.output_rate;
        let words = self.speaking.as_mut().and_then(|s| {
            let heard = s.heard(rate);
            let new = heard.get(s.shown..).filter(|w| !w.is_empty())?.to_string();
            s.shown = heard.len();
            Some(new)
        });
        if let Some(words) = words {
            self.emit(CallOutput::Saying(words)).await?;
        }
        if first {
            let actions = self.detector.handle(now, TurnInput::AgentSpeaking(true));
            self.act(actions).await?;
        }
        if self.queue.is_empty() {
            self.next_frame = None;
            self.maybe_finish_utterance().await?;
        }
        Ok(())
    }

    /// Records a fully heard utterance and what follows it.
    pub(super) async fn maybe_finish_utterance(&mut self) -> Result<(), PipelineError> {
        let done = self
            .speaking
            .as_ref()
            .is_some_and(|s| s.text_complete && s.tts_done && self.queue.is_empty());
        if !done {
            return Ok(());
        }
        let Some(s) = self.speaking.take() else {
            return Ok(());
        };
        let now = self.now();
        if !s.text.trim().is_empty() {
            let turn = Turn {
                speaker: Speaker::Bot,
                text: s.text.trim().to_string(),
                at_ms: now.as_millis() as u64,
                interrupted: false,
            };
            self.transcript.push(turn.clone());
            self.emit(CallOutput::Transcript(turn)).await?;
        }
        if s.turn.is_some() {
            self.record_metrics(&s.timer).await?;
        }
        self.emit(CallOutput::State(AgentState::Listening)).await?;
        let mut actions = Vec::new();
        if !s.started_playing {
            actions.extend(self.detector.handle(now, TurnInput::AgentSpeaking(true)));
        }
        actions.extend(self.detector.handle(now, TurnInput::AgentSpeaking(false)));
        let out_of_turns = s.turn.is_some()
            && self
                .config
                .max_turns
                .is_some_and(|max| self.user_turns >= max);
        if s.ends_call || out_of_turns {
            self.end = Some(self.pending_end.take().unwrap_or(CallEnd::BotEnded));
            return Ok(());
        }
        self.act(actions).await
    }

    pub(super) async fn record_metrics(&mut self, timer: &TurnTimer) -> Result<(), PipelineError> {
        let m = timer.metrics(self.user_turns);
        if let Some(p) = &self.metrics {
            p.observe_turn(&self.config.bot_id, &m);
        }
        if let Some(o) = timer.own_overhead() {
            self.overhead.push(o);
        }
        self.turn_metrics.push(m.clone());
        self.emit(CallOutput::Metrics(m)).await
    }
}
