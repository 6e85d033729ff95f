//! The Debian `espeak-ng` program as a [`TextToSpeech`]: robotic, but any language and no model
//! files. It is run as a process per sentence (`espeak-ng -v VOICE --stdout`, text on stdin),
//! never linked (libespeak-ng is GPL). Its WAV (22.05 kHz) is resampled to the session's rate
//! and delivered in 100 ms chunks. Sentences are synthesized as soon as they are complete in the
//! streamed text, so the first audio does not wait for the whole reply. `Cancel` kills the
//! running process and drops the utterance's queued text.

use callfleet_audio::resample;
use callfleet_audio::wav::parse;
use callfleet_core::scenario::BoxFuture;
use callfleet_providers::*;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

const NAME: &str = "espeak";

/// How espeak-ng speaks.
#[derive(Debug, Clone)]
pub struct EspeakConfig {
    /// The program (`espeak-ng` on the PATH by default).
    pub program: PathBuf,
    /// A voice when the session names none (`en-us`, `ru`, …); otherwise the session's voice,
    /// else its language decides.
    pub voice: Option<String>,
    /// Words per minute (espeak's default is 175).
    pub speed_wpm: Option<u32>,
    /// 0–99 (espeak's default is 50).
    pub pitch: Option<u32>,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        EspeakConfig {
            program: PathBuf::from("espeak-ng"),
            voice: None,
            speed_wpm: None,
            pitch: None,
        }
    }
}

/// espeak-ng as a synthesizer.
#[derive(Debug, Clone, Default)]
pub struct EspeakTts {
    config: EspeakConfig,
}

/// espeak-ng's voice for a language code: `en` → `en-us`, `ru` → `ru`, `pt-BR` → `pt-br`.
pub fn voice_for_language(language: Option<&str>) -> String {
    match language.map(|l| l.trim().to_ascii_lowercase().replace('_', "-")) {
        None => "en-us".into(),
        Some(l) if l.is_empty() || l == "en" || l == "multi" => "en-us".into(),
        Some(l) => l,
    }
}

/// Splits complete sentences off the front of `buf` (a sentence ends at `.`, `!`, `?`, `…` or
/// `;` followed by whitespace, or at a newline); what is left is still being written.
pub fn take_sentences(buf: &mut String) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let mut cut = None;
        let mut chars = buf.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let next_is_space = chars
                .peek()
                .map(|(_, n)| n.is_whitespace())
                .unwrap_or(false);
            if c == '\n' || (matches!(c, '.' | '!' | '?' | '…' | ';') && next_is_space) {
                cut = Some(i + c.len_utf8());
                break;
            }
        }
        match cut {
            Some(end) => {
                let sentence: String = buf.drain(..end).collect();
                if !sentence.trim().is_empty() {
                    out.push(sentence.trim().to_string());
                }
            }
            None => return out,
        }
    }
}

impl EspeakTts {
    pub fn new(config: EspeakConfig) -> Self {
        EspeakTts { config }
    }

    fn voice(&self, options: &TtsOptions) -> String {
        options
            .voice
            .clone()
            .or_else(|| self.config.voice.clone())
            .unwrap_or_else(|| voice_for_language(options.language.as_deref()))
    }

    /// Synthesizes one piece of text at `sample_rate` (16-bit mono).
    pub async fn synthesize(
        &self,
        text: &str,
        voice: &str,
        sample_rate: u32,
    ) -> Result<Vec<i16>, TtsError> {
        synthesize(&self.config, text, voice, sample_rate).await
    }
}

fn provider_err(message: impl Into<String>) -> TtsError {
    TtsError::Provider {
        provider: NAME.into(),
        message: message.into(),
    }
}

async fn synthesize(
    config: &EspeakConfig,
    text: &str,
    voice: &str,
    sample_rate: u32,
) -> Result<Vec<i16>, TtsError> {
    let mut cmd = tokio::process::Command::new(&config.program);
    cmd.arg("-v").arg(voice).arg("--stdout");
    if let Some(s) = config.speed_wpm {
        cmd.arg("-s").arg(s.to_string());
    }
    if let Some(p) = config.pitch {
        cmd.arg("-p").arg(p.to_string());
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| TtsError::Connect {
        provider: NAME.into(),
        message: format!("{}: {e}", config.program.display()),
    })?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // One line: espeak reads stdin to its end; newlines inside would only add pauses.
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    stdin
        .write_all(line.as_bytes())
        .await
        .map_err(|e| provider_err(format!("writing to espeak-ng: {e}")))?;
    drop(stdin);
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| provider_err(format!("espeak-ng: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // espeak-ng exits 0 for an unknown voice (and may speak with its default one): stderr tells.
    if (out.stdout.is_empty() && !stderr.trim().is_empty())
        || stderr.contains("voice does not exist")
    {
        return Err(provider_err(format!("espeak-ng: {}", stderr.trim())));
    }
    if out.stdout.is_empty() && line.is_empty() {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        return Err(provider_err(format!(
            "espeak-ng failed ({}): {}",
            out.status,
            stderr.trim()
        )));
    }
    let pcm = parse(&out.stdout).map_err(|e| provider_err(format!("espeak-ng output: {e}")))?;
    Ok(resample(&pcm.samples, pcm.sample_rate, sample_rate))
}

impl TextToSpeech for EspeakTts {
    fn name(&self) -> &str {
        NAME
    }

    fn open(&self, options: TtsOptions) -> BoxFuture<'_, Result<TtsSession, TtsError>> {
        Box::pin(async move {
            let voice = self.voice(&options);
            // Fail at call start, when a fallback can still take over, if the program or voice
            // is missing.
            synthesize(&self.config, "a", &voice, options.sample_rate)
                .await
                .map_err(|e| match e {
                    TtsError::Provider { message, .. } => TtsError::Connect {
                        provider: NAME.into(),
                        message,
                    },
                    other => other,
                })?;
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let (ev_tx, ev_rx) = mpsc::channel(64);
            let worker = Worker {
                config: self.config.clone(),
                voice,
                sample_rate: options.sample_rate,
                ..Worker::default()
            };
            let task = tokio::spawn(worker.run(cmd_rx, ev_tx));
            Ok(TtsSession::new(
                NAME,
                options.sample_rate,
                cmd_tx,
                ev_rx,
                TaskGuard::new(task),
            ))
        })
    }
}

struct Job {
    id: UtteranceId,
    text: String,
    /// The utterance's last piece: `Done` follows its audio.
    last: bool,
}

#[derive(Default)]
struct Worker {
    config: EspeakConfig,
    voice: String,
    sample_rate: u32,
    buffers: HashMap<UtteranceId, String>,
    jobs: VecDeque<Job>,
    cancelled: HashSet<UtteranceId>,
}

type Events = mpsc::Sender<Result<TtsEvent, TtsError>>;

impl Worker {
    fn command(&mut self, cmd: TtsCommand) {
        match cmd {
            TtsCommand::Text { id, text } => {
                if self.cancelled.contains(&id) {
                    return;
                }
                let buf = self.buffers.entry(id).or_default();
                buf.push_str(&text);
                for sentence in take_sentences(buf) {
                    self.jobs.push_back(Job {
                        id,
                        text: sentence,
                        last: false,
                    });
                }
            }
            TtsCommand::Finish { id } => {
                if self.cancelled.contains(&id) {
                    return;
                }
                let rest = self.buffers.remove(&id).unwrap_or_default();
                self.jobs.push_back(Job {
                    id,
                    text: rest.trim().to_string(),
                    last: true,
                });
            }
            TtsCommand::Cancel { id } => {
                self.cancelled.insert(id);
                self.buffers.remove(&id);
                self.jobs.retain(|j| j.id != id);
            }
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<TtsCommand>, events: Events) {
        loop {
            let Some(job) = self.jobs.pop_front() else {
                match commands.recv().await {
                    Some(cmd) => self.command(cmd),
                    None => return,
                }
                continue;
            };
            let (config, voice, rate, text) = (
                self.config.clone(),
                self.voice.clone(),
                self.sample_rate,
                job.text.clone(),
            );
            let synth = async move {
                if text.is_empty() {
                    Ok(Vec::new())
                } else {
                    synthesize(&config, &text, &voice, rate).await
                }
            };
            tokio::pin!(synth);
            // Serve commands while the process runs; a cancel of this utterance drops (kills) it.
            let result = loop {
                tokio::select! {
                    r = &mut synth => break Some(r),
                    cmd = commands.recv() => match cmd {
                        None => return,
                        Some(TtsCommand::Cancel { id }) if id == job.id => {
                            self.command(TtsCommand::Cancel { id });
                            break None;
                        }
                        Some(cmd) => self.command(cmd),
                    },
                }
            };
            let Some(result) = result else { continue };
            let mut out: Vec<TtsEvent> = Vec::new();
            match result {
                Ok(samples) => {
                    let chunk = (self.sample_rate as usize / 10).max(1);
                    out.extend(samples.chunks(chunk).map(|c| TtsEvent::Audio {
                        id: job.id,
                        samples: c.to_vec(),
                    }));
                    if job.last {
                        out.push(TtsEvent::Done { id: job.id });
                        self.cancelled.remove(&job.id);
                    }
                }
                Err(error) => {
                    // The utterance failed: drop the rest of it; the session serves the next.
                    self.command(TtsCommand::Cancel { id: job.id });
                    out.push(TtsEvent::Failed { id: job.id, error });
                }
            }
            for ev in out {
                if events.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_as_they_complete() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("Hello there. How are", &["Hello there."], " How are"),
            ("Version 2.5 is out! Yes", &["Version 2.5 is out!"], " Yes"),
            ("Да. Нет? Может… ", &["Да.", "Нет?", "Может…"], " "),
            ("line one\nline two", &["line one"], "line two"),
            ("no end yet.", &[], "no end yet."),
        ];
        for (input, want, rest) in cases {
            let mut buf = input.to_string();
            assert_eq!(
                take_sentences(&mut buf),
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{input:?}"
            );
            assert_eq!(&buf, rest, "{input:?}");
        }
    }

    #[test]
    fn voices() {
        assert_eq!(voice_for_language(Some("ru")), "ru");
        assert_eq!(voice_for_language(Some("en")), "en-us");
        assert_eq!(voice_for_language(Some("pt_BR")), "pt-br");
        assert_eq!(voice_for_language(None), "en-us");
    }
}
