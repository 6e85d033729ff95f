//! Fallback chains: the next provider of a kind takes over when one refuses or dies, so the
//! caller hears a different voice rather than silence.

use crate::types::*;
use callfleet_core::scenario::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------------------------

/// Language models tried in order until one starts answering.
pub struct FallbackLlm {
    chain: Vec<Arc<dyn LanguageModel>>,
    first_event_timeout: Duration,
}

impl FallbackLlm {
    pub fn new(chain: Vec<Arc<dyn LanguageModel>>) -> Self {
        // Past this the caller notices the pause; a second model is likely faster than waiting.
        FallbackLlm {
            chain,
            first_event_timeout: Duration::from_secs(4),
        }
    }

    pub fn with_first_event_timeout(mut self, timeout: Duration) -> Self {
        self.first_event_timeout = timeout;
        self
    }
}

impl LanguageModel for FallbackLlm {
    fn name(&self) -> &str {
        self.chain.first().map(|m| m.name()).unwrap_or("none")
    }

    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<LlmStream, LlmError>> {
        Box::pin(async move {
            let mut last = LlmError::Exhausted;
            for model in &self.chain {
                let started = tokio::time::timeout(self.first_event_timeout, async {
                    let mut s = model.stream(request.clone()).await?;
                    match s.recv().await {
                        Some(Ok(first)) => Ok((s, first)),
                        Some(Err(e)) => Err(e),
                        None => Err(LlmError::Interrupted {
                            provider: model.name().into(),
                            message: "empty stream".into(),
                        }),
                    }
                })
                .await;
                match started {
                    Ok(Ok((mut inner, first))) => {
                        let (tx, rx) = mpsc::channel(256);
                        let task = tokio::spawn(async move {
                            if tx.send(Ok(first)).await.is_err() {
                                return;
                            }
                            while let Some(ev) = inner.recv().await {
                                if tx.send(ev).await.is_err() {
                                    return;
                                }
                            }
                        });
                        return Ok(LlmStream::new(model.name(), rx, TaskGuard::new(task)));
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(provider = model.name(), error = %e, "LLM failed; trying the next one.");
                        last = e;
                    }
                    Err(_) => {
                        tracing::warn!(
                            provider = model.name(),
                            "LLM too slow to start; trying the next one."
                        );
                        last = LlmError::Interrupted {
                            provider: model.name().into(),
                            message: "no first token in time".into(),
                        };
                    }
                }
            }
            Err(last)
        })
    }

    fn warm_up(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(first) = self.chain.first() {
                first.warm_up().await;
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// Recognizers tried in order at call start, and again whenever the one in use gives up.
pub struct FallbackStt {
    chain: Vec<Arc<dyn SpeechToText>>,
}

impl FallbackStt {
    pub fn new(chain: Vec<Arc<dyn SpeechToText>>) -> Self {
        FallbackStt { chain }
    }
}

async fn open_stt_from(
    chain: &[Arc<dyn SpeechToText>],
    from: usize,
    options: &SttOptions,
) -> Result<(usize, SttSession), SttError> {
    let mut last = SttError::Exhausted;
    for (i, stt) in chain.iter().enumerate().skip(from) {
        match stt.open(options.clone()).await {
            Ok(s) => return Ok((i, s)),
            Err(e) => {
                tracing::warn!(provider = stt.name(), error = %e, "STT unavailable; trying the next one.");
                last = e;
            }
        }
    }
    Err(last)
}

impl SpeechToText for FallbackStt {
    fn name(&self) -> &str {
        self.chain.first().map(|m| m.name()).unwrap_or("none")
    }

    fn open(&self, options: SttOptions) -> BoxFuture<'_, Result<SttSession, SttError>> {
        Box::pin(async move {
            let (index, inner) = open_stt_from(&self.chain, 0, &options).await?;
            let name = inner.provider().to_string();
            let (cmd_tx, cmd_rx) = mpsc::channel(STT_QUEUE_FRAMES);
            let (ev_tx, ev_rx) = mpsc::channel(256);
            let task = tokio::spawn(forward_stt(
                self.chain.clone(),
                index,
                inner,
                options,
                cmd_rx,
                ev_tx,
            ));
            Ok(SttSession::new(name, cmd_tx, ev_rx, TaskGuard::new(task)))
        })
    }
}

async fn forward_stt(
    chain: Vec<Arc<dyn SpeechToText>>,
    mut index: usize,
    mut inner: SttSession,
    options: SttOptions,
    mut commands: mpsc::Receiver<SttCommand>,
    events: mpsc::Sender<Result<SttEvent, SttError>>,
) {
    let mut closing = false;
    loop {
        tokio::select! {
            cmd = commands.recv(), if !closing => match cmd {
                None => return,
                Some(SttCommand::Audio(samples)) => { let _ = inner.send_audio(samples); }
                Some(SttCommand::Finalize) => { let _ = inner.finalize().await; }
                Some(SttCommand::Close) => {
                    closing = true;
                    let _ = inner.close().await;
                }
            },
            ev = inner.recv() => match ev {
                Some(Ok(ev)) => {
                    if events.send(Ok(ev)).await.is_err() {
                        return;
                    }
                }
                None if closing => return,
                other => {
                    let reason = match other { Some(Err(e)) => e.to_string(), _ => "session ended".into() };
                    tracing::warn!(provider = inner.provider(), reason = %reason, "STT gave up; switching to the next one.");
                    match open_stt_from(&chain, index + 1, &options).await {
                        Ok((i, s)) => {
                            index = i;
                            inner = s;
                            if events.send(Ok(SttEvent::Reconnected)).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => {
                            let _ = events.send(Err(SttError::Exhausted)).await;
                            return;
                        }
                    }
                }
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Synthesizers tried in order; when one fails mid-reply, the next one says what the caller has
/// not heard yet.
pub struct FallbackTts {
    chain: Vec<Arc<dyn TextToSpeech>>,
}

impl FallbackTts {
    pub fn new(chain: Vec<Arc<dyn TextToSpeech>>) -> Self {
        FallbackTts { chain }
    }
}

async fn open_tts_from(
    chain: &[Arc<dyn TextToSpeech>],
    from: usize,
    options: &TtsOptions,
) -> Result<(usize, TtsSession), TtsError> {
    let mut last = TtsError::Exhausted;
    for (i, tts) in chain.iter().enumerate().skip(from) {
        match tts.open(options.clone()).await {
            Ok(s) => return Ok((i, s)),
            Err(e) => {
                tracing::warn!(provider = tts.name(), error = %e, "TTS unavailable; trying the next one.");
                last = e;
            }
        }
    }
    Err(last)
}

impl TextToSpeech for FallbackTts {
    fn name(&self) -> &str {
        self.chain.first().map(|m| m.name()).unwrap_or("none")
    }

    fn open(&self, options: TtsOptions) -> BoxFuture<'_, Result<TtsSession, TtsError>> {
        Box::pin(async move {
            let (index, inner) = open_tts_from(&self.chain, 0, &options).await?;
            let name = inner.provider().to_string();
            let rate = inner.sample_rate();
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let (ev_tx, ev_rx) = mpsc::channel(256);
            let relay = TtsRelay {
                chain: self.chain.clone(),
                index,
                inner,
                options,
                utterances: HashMap::new(),
            };
            let task = tokio::spawn(relay.run(cmd_rx, ev_tx));
            Ok(TtsSession::new(
                name,
                rate,
                cmd_tx,
                ev_rx,
                TaskGuard::new(task),
            ))
        })
    }
}

/// What the relay remembers of an utterance so another provider can finish it.
struct Relayed {
    inner: UtteranceId,
    text: String,
    finished: bool,
    samples: u64,
}

struct TtsRelay {
    chain: Vec<Arc<dyn TextToSpeech>>,
    index: usize,
    inner: TtsSession,
    options: TtsOptions,
    utterances: HashMap<UtteranceId, Relayed>,
}

type TtsEvents = mpsc::Sender<Result<TtsEvent, TtsError>>;

impl TtsRelay {
    fn outer_of(&self, inner: UtteranceId) -> Option<UtteranceId> {
        self.utterances
            .iter()
            .find(|(_, u)| u.inner == inner)
            .map(|(id, _)| *id)
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<TtsCommand>, events: TtsEvents) {
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(TtsCommand::Text { id, text }) => {
                        let inner = &self.inner;
                        let u = self.utterances.entry(id).or_insert_with(|| Relayed { inner: inner.start(), text: String::new(), finished: false, samples: 0 });
                        u.text.push_str(&text);
                        let _ = self.inner.push_text(u.inner, text);
                    }
                    Some(TtsCommand::Finish { id }) => {
                        let inner = &self.inner;
                        let u = self.utterances.entry(id).or_insert_with(|| Relayed { inner: inner.start(), text: String::new(), finished: false, samples: 0 });
                        u.finished = true;
                        let _ = self.inner.finish(u.inner);
                    }
                    Some(TtsCommand::Cancel { id }) => {
                        if let Some(u) = self.utterances.remove(&id) {
                            let _ = self.inner.cancel(u.inner);
                        }
                    }
                },
                ev = self.inner.recv() => {
                    let forward = match ev {
                        Some(Ok(TtsEvent::Audio { id, samples })) => self.outer_of(id).map(|outer| {
                            if let Some(u) = self.utterances.get_mut(&outer) {
                                u.samples += samples.len() as u64;
                            }
                            TtsEvent::Audio { id: outer, samples }
                        }),
                        Some(Ok(TtsEvent::Done { id })) => self.outer_of(id).map(|outer| {
                            self.utterances.remove(&outer);
                            TtsEvent::Done { id: outer }
                        }),
                        Some(Ok(TtsEvent::Failed { error, .. })) | Some(Err(error)) => {
                            if !self.switch(&error, &events).await {
                                return;
                            }
                            None
                        }
                        None => {
                            if !self.switch(&TtsError::Closed, &events).await {
                                return;
                            }
                            None
                        }
                    };
                    if let Some(ev) = forward {
                        if events.send(Ok(ev)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Moves every unfinished utterance to the next provider; false when none is left.
    async fn switch(&mut self, error: &TtsError, events: &TtsEvents) -> bool {
        tracing::warn!(provider = self.inner.provider(), error = %error, "TTS failed; switching to the next one.");
        match open_tts_from(&self.chain, self.index + 1, &self.options).await {
            Ok((i, session)) => {
                self.index = i;
                self.inner = session;
                let rate = self.options.sample_rate.max(1) as f64;
                let mut done = Vec::new();
                for (outer, u) in self.utterances.iter_mut() {
                    let rest = unheard_rest(&u.text, u.samples as f64 / rate);
                    u.inner = self.inner.start();
                    let nothing_left = rest.is_empty();
                    if !nothing_left {
                        let _ = self.inner.push_text(u.inner, rest);
                    }
                    if u.finished {
                        if nothing_left {
                            done.push(*outer);
                        } else {
                            let _ = self.inner.finish(u.inner);
                        }
                    }
                }
                for id in done {
                    self.utterances.remove(&id);
                    if events.send(Ok(TtsEvent::Done { id })).await.is_err() {
                        return false;
                    }
                }
                true
            }
            Err(_) => {
                for id in std::mem::take(&mut self.utterances).into_keys() {
                    let _ = events
                        .send(Ok(TtsEvent::Failed {
                            id,
                            error: TtsError::Exhausted,
                        }))
                        .await;
                }
                let _ = events.send(Err(TtsError::Exhausted)).await;
                false
            }
        }
    }
}

/// Characters per second of ordinary speech, to guess how much of a text some audio covered
/// when the provider gives no timestamps.
pub const SPOKEN_CHARS_PER_SEC: f64 = 14.0;

/// The part of `text` that `seconds` of audio probably did not cover, from a word boundary.
pub fn unheard_rest(text: &str, seconds: f64) -> String {
    let heard = heard_prefix(text, (seconds * SPOKEN_CHARS_PER_SEC) as usize);
    text[heard.len()..].trim_start().to_string()
}

/// The longest run of whole words of `text` within `chars` characters.
pub fn heard_prefix(text: &str, chars: usize) -> &str {
    if text.chars().count() <= chars {
        return text;
    }
    let cut = text
        .char_indices()
        .nth(chars)
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    // A word split by the cut was not heard in full.
    match text[..cut].rfind(char::is_whitespace) {
        Some(space) if !text[cut..].starts_with(char::is_whitespace) => text[..space].trim_end(),
        _ => text[..cut].trim_end(),
    }
}

// ---------------------------------------------------------------------------------------------

/// Embedders tried in order (all of one chain must share a dimension).
pub struct FallbackEmbedder {
    chain: Vec<Arc<dyn Embedder>>,
}

impl FallbackEmbedder {
    pub fn new(chain: Vec<Arc<dyn Embedder>>) -> Self {
        FallbackEmbedder { chain }
    }
}

impl Embedder for FallbackEmbedder {
    fn name(&self) -> &str {
        self.chain.first().map(|m| m.name()).unwrap_or("none")
    }

    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let mut last = EmbedError::Exhausted;
            for e in &self.chain {
                match e.embed(texts.clone()).await {
                    Ok(v) => return Ok(v),
                    Err(err) => {
                        tracing::warn!(provider = e.name(), error = %err, "Embedder failed; trying the next one.");
                        last = err;
                    }
                }
            }
            Err(last)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heard_prefixes_end_on_whole_words() {
        let cases = [
            ("Hello there, friend.", 0, ""),
            ("Hello there, friend.", 5, "Hello"),
            ("Hello there, friend.", 8, "Hello"),
            ("Hello there, friend.", 12, "Hello there,"),
            ("Hello there, friend.", 100, "Hello there, friend."),
            ("Привет, как дела", 7, "Привет,"),
        ];
        for (text, chars, want) in cases {
            assert_eq!(heard_prefix(text, chars), want, "{text} {chars}");
        }
        assert_eq!(
            unheard_rest("Hello there, friend.", 6.0 / SPOKEN_CHARS_PER_SEC),
            "there, friend."
        );
    }
}
