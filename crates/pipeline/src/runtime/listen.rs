//! The caller's side: their audio through the VAD (and kept for the end-of-turn model) to the
//! recognizer, a flush asked for when the VAD hears them stop, and the recognizer's results
//! turned into the turn detector's inputs — a late answer to a flush ends a pause, not the turn.

use super::call::{Call, MAX_UNANSWERED_FLUSHES};
use super::{CallOutput, PipelineError};
use crate::turn::TurnInput;
use callfleet_providers::SttEvent;
use std::time::Duration;

impl Call {
    pub(super) async fn caller_audio(&mut self, samples: Vec<i16>) -> Result<(), PipelineError> {
        let ms = (samples.len() as u64 * 1000 / self.config.input_rate.max(1) as u64) as u32;
        let p = self
            .vad
            .speech_probability(&samples, self.config.input_rate);
        let voiced = p >= self.config.vad_threshold;
        if self.turn_model.is_some() {
            self.recent_audio
                .push(&samples, self.config.input_rate, voiced);
        }
        let was_speaking = self.smoother.is_speaking();
        let speaking = self.smoother.push(p, ms);
        let now = self.now();
        if speaking && !was_speaking {
            self.speech_began = Some(now);
        }
        if let Some(stt) = &mut self.stt {
            if stt.send_audio(samples).is_err() {
                tracing::warn!("STT session closed; the caller can no longer be heard.");
            }
            if was_speaking && !speaking && self.config.finalize_on_silence {
                let _ = stt.finalize().await;
                self.last_finalize = Some(now);
                self.finalizes.push_back(now);
                if self.finalizes.len() > MAX_UNANSWERED_FLUSHES {
                    self.finalizes.pop_front();
                }
            }
        }
        let actions = self
            .detector
            .handle(now, TurnInput::Vad { speaking, voiced });
        self.act(actions).await
    }

    pub(super) async fn stt_event(
        &mut self,
        ev: Option<Result<SttEvent, callfleet_providers::SttError>>,
    ) -> Result<(), PipelineError> {
        let now = self.now();
        if let Some(Ok(SttEvent::Transcript(t))) = &ev {
            // What the caller is heard saying, live; an empty interim says nothing new.
            if t.is_final || !t.text.trim().is_empty() {
                self.emit(CallOutput::Heard {
                    text: t.text.clone(),
                    is_final: t.is_final,
                })
                .await?;
            }
        }
        let input = match ev {
            Some(Ok(SttEvent::Transcript(t))) if t.is_final => {
                self.last_final = Some(now);
                if !t.text.trim().is_empty() {
                    self.heard_confidence = Some(
                        self.heard_confidence
                            .map_or(t.confidence, |c| c.min(t.confidence)),
                    );
                }
                // A flush we asked for on VAD silence is as good as the recognizer's endpoint.
                // But an endpoint followed by more of the caller's speech ended a pause, not the
                // turn: a recognizer busy transcribing answers late, and its "Hello." arrives
                // while the caller is already saying the rest (or has said it). A flush's
                // answer is late if the caller spoke again after that flush was asked; the
                // recognizer's own endpoint, if the caller has spoken again since the last
                // flush and was heard just now, within the silence it claims. The speech after
                // gets its own flush and endpoint.
                let began_after = |at: Option<Duration>| matches!((at, self.speech_began), (Some(at), Some(began)) if began > at);
                let resumed = if t.from_finalize {
                    began_after(self.finalizes.pop_front())
                } else {
                    let silent_for = self
                        .detector
                        .last_voiced()
                        .map_or(now, |v| now.saturating_sub(v));
                    began_after(self.last_finalize)
                        && silent_for.as_millis() * 2 < u128::from(self.config.stt.endpointing_ms)
                };
                TurnInput::Final {
                    text: t.text,
                    speech_final: (t.speech_final || t.from_finalize) && !resumed,
                }
            }
            Some(Ok(SttEvent::Transcript(t))) => TurnInput::Interim { text: t.text },
            Some(Ok(SttEvent::UtteranceEnd)) => TurnInput::UtteranceEnd,
            Some(Ok(SttEvent::SpeechStarted)) | Some(Ok(SttEvent::Reconnected)) => return Ok(()),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "Speech-to-text failed for good; apologizing and ending the call.");
                self.stt = None;
                self.apologize_and_end();
                return Ok(());
            }
            None => {
                self.stt = None;
                return Ok(());
            }
        };
        let actions = self.detector.handle(now, input);
        self.act(actions).await
    }
}
