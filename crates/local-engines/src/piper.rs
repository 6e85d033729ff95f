//! Piper (VITS) text-to-speech through ONNX Runtime as a [`TextToSpeech`]. Phonemes come from
//! the Debian `espeak-ng` *program* (run as a process with `--ipa`, never linked: it is GPL) in
//! the voice's espeak voice, one output line per clause; clause punctuation is put back the way
//! Piper does, and phonemes become ids through the voice's `phoneme_id_map`: BOS `^`, each
//! phoneme followed by the pad `_`, EOS `$`. The VITS graph takes `input`, `input_lengths` and
//! `scales` (noise, length, noise_w from the voice's JSON) and returns float audio at the
//! voice's rate.
//!
//! A session synthesizes sentence by sentence as text arrives (the first clause too, once it is
//! long enough), in `spawn_blocking`, so the first audio leaves before the reply is complete.

use crate::onnx::{self, ModelFile, OnnxOptions, PIPER_JOE, PIPER_JOE_CONFIG};
use crate::EngineError;
use callfleet_core::scenario::BoxFuture;
use callfleet_providers::{
    TaskGuard, TextToSpeech, TtsCommand, TtsError, TtsEvent, TtsOptions, TtsSession, UtteranceId,
};
use ort::session::Session;
use ort::value::Tensor;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

const NAME: &str = "piper";
const BOS: char = '^';
const EOS: char = '$';
const PAD: char = '_';

/// What a voice's `.onnx.json` says about synthesis.
#[derive(Debug, Clone, PartialEq)]
pub struct PiperConfig {
    pub espeak_voice: String,
    pub sample_rate: u32,
    pub noise_scale: f32,
    pub length_scale: f32,
    pub noise_w: f32,
    pub phoneme_ids: HashMap<char, Vec<i64>>,
}

impl PiperConfig {
    pub fn parse(json: &str) -> Result<Self, EngineError> {
        let v: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| EngineError::Load(format!("voice config: {e}")))?;
        let bad = |what: &str| EngineError::Load(format!("voice config: no {what}"));
        let scale =
            |key: &str, default: f64| v["inference"][key].as_f64().unwrap_or(default) as f32;
        let mut phoneme_ids = HashMap::new();
        for (k, ids) in v["phoneme_id_map"]
            .as_object()
            .ok_or_else(|| bad("phoneme_id_map"))?
        {
            let mut chars = k.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                continue;
            };
            let ids: Vec<i64> = ids
                .as_array()
                .map(|a| a.iter().filter_map(|i| i.as_i64()).collect())
                .unwrap_or_default();
            phoneme_ids.insert(c, ids);
        }
        for c in [BOS, EOS, PAD] {
            if !phoneme_ids.contains_key(&c) {
                return Err(bad(&format!("id for '{c}'")));
            }
        }
        Ok(PiperConfig {
            espeak_voice: v["espeak"]["voice"]
                .as_str()
                .ok_or_else(|| bad("espeak.voice"))?
                .to_string(),
            sample_rate: v["audio"]["sample_rate"]
                .as_u64()
                .ok_or_else(|| bad("audio.sample_rate"))? as u32,
            noise_scale: scale("noise_scale", 0.667),
            length_scale: scale("length_scale", 1.0),
            noise_w: scale("noise_w", 0.8),
            phoneme_ids,
        })
    }

    /// BOS, pad, then each known phoneme followed by the pad, then EOS; unknown ones are skipped.
    pub fn ids(&self, phonemes: &str) -> Vec<i64> {
        let id = |c: char| self.phoneme_ids.get(&c).map(Vec::as_slice).unwrap_or(&[]);
        let mut out = Vec::with_capacity(phonemes.chars().count() * 2 + 3);
        out.extend_from_slice(id(BOS));
        out.extend_from_slice(id(PAD));
        for c in phonemes.chars() {
            if let Some(ids) = self.phoneme_ids.get(&c) {
                out.extend_from_slice(ids);
                out.extend_from_slice(id(PAD));
            }
        }
        out.extend_from_slice(id(EOS));
        out
    }
}

/// One loaded Piper voice.
pub struct PiperVoice {
    session: Session,
    config: PiperConfig,
}

impl PiperVoice {
    /// The `en_US-joe-medium` voice from `piper-joe/` in a models dir.
    pub fn load(models: &Path, options: OnnxOptions) -> Result<Self, EngineError> {
        Self::load_files(models, &PIPER_JOE, &PIPER_JOE_CONFIG, options)
    }

    /// Any Piper voice: its `.onnx` and `.onnx.json` files in a models dir.
    pub fn load_files(
        models: &Path,
        onnx_file: &ModelFile,
        json_file: &ModelFile,
        options: OnnxOptions,
    ) -> Result<Self, EngineError> {
        let json = std::fs::read_to_string(json_file.require(models)?)
            .map_err(|e| EngineError::Load(e.to_string()))?;
        let config = PiperConfig::parse(&json)?;
        let session = onnx::session(models, onnx_file, options)?;
        Ok(PiperVoice { session, config })
    }

    pub fn config(&self) -> &PiperConfig {
        &self.config
    }

    /// Of the audio [`synthesize`](Self::synthesize) returns (22 050 Hz for the medium voices).
    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    /// IPA phonemes for `text` from `espeak-ng`, with clause punctuation as Piper keeps it.
    pub fn phonemize(&self, text: &str) -> Result<String, EngineError> {
        let lines = espeak_ipa(&self.config.espeak_voice, text)?;
        Ok(join_clauses(text, &lines))
    }

    /// 16-bit mono audio at [`sample_rate`](Self::sample_rate) for `text` (one sentence is
    /// best: longer text is phonemized clause by clause and spoken in one breath).
    pub fn synthesize(&mut self, text: &str) -> Result<Vec<i16>, EngineError> {
        let phonemes = self.phonemize(text)?;
        let ids = self.config.ids(&phonemes);
        if ids.len() <= 3 {
            return Ok(Vec::new());
        }
        let n = ids.len();
        let input = Tensor::from_array(([1usize, n], ids)).map_err(onnx::run_error)?;
        let lengths = Tensor::from_array(([1usize], vec![n as i64])).map_err(onnx::run_error)?;
        let c = &self.config;
        let scales = Tensor::from_array(([3usize], vec![c.noise_scale, c.length_scale, c.noise_w]))
            .map_err(onnx::run_error)?;
        let outputs = self
            .session
            .run(ort::inputs! { "input" => input, "input_lengths" => lengths, "scales" => scales })
            .map_err(onnx::run_error)?;
        let (_, audio) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(onnx::run_error)?;
        Ok(audio
            .iter()
            .map(|&x| (x * 32767.0).clamp(-32768.0, 32767.0) as i16)
            .collect())
    }
}

/// Runs `espeak-ng -q --ipa` on `text`; one line of phonemes per clause.
fn espeak_ipa(voice: &str, text: &str) -> Result<Vec<String>, EngineError> {
    let mut child = Command::new("espeak-ng")
        .args(["-q", "-b", "1", "--ipa", "-v", voice])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            EngineError::Run(format!(
                "espeak-ng could not start ({e}); install the Debian package espeak-ng"
            ))
        })?;
    {
        let mut stdin = child.stdin.take().expect("stdin was piped");
        // One line: espeak-ng would treat a newline as the end of a sentence.
        stdin
            .write_all(text.replace(['\n', '\r'], " ").as_bytes())
            .map_err(|e| EngineError::Run(format!("espeak-ng: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| EngineError::Run(format!("espeak-ng: {e}")))?;
    if !out.status.success() {
        return Err(EngineError::Run(format!(
            "espeak-ng failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Clause-ending punctuation in `text` (a mark followed by a space or the end), in order.
fn clause_marks(text: &str) -> Vec<char> {
    let chars: Vec<char> = text.chars().collect();
    let mut marks = Vec::new();
    for (i, &c) in chars.iter().enumerate() {
        let at_break = chars
            .get(i + 1)
            .is_none_or(|n| n.is_whitespace() || matches!(n, '"' | '\'' | ')'));
        if matches!(c, ',' | '.' | '!' | '?' | ';' | ':') && at_break {
            // "..." or "?!" count once.
            if marks.last().is_some()
                && i > 0
                && matches!(chars[i - 1], ',' | '.' | '!' | '?' | ';' | ':')
            {
                continue;
            }
            marks.push(c);
        }
    }
    marks
}

/// espeak's clause lines with the text's clause punctuation after each, space-separated, as
/// Piper builds its phoneme string. Where espeak split clauses differently from the marks
/// found (abbreviations, numbers), the lines are joined by spaces and only the final mark kept.
fn join_clauses(text: &str, lines: &[String]) -> String {
    let marks = clause_marks(text);
    let mut out = String::new();
    if marks.len() == lines.len() {
        for (line, mark) in lines.iter().zip(&marks) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(line);
            out.push(*mark);
        }
    } else {
        out = lines.join(" ");
        if let Some(&last) = marks
            .last()
            .filter(|_| text.trim_end().ends_with(['.', '!', '?', ',', ';', ':']))
        {
            out.push(last);
        }
    }
    out
}

/// Cuts complete pieces off the front of `buf`: sentences, and — while nothing of the utterance
/// has been spoken yet — a first clause of at least `FIRST_CLAUSE_WORDS` words, so the first
/// audio leaves early. Returns the pieces; the rest stays in `buf`.
fn take_ready(buf: &mut String, first: bool) -> Vec<String> {
    const FIRST_CLAUSE_WORDS: usize = 4;
    let mut out = Vec::new();
    let mut first = first;
    loop {
        let chars: Vec<(usize, char)> = buf.char_indices().collect();
        let mut cut = None;
        for (k, &(i, c)) in chars.iter().enumerate() {
            let next_space = chars.get(k + 1).is_some_and(|(_, n)| n.is_whitespace());
            if !next_space {
                continue;
            }
            let sentence_end = matches!(c, '.' | '!' | '?' | ';');
            let clause_end = first
                && matches!(c, ',' | ':')
                && buf[..i].split_whitespace().count() >= FIRST_CLAUSE_WORDS;
            if sentence_end || clause_end {
                cut = Some(i + c.len_utf8());
                break;
            }
        }
        let Some(end) = cut else { break };
        let piece = buf[..end].trim().to_string();
        buf.drain(..end);
        if !piece.is_empty() {
            out.push(piece);
            first = false;
        }
    }
    out
}

/// Piper as a [`TextToSpeech`]: one voice shared by every session (a session at a time uses it).
#[derive(Clone)]
pub struct PiperTts {
    voice: Arc<Mutex<PiperVoice>>,
    sample_rate: u32,
}

impl PiperTts {
    pub fn new(voice: PiperVoice) -> Self {
        let sample_rate = voice.sample_rate();
        PiperTts {
            voice: Arc::new(Mutex::new(voice)),
            sample_rate,
        }
    }

    /// The `en_US-joe-medium` voice from a models dir.
    pub fn load(models: &Path, options: OnnxOptions) -> Result<Self, EngineError> {
        Ok(Self::new(PiperVoice::load(models, options)?))
    }

    /// The voice's own rate; sessions deliver the rate asked for in [`TtsOptions`].
    pub fn native_rate(&self) -> u32 {
        self.sample_rate
    }
}

impl TextToSpeech for PiperTts {
    fn name(&self) -> &str {
        NAME
    }

    fn open(&self, options: TtsOptions) -> BoxFuture<'_, Result<TtsSession, TtsError>> {
        let voice = self.voice.clone();
        let native = self.sample_rate;
        Box::pin(async move {
            let rate = if options.sample_rate == 0 {
                native
            } else {
                options.sample_rate
            };
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let (ev_tx, ev_rx) = mpsc::channel(256);
            let task = tokio::spawn(Synthesis::new(voice, native, rate).run(cmd_rx, ev_tx));
            Ok(TtsSession::new(
                NAME,
                rate,
                cmd_tx,
                ev_rx,
                TaskGuard::new(task),
            ))
        })
    }
}

enum Job {
    Speak(UtteranceId, String),
    Done(UtteranceId),
}

type Events = mpsc::Sender<Result<TtsEvent, TtsError>>;
type Running = (
    UtteranceId,
    tokio::task::JoinHandle<Result<Vec<i16>, EngineError>>,
);

/// One session's task: text in, sentences synthesized one at a time off the executor.
struct Synthesis {
    voice: Arc<Mutex<PiperVoice>>,
    native: u32,
    rate: u32,
    /// Text received but not yet cut into pieces, and whether a piece was already queued.
    pending: HashMap<UtteranceId, (String, bool)>,
    jobs: VecDeque<Job>,
    cancelled: HashSet<UtteranceId>,
}

impl Synthesis {
    fn new(voice: Arc<Mutex<PiperVoice>>, native: u32, rate: u32) -> Self {
        Synthesis {
            voice,
            native,
            rate,
            pending: HashMap::new(),
            jobs: VecDeque::new(),
            cancelled: HashSet::new(),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<TtsCommand>, events: Events) {
        let mut running: Option<Running> = None;
        loop {
            while running.is_none() {
                match self.jobs.pop_front() {
                    Some(Job::Done(id)) => {
                        if events.send(Ok(TtsEvent::Done { id })).await.is_err() {
                            return;
                        }
                    }
                    Some(Job::Speak(id, text)) => {
                        let voice = self.voice.clone();
                        let handle = tokio::task::spawn_blocking(move || match voice.lock() {
                            Ok(mut v) => v.synthesize(&text),
                            Err(_) => Err(EngineError::Run(
                                "the voice panicked on an earlier sentence".into(),
                            )),
                        });
                        running = Some((id, handle));
                    }
                    None => break,
                }
            }
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => return,
                },
                result = async { (&mut running.as_mut().expect("guarded by the branch condition").1).await }, if running.is_some() => {
                    let Some((id, _)) = running.take() else { continue };
                    if self.cancelled.contains(&id) {
                        continue;
                    }
                    let result = result.unwrap_or_else(|e| Err(EngineError::Run(format!("synthesis task: {e}"))));
                    let sent = match result {
                        Ok(samples) => self.deliver(id, samples, &events).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "Piper failed on a sentence.");
                            self.drop_utterance(id);
                            let error = TtsError::Provider { provider: NAME.into(), message: e.to_string() };
                            events.send(Ok(TtsEvent::Failed { id, error })).await.is_ok()
                        }
                    };
                    if !sent {
                        return;
                    }
                }
            }
        }
    }

    fn command(&mut self, cmd: TtsCommand) {
        match cmd {
            TtsCommand::Text { id, text } if !self.cancelled.contains(&id) => {
                let (buf, started) = self.pending.entry(id).or_default();
                buf.push_str(&text);
                for piece in take_ready(buf, !*started) {
                    *started = true;
                    self.jobs.push_back(Job::Speak(id, piece));
                }
            }
            TtsCommand::Finish { id } if !self.cancelled.contains(&id) => {
                if let Some((rest, _)) = self.pending.remove(&id) {
                    if !rest.trim().is_empty() {
                        self.jobs.push_back(Job::Speak(id, rest.trim().to_string()));
                    }
                }
                self.jobs.push_back(Job::Done(id));
            }
            TtsCommand::Cancel { id } => {
                self.cancelled.insert(id);
                self.drop_utterance(id);
            }
            _ => {}
        }
    }

    fn drop_utterance(&mut self, id: UtteranceId) {
        self.pending.remove(&id);
        self.jobs
            .retain(|j| !matches!(j, Job::Speak(j_id, _) | Job::Done(j_id) if *j_id == id));
    }

    /// Sends a sentence's audio in 100 ms chunks at the session's rate.
    async fn deliver(&self, id: UtteranceId, samples: Vec<i16>, events: &Events) -> bool {
        let samples = if self.rate == self.native {
            samples
        } else {
            callfleet_audio::resample(&samples, self.native, self.rate)
        };
        let chunk = (self.rate / 10).max(1) as usize;
        for part in samples.chunks(chunk) {
            if events
                .send(Ok(TtsEvent::Audio {
                    id,
                    samples: part.to_vec(),
                }))
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::testing::available;

    fn voice() -> Option<PiperVoice> {
        available(
            "Piper",
            PiperVoice::load(&crate::models_dir(), OnnxOptions::default()),
        )
    }

    fn tiny_config() -> PiperConfig {
        let json = r#"{"espeak": {"voice": "en-us"}, "audio": {"sample_rate": 22050},
            "inference": {"noise_scale": 0.5, "length_scale": 1.1, "noise_w": 0.7},
            "phoneme_id_map": {"_": [0], "^": [1], "$": [2], " ": [3], ",": [8], "h": [20], "ə": [59], "l": [24], "ˈ": [120], "o": [27], "ʊ": [100]}}"#;
        PiperConfig::parse(json).expect("valid")
    }

    #[test]
    fn phonemes_become_ids_with_bos_pads_and_eos() {
        let c = tiny_config();
        assert_eq!(
            (c.espeak_voice.as_str(), c.sample_rate, c.length_scale),
            ("en-us", 22050, 1.1)
        );
        let cases: [(&str, Vec<i64>); 3] = [
            (
                "həlˈoʊ",
                vec![1, 0, 20, 0, 59, 0, 24, 0, 120, 0, 27, 0, 100, 0, 2],
            ),
            ("h, h", vec![1, 0, 20, 0, 8, 0, 3, 0, 20, 0, 2]),
            // Unknown phonemes are skipped.
            ("hX", vec![1, 0, 20, 0, 2]),
        ];
        for (phonemes, want) in cases {
            assert_eq!(c.ids(phonemes), want, "{phonemes}");
        }
    }

    #[test]
    fn clause_punctuation_is_put_back() {
        let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases = [
            (
                "Hello, world!",
                lines(&["həlˈoʊ", "wˈɜːld"]),
                "həlˈoʊ, wˈɜːld!",
            ),
            ("How are you?", lines(&["hˌaʊ ɑːɹ juː"]), "hˌaʊ ɑːɹ juː?"),
            // espeak read "Dr." as a word, not a clause end: one line for two marks.
            (
                "Dr. Smith is here.",
                lines(&["dˈɑːktɚ smˈɪθ ɪz hˈɪɹ"]),
                "dˈɑːktɚ smˈɪθ ɪz hˈɪɹ.",
            ),
            ("Wait...", lines(&["wˈeɪt"]), "wˈeɪt."),
            ("no mark", lines(&["nˈoʊ mˈɑːɹk"]), "nˈoʊ mˈɑːɹk"),
        ];
        for (text, espeak, want) in cases {
            assert_eq!(join_clauses(text, &espeak), want, "{text}");
        }
    }

    #[test]
    fn text_is_cut_into_sentences_and_an_early_first_clause() {
        let cases: [(&str, bool, Vec<&str>, &str); 5] = [
            (
                "Hello there. How are",
                false,
                vec!["Hello there."],
                " How are",
            ),
            ("Sure, one moment", true, vec![], "Sure, one moment"),
            (
                "Of course I can help, let me look. Done! ",
                true,
                vec!["Of course I can help,", "let me look.", "Done!"],
                " ",
            ),
            (
                "Of course I can help, let me look",
                false,
                vec![],
                "Of course I can help, let me look",
            ),
            (
                "It costs 5.50 dollars",
                false,
                vec![],
                "It costs 5.50 dollars",
            ),
        ];
        for (text, first, want, rest) in cases {
            let mut buf = text.to_string();
            assert_eq!(take_ready(&mut buf, first), want, "{text}");
            assert_eq!(buf, rest, "{text}");
        }
    }

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
    }

    #[test]
    fn a_sentence_sounds_like_speech_of_plausible_length() {
        let Some(mut voice) = voice() else { return };
        let text = "Hello, this is the local voice of the call fleet.";
        let phonemes = voice.phonemize(text).expect("espeak-ng runs");
        assert!(
            phonemes.contains(',') && phonemes.ends_with('.'),
            "{phonemes}"
        );
        let audio = voice.synthesize(text).expect("runs");
        let secs = audio.len() as f64 / voice.sample_rate() as f64;
        let level = rms(&audio);
        let clipped = audio.iter().filter(|s| s.unsigned_abs() >= 32767).count();
        // Quiet stretches (pauses) and loud ones (words) both exist.
        let windows: Vec<f64> = audio.chunks(441).map(rms).collect();
        let quiet = windows.iter().filter(|&&r| r < 200.0).count();
        let loud = windows.iter().filter(|&&r| r > 1500.0).count();
        eprintln!("piper: {secs:.2} s, rms {level:.0}, {clipped} clipped, {quiet}/{} quiet and {loud} loud 20 ms windows", windows.len());
        // ~10 words: 2–5 s at a conversational pace.
        assert!((2.0..5.0).contains(&secs), "{secs} s");
        assert!(level > 1000.0, "rms {level}");
        assert!(clipped < audio.len() / 1000, "{clipped} clipped samples");
        assert!(
            quiet > 0 && loud > windows.len() / 4,
            "quiet {quiet}, loud {loud} of {}",
            windows.len()
        );
    }

    async fn collect_until_done(session: &mut TtsSession, id: UtteranceId) -> Vec<TtsEvent> {
        let mut events = Vec::new();
        loop {
            let ev = tokio::time::timeout(std::time::Duration::from_secs(60), session.recv())
                .await
                .expect("no hang")
                .expect("open")
                .expect("ok");
            let done = ev == TtsEvent::Done { id };
            events.push(ev);
            if done {
                return events;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_streams_sentences_cancels_and_reports_its_rate() {
        let Some(voice) = voice() else { return };
        let tts = PiperTts::new(voice);
        let mut session = tts
            .open(TtsOptions {
                sample_rate: 16_000,
                ..TtsOptions::default()
            })
            .await
            .expect("opens");
        assert_eq!(session.sample_rate(), 16_000);

        // Cancelled at once: nothing of it is delivered.
        let cancelled = session.start();
        session
            .push_text(
                cancelled,
                "This sentence is cancelled before it is heard. And this one too.",
            )
            .unwrap();
        session.cancel(cancelled).unwrap();

        let id = session.start();
        session.push_text(id, "Thank you for calling. ").unwrap();
        session.push_text(id, "How can I help").unwrap();
        session.push_text(id, " you today?").unwrap();
        session.finish(id).unwrap();
        let events = collect_until_done(&mut session, id).await;
        let audio: Vec<i16> = events
            .iter()
            .filter_map(|e| match e {
                TtsEvent::Audio { id: got, samples } => {
                    assert_eq!(*got, id, "audio of a cancelled utterance");
                    Some(samples.clone())
                }
                _ => None,
            })
            .flatten()
            .collect();
        let secs = audio.len() as f64 / 16_000.0;
        eprintln!("piper session: {secs:.2} s in {} events", events.len());
        assert!((1.5..5.0).contains(&secs), "{secs} s");
        assert!(rms(&audio) > 1000.0);
    }
}
