//! In-process providers for paused-clock tests of the pipeline's timing. Over real sockets a
//! paused clock jumps ahead whenever the runtime waits on I/O, so these speak our provider
//! traits directly; the wire protocols are covered by the fakes in `callfleet-testkit`.
#![allow(dead_code)]

use callfleet_core::scenario::BoxFuture;
use callfleet_providers::*;
use callfleet_testkit::audio::rms;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Hears loud audio as speech; each stretch is the next transcript, final (with speech_final)
/// after `endpointing_ms` of silence (audio time) plus `final_delay`.
pub struct ScriptedStt {
    pub transcripts: Arc<Mutex<VecDeque<String>>>,
    pub final_delay: Duration,
}

impl ScriptedStt {
    pub fn new(transcripts: &[&str]) -> Self {
        ScriptedStt {
            transcripts: Arc::new(Mutex::new(
                transcripts.iter().map(|s| s.to_string()).collect(),
            )),
            final_delay: Duration::ZERO,
        }
    }
}

impl SpeechToText for ScriptedStt {
    fn name(&self) -> &str {
        "scripted-stt"
    }

    fn open(&self, options: SttOptions) -> BoxFuture<'_, Result<SttSession, SttError>> {
        let transcripts = self.transcripts.clone();
        let delay = self.final_delay;
        Box::pin(async move {
            let (cmd_tx, mut cmd_rx) = mpsc::channel(STT_QUEUE_FRAMES);
            let (ev_tx, ev_rx) = mpsc::channel(256);
            let task = tokio::spawn(async move {
                let window = (options.sample_rate / 100) as usize;
                let mut carry: Vec<i16> = Vec::new();
                let mut in_speech: Option<String> = None;
                let mut silent_ms = 0;
                while let Some(cmd) = cmd_rx.recv().await {
                    let SttCommand::Audio(samples) = cmd else {
                        continue;
                    };
                    carry.extend(samples);
                    while carry.len() >= window {
                        let w: Vec<i16> = carry.drain(..window).collect();
                        let loud = rms(&w) > 500.0;
                        if loud && in_speech.is_none() {
                            in_speech =
                                Some(transcripts.lock().unwrap().pop_front().unwrap_or_default());
                            let _ = ev_tx.send(Ok(SttEvent::SpeechStarted)).await;
                        }
                        if loud {
                            silent_ms = 0;
                        } else if in_speech.is_some() {
                            silent_ms += 10;
                            if silent_ms >= options.endpointing_ms {
                                let text = in_speech.take().unwrap_or_default();
                                if !delay.is_zero() {
                                    tokio::time::sleep(delay).await;
                                }
                                let t = Transcript {
                                    text,
                                    is_final: true,
                                    speech_final: true,
                                    from_finalize: false,
                                    confidence: 1.0,
                                };
                                let _ = ev_tx.send(Ok(SttEvent::Transcript(t))).await;
                            }
                        }
                    }
                }
            });
            Ok(SttSession::new(
                "scripted-stt",
                cmd_tx,
                ev_rx,
                TaskGuard::new(task),
            ))
        })
    }
}

/// Speaks any text as a tone, `ms_per_char` per non-space character, in 100 ms chunks.
pub struct ScriptedTts {
    pub ms_per_char: u32,
    pub first_byte_delay: Duration,
    pub texts: Arc<Mutex<Vec<String>>>,
}

impl ScriptedTts {
    pub fn new() -> Self {
        ScriptedTts {
            ms_per_char: 70,
            first_byte_delay: Duration::ZERO,
            texts: Arc::default(),
        }
    }
}

impl TextToSpeech for ScriptedTts {
    fn name(&self) -> &str {
        "scripted-tts"
    }

    fn open(&self, options: TtsOptions) -> BoxFuture<'_, Result<TtsSession, TtsError>> {
        let (ms_per_char, first_delay, texts) =
            (self.ms_per_char, self.first_byte_delay, self.texts.clone());
        Box::pin(async move {
            let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
            let (ev_tx, ev_rx) = mpsc::channel(1024);
            let rate = options.sample_rate;
            let task = tokio::spawn(async move {
                let mut cancelled = std::collections::HashSet::new();
                let mut started = std::collections::HashSet::new();
                while let Some(cmd) = cmd_rx.recv().await {
                    match cmd {
                        TtsCommand::Text { id, text } if !cancelled.contains(&id) => {
                            texts.lock().unwrap().push(text.clone());
                            if started.insert(id) && !first_delay.is_zero() {
                                tokio::time::sleep(first_delay).await;
                            }
                            let chars = text.chars().filter(|c| !c.is_whitespace()).count() as u32;
                            let samples = callfleet_testkit::audio::tone(
                                chars * ms_per_char,
                                rate,
                                440.0,
                                4000,
                            );
                            for chunk in samples.chunks((rate / 10) as usize) {
                                let _ = ev_tx
                                    .send(Ok(TtsEvent::Audio {
                                        id,
                                        samples: chunk.to_vec(),
                                    }))
                                    .await;
                            }
                        }
                        TtsCommand::Finish { id } if !cancelled.contains(&id) => {
                            let _ = ev_tx.send(Ok(TtsEvent::Done { id })).await;
                        }
                        TtsCommand::Cancel { id } => {
                            cancelled.insert(id);
                        }
                        _ => {}
                    }
                }
            });
            Ok(TtsSession::new(
                "scripted-tts",
                rate,
                cmd_tx,
                ev_rx,
                TaskGuard::new(task),
            ))
        })
    }
}

/// Answers "You said: <text>." token by token after `first_token_delay`.
pub struct EchoLlm {
    pub first_token_delay: Duration,
}

impl LanguageModel for EchoLlm {
    fn name(&self) -> &str {
        "echo"
    }

    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<LlmStream, LlmError>> {
        let delay = self.first_token_delay;
        Box::pin(async move {
            let last = request
                .messages
                .iter()
                .rev()
                .find(|m| m.role == Role::User)
                .map(|m| m.content.clone())
                .unwrap_or_default();
            let (tx, rx) = mpsc::channel(64);
            let task = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                for (i, w) in format!("You said: {last}.").split(' ').enumerate() {
                    let t = if i == 0 {
                        w.to_string()
                    } else {
                        format!(" {w}")
                    };
                    let _ = tx.send(Ok(LlmEvent::Token(t))).await;
                }
                let _ = tx.send(Ok(LlmEvent::Done(FinishReason::Stop))).await;
            });
            Ok(LlmStream::new("echo", rx, TaskGuard::new(task)))
        })
    }
}
