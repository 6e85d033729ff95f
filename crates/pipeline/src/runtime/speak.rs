//! What the agent says outside a reply, and the synthesizer's side of every utterance: phrases
//! (greeting, re-prompt, goodbye) from the cache or synthesized and kept, the apology prepared
//! at call start and played — or a tone — when the providers fail, and the synthesizer's audio
//! routed to the utterance it belongs to (resampled when a fallback speaks at another rate).

use super::call::{Call, Speaking};
use super::{CallEnd, PipelineError};
use crate::phrases::{self, PhraseCache};
use callfleet_audio::Resampler;
use callfleet_providers::{TtsEvent, TtsSession, UtteranceId};

impl Call {
    fn apology_key(&self) -> String {
        PhraseCache::key(
            &self.config.bot_id,
            self.config.tts.voice.as_deref(),
            self.config.output_rate,
            phrases::apology(&self.language),
        )
    }

    /// Synthesizes the apology in the background if no call has yet, so it is ready before it
    /// is needed.
    pub(super) fn prepare_apology(&mut self) {
        let key = self.apology_key();
        if self.phrases.get(&key).is_some() {
            return;
        }
        let Some(tts) = &self.tts else { return };
        let id = tts.start();
        if tts.push_text(id, phrases::apology(&self.language)).is_ok() && tts.finish(id).is_ok() {
            self.caching.insert(id, (key, Vec::new()));
        }
    }

    /// Says `text`; `cache` keeps (and reuses) its audio per bot, voice and text.
    pub(super) fn say_phrase(&mut self, text: String, cache: bool, ends_call: bool) {
        self.stop_speaking();
        let mut s = Speaking::new(None);
        s.text = text.clone();
        s.text_complete = true;
        s.ends_call = ends_call;
        let key = PhraseCache::key(
            &self.config.bot_id,
            self.config.tts.voice.as_deref(),
            self.config.output_rate,
            &text,
        );
        if let Some(audio) = self.phrases.get(&key).filter(|_| cache) {
            self.queue.extend(audio.iter());
            s.samples_in = audio.len() as u64;
            s.tts_done = true;
        } else if let Some(tts) = self.tts.as_ref().filter(|_| !self.tts_failed) {
            let id = tts.start();
            let _ = tts.push_text(id, text);
            let _ = tts.finish(id);
            s.utterance = Some(id);
            s.cache_key = cache.then_some(key);
        } else {
            self.speaking = Some(s);
            self.apologize();
            return;
        }
        self.speaking = Some(s);
    }

    /// Replaces what the agent is saying with the apology (cached, else a tone).
    pub(super) fn apologize(&mut self) {
        let audio = self
            .phrases
            .get(&self.apology_key())
            .map(|a| a.to_vec())
            .unwrap_or_else(|| phrases::comfort_tone(self.config.output_rate));
        if let Some(m) = &self.metrics {
            m.apologized(&self.config.bot_id);
        }
        let s = self.speaking.get_or_insert_with(|| Speaking::new(None));
        if let (Some(tts), Some(id)) = (&self.tts, s.utterance.take()) {
            let _ = tts.cancel(id);
        }
        let unplayed = s.samples_in.saturating_sub(s.samples_played) as usize;
        let keep = self.queue.len().saturating_sub(unplayed);
        self.queue.truncate(keep);
        s.text = phrases::apology(&self.language).to_string();
        s.samples_in = s.samples_played + audio.len() as u64;
        s.text_complete = true;
        s.tts_done = true;
        s.apologized = true;
        self.queue.extend(audio);
    }

    pub(super) fn apologize_and_end(&mut self) {
        self.speaking = Some(Speaking::new(None));
        self.apologize();
        if let Some(s) = &mut self.speaking {
            s.ends_call = true;
        }
        self.end_after_speaking(CallEnd::ProvidersFailed);
    }

    fn end_after_speaking(&mut self, end: CallEnd) {
        if let Some(s) = &mut self.speaking {
            s.ends_call = true;
        }
        self.pending_end = Some(end);
    }

    /// Cancels the current utterance without recording anything (it was superseded).
    pub(super) fn stop_speaking(&mut self) {
        if let Some(s) = self.speaking.take() {
            if let Some(turn) = s.turn {
                let _ = self.cancels.send(turn);
            }
            if let (Some(tts), Some(id)) = (&self.tts, s.utterance) {
                let _ = tts.cancel(id);
            }
            self.queue.clear();
            self.next_frame = None;
        }
    }

    /// A synthesizer's audio for utterance `id`, at the call's rate: converted as one stream
    /// per utterance, so the pieces join without a seam.
    fn at_call_rate(&mut self, id: UtteranceId, samples: Vec<i16>, rate: u32) -> Vec<i16> {
        let out_rate = self.config.output_rate;
        if rate == out_rate {
            return samples;
        }
        let converter = self
            .converters
            .entry(id)
            .or_insert_with(|| Resampler::new(rate, out_rate));
        if converter.rates() != (rate, out_rate) {
            *converter = Resampler::new(rate, out_rate);
        }
        let mut out =
            Vec::with_capacity(samples.len() * out_rate as usize / rate.max(1) as usize + 2);
        converter.process(&samples, &mut out);
        out
    }

    /// The end of utterance `id`'s converted audio, which the converter's lag still held.
    fn converted_tail(&mut self, id: UtteranceId) -> Vec<i16> {
        let mut tail = Vec::new();
        if let Some(mut converter) = self.converters.remove(&id) {
            converter.flush(&mut tail);
        }
        tail
    }

    pub(super) async fn tts_event(
        &mut self,
        ev: Option<Result<TtsEvent, callfleet_providers::TtsError>>,
    ) -> Result<(), PipelineError> {
        let now = self.now();
        match ev {
            Some(Ok(TtsEvent::Audio { id, samples })) => {
                let rate = self
                    .tts
                    .as_ref()
                    .map_or(self.config.output_rate, TtsSession::sample_rate);
                // A fallback provider may not offer the rate asked for; what is cached is kept
                // at the call's rate too.
                let samples = self.at_call_rate(id, samples, rate);
                if let Some((_, buf)) = self.caching.get_mut(&id) {
                    buf.extend_from_slice(&samples);
                    return Ok(());
                }
                let Some(s) = self.speaking.as_mut().filter(|s| s.utterance == Some(id)) else {
                    return Ok(());
                };
                s.timer.tts_first_audio.get_or_insert(now);
                s.samples_in += samples.len() as u64;
                if s.cache_key.is_some() {
                    s.collected.extend_from_slice(&samples);
                }
                self.queue.extend(samples);
            }
            Some(Ok(TtsEvent::Done { id })) => {
                let tail = self.converted_tail(id);
                if let Some((key, mut buf)) = self.caching.remove(&id) {
                    buf.extend_from_slice(&tail);
                    self.phrases.insert(key, buf);
                    return Ok(());
                }
                let Some(s) = self.speaking.as_mut().filter(|s| s.utterance == Some(id)) else {
                    return Ok(());
                };
                if !tail.is_empty() {
                    s.samples_in += tail.len() as u64;
                    if s.cache_key.is_some() {
                        s.collected.extend_from_slice(&tail);
                    }
                    self.queue.extend(tail);
                }
                s.tts_done = true;
                if let Some(key) = s.cache_key.take() {
                    if s.text_complete {
                        self.phrases.insert(key, std::mem::take(&mut s.collected));
                    }
                }
                if self.queue.is_empty() {
                    self.maybe_finish_utterance().await?;
                }
            }
            Some(Ok(TtsEvent::Failed { id, error })) => {
                self.caching.remove(&id);
                self.converters.remove(&id);
                if self
                    .speaking
                    .as_ref()
                    .is_some_and(|s| s.utterance == Some(id))
                {
                    tracing::warn!(error = %error, "TTS failed mid-reply; apologizing.");
                    self.apologize();
                }
            }
            Some(Err(error)) => {
                tracing::warn!(error = %error, "Every TTS provider failed; apologizing and ending the call.");
                self.tts_failed = true;
                self.tts = None;
                self.apologize_and_end();
            }
            None => {
                self.tts_failed = true;
                self.tts = None;
                self.apologize_and_end();
            }
        }
        Ok(())
    }
}
