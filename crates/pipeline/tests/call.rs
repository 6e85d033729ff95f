//! Whole calls through the pipeline against the protocol-exact fakes: speech in → reply audio
//! out, barge-in mid-reply, a provider dying mid-stream, everything failing, silence.
//! These run on the real clock (the fakes are real sockets); the timing rules themselves are
//! tested on a paused clock in `turn` and in `paced.rs`.

use callfleet_core::domain::Speaker;
use callfleet_core::secret::Secret;
use callfleet_pipeline::runtime::CallEnd;
use callfleet_pipeline::*;
use callfleet_providers::cartesia::CartesiaTts;
use callfleet_providers::deepgram::DeepgramStt;
use callfleet_providers::elevenlabs::ElevenLabsTts;
use callfleet_providers::ollama::Ollama;
use callfleet_providers::{Backoff, FallbackTts, LanguageModel, TextToSpeech};
use callfleet_testkit::audio::{silence, speech};
use callfleet_testkit::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

fn key() -> Secret {
    Secret::new(TEST_KEY)
}

/// A caller that streams silence in real time and speaks when told.
struct Caller {
    say: mpsc::UnboundedSender<Vec<i16>>,
    task: tokio::task::JoinHandle<()>,
}

impl Caller {
    fn start(input: mpsc::Sender<CallInput>) -> Self {
        let (say, mut said) = mpsc::unbounded_channel::<Vec<i16>>();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut pending: std::collections::VecDeque<i16> = Default::default();
            loop {
                tick.tick().await;
                while let Ok(s) = said.try_recv() {
                    pending.extend(s);
                }
                let frame: Vec<i16> = if pending.len() >= 320 {
                    pending.drain(..320).collect()
                } else {
                    silence(20, 16000)
                };
                if input.send(CallInput::Audio(frame)).await.is_err() {
                    return;
                }
            }
        });
        Caller { say, task }
    }

    fn speak(&self, ms: u32) {
        let _ = self.say.send(speech(ms, 16000));
    }
}

#[derive(Default)]
struct Heard {
    frames: usize,
    clears: usize,
    transcript: Vec<(Speaker, String, bool)>,
    events: Vec<(Instant, String)>,
    /// The agent's states, in order.
    states: Vec<&'static str>,
    /// The recognizer's words as they came: (text, final).
    words: Vec<(String, bool)>,
    /// The agent's words as they were played.
    saying: Vec<String>,
}

fn collect(mut output: mpsc::Receiver<CallOutput>) -> Arc<Mutex<Heard>> {
    let heard = Arc::new(Mutex::new(Heard::default()));
    let h = heard.clone();
    tokio::spawn(async move {
        while let Some(out) = output.recv().await {
            let mut h = h.lock().unwrap();
            let now = Instant::now();
            match out {
                CallOutput::Audio(f) => {
                    assert_eq!(f.len(), 320);
                    h.frames += 1;
                }
                CallOutput::Clear => {
                    h.clears += 1;
                    h.events.push((now, "clear".into()));
                }
                CallOutput::Transcript(t) => {
                    h.events.push((now, format!("{:?}: {}", t.speaker, t.text)));
                    h.transcript.push((t.speaker, t.text, t.interrupted));
                }
                CallOutput::Metrics(_) => {}
                CallOutput::State(state) => h.states.push(state.as_str()),
                CallOutput::Heard { text, is_final } => h.words.push((text, is_final)),
                CallOutput::Saying(words) => h.saying.push(words),
            }
        }
    });
    heard
}

struct Fakes {
    stt: FakeDeepgram,
    tts: FakeCartesia,
    llm: FakeOllama,
}

async fn fakes(transcripts: &[&str]) -> Fakes {
    Fakes {
        stt: FakeDeepgram::start(SttScript {
            transcripts: transcripts.iter().map(|s| s.to_string()).collect(),
            ..SttScript::default()
        })
        .await,
        tts: FakeCartesia::start().await,
        llm: FakeOllama::start().await,
    }
}

fn config() -> PipelineConfig {
    let mut c = PipelineConfig::new("test-bot");
    c.stt.endpointing_ms = 200;
    c.turn.silence_timeout = Duration::from_secs(30);
    c
}

struct Running {
    caller: Caller,
    heard: Arc<Mutex<Heard>>,
    input: mpsc::Sender<CallInput>,
    call: tokio::task::JoinHandle<Result<CallReport, PipelineError>>,
}

fn start_call(
    config: PipelineConfig,
    tts: Arc<dyn TextToSpeech>,
    f: &Fakes,
    llm: Arc<dyn LanguageModel>,
) -> Running {
    let stt = Arc::new(DeepgramStt::new(key()).with_base_url(f.stt.url()));
    let pipeline = Pipeline::new(config, Providers { stt, tts });
    let responder = Box::new(LlmResponder::new(
        llm,
        "You are a receptionist.",
        "Hello, how can I help?",
        "en",
    ));
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, out_rx) = mpsc::channel(64);
    let heard = collect(out_rx);
    let call = tokio::spawn(pipeline.run(responder, in_rx, out_tx));
    Running {
        caller: Caller::start(in_tx.clone()),
        heard,
        input: in_tx,
        call,
    }
}

impl Running {
    async fn wait_for(&self, what: impl Fn(&Heard) -> bool, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !what(&self.heard.lock().unwrap()) {
            assert!(
                Instant::now() < deadline,
                "timed out; events: {:?}",
                self.heard.lock().unwrap().events
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn hang_up(self) -> CallReport {
        self.caller.task.abort();
        let _ = self.input.send(CallInput::Hangup).await;
        tokio::time::timeout(Duration::from_secs(5), self.call)
            .await
            .expect("the call ends")
            .unwrap()
            .unwrap()
    }
}

fn cartesia(f: &Fakes) -> Arc<dyn TextToSpeech> {
    Arc::new(CartesiaTts::new(key()).with_base_url(f.tts.url()))
}

fn ollama(f: &Fakes) -> Arc<dyn LanguageModel> {
    Arc::new(Ollama::new(f.llm.url(), "m").with_backoff(Backoff::NONE))
}

#[tokio::test]
async fn speech_in_reply_audio_out() {
    let f = fakes(&["what time do you open"]).await;
    let call = start_call(config(), cartesia(&f), &f, ollama(&f));
    call.wait_for(|h| h.transcript.len() == 1, 5).await;
    let greeting_frames = call.heard.lock().unwrap().frames;
    // "Hello, how can I help?" is 18 letters × 70 ms.
    assert_eq!(greeting_frames, 18 * 70 / 20);
    call.caller.speak(600);
    call.wait_for(|h| h.transcript.len() == 3, 8).await;
    let call_heard = call.heard.clone();
    let report = call.hang_up().await;
    let t: Vec<(Speaker, &str)> = report
        .transcript
        .iter()
        .map(|t| (t.speaker, t.text.as_str()))
        .collect();
    assert_eq!(
        t,
        vec![
            (Speaker::Bot, "Hello, how can I help?"),
            (Speaker::User, "what time do you open"),
            (Speaker::Bot, "You said: what time do you open.")
        ]
    );
    assert_eq!(report.end, CallEnd::CallerHungUp);
    let heard = call_heard.lock().unwrap();
    // The greeting, then the turn: listening → thinking → speaking → listening.
    assert_eq!(
        heard.states,
        [
            "listening",
            "speaking",
            "listening",
            "thinking",
            "speaking",
            "listening"
        ]
    );
    // The caller's words live: interims growing word by word, then the final (a flush answered
    // after it is an empty final).
    let words: Vec<(String, bool)> = heard
        .words
        .iter()
        .filter(|(text, _)| !text.is_empty())
        .cloned()
        .collect();
    let (last, interims) = words.split_last().expect("words were heard");
    assert_eq!(last, &("what time do you open".to_string(), true));
    assert!(!interims.is_empty(), "{:?}", heard.words);
    for (text, is_final) in interims {
        assert!(
            !is_final && "what time do you open".starts_with(text.as_str()),
            "{text}"
        );
    }
    // The agent's words as they played, a few at a time: together, both utterances whole.
    assert!(heard.saying.len() > 4, "{:?}", heard.saying);
    assert_eq!(
        heard.saying.concat(),
        "Hello, how can I help?You said: what time do you open."
    );
    let m = &report.metrics[0];
    assert!(
        m.voice_to_voice_ms.is_some()
            && m.llm_first_token_ms.is_some()
            && m.tts_first_byte_ms.is_some(),
        "{m:?}"
    );
    // One connection each for the whole call, opened at its start.
    assert_eq!((f.stt.log().connections, f.tts.log().connections), (1, 1));
    // The LLM heard the conversation so far.
    let req = &f.llm.requests()[0];
    assert_eq!(req["messages"][1]["content"], "Hello, how can I help?");
}

/// Chat typed during a voice call is a turn of its own: the greeting being spoken stops for it,
/// as if the caller had spoken over it, and the answer is spoken.
#[tokio::test]
async fn typed_text_cuts_the_agent_off_and_is_answered_by_voice() {
    let f = fakes(&[]).await;
    let call = start_call(config(), cartesia(&f), &f, ollama(&f));
    call.wait_for(|h| h.frames > 10, 5).await;
    call.input
        .send(CallInput::Text("what time do you open".into()))
        .await
        .unwrap();
    call.wait_for(|h| h.transcript.len() == 3, 8).await;
    let heard = call.heard.clone();
    let report = call.hang_up().await;
    let t: Vec<(Speaker, &str, bool)> = report
        .transcript
        .iter()
        .map(|t| (t.speaker, t.text.as_str(), t.interrupted))
        .collect();
    assert_eq!(t[0].0, Speaker::Bot);
    assert!(
        t[0].2 && "Hello, how can I help?".starts_with(t[0].1),
        "{t:?}"
    );
    assert_eq!(
        t[1..],
        [
            (Speaker::User, "what time do you open", false),
            (Speaker::Bot, "You said: what time do you open.", false)
        ]
    );
    let heard = heard.lock().unwrap();
    assert_eq!(heard.clears, 1);
    assert_eq!(
        heard.states,
        [
            "listening",
            "speaking",
            "listening",
            "thinking",
            "speaking",
            "listening"
        ]
    );
    assert!(
        heard.words.is_empty(),
        "nothing was heard: {:?}",
        heard.words
    );
}

#[tokio::test]
async fn barge_in_mid_reply_cancels_and_records_what_was_heard() {
    let f = fakes(&["tell me everything", "stop please"]).await;
    let long = "Our clinic opens at nine. We have five doctors on staff. Parking is free for patients. We also offer online visits every evening.";
    f.llm
        .push_reply(LlmReply::text(long).delays(Duration::ZERO, Duration::from_millis(10)));
    // Synthesis about as fast as speech, so the context is still open when the caller cuts in.
    f.tts
        .update_script(|s| s.chunk_interval = Duration::from_millis(90));
    let call = start_call(config(), cartesia(&f), &f, ollama(&f));
    call.wait_for(|h| h.transcript.len() == 1, 5).await;
    call.caller.speak(500);
    call.wait_for(|h| h.transcript.len() == 2, 5).await;
    // Let about a second of the reply play, then talk over it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    call.caller.speak(900);
    call.wait_for(|h| h.clears == 1, 5).await;
    call.wait_for(|h| h.transcript.len() == 5, 8).await;
    let call_heard = call.heard.clone();
    let report = call.hang_up().await;
    let bot = &report.transcript[2];
    assert!(bot.interrupted, "{bot:?}");
    assert!(
        !bot.text.is_empty() && long.starts_with(&bot.text) && bot.text.len() < long.len() / 2,
        "{:?}",
        bot.text
    );
    // What was shown of the reply as it played is what the caller is recorded as hearing.
    let shown = call_heard.lock().unwrap().saying.concat();
    let reply_shown = shown
        .strip_prefix("Hello, how can I help?")
        .and_then(|s| s.strip_suffix("You said: stop please."))
        .expect("the greeting first, the last reply last");
    assert!(
        !reply_shown.is_empty() && bot.text.starts_with(reply_shown),
        "{reply_shown:?} / {:?}",
        bot.text
    );
    assert_eq!(report.transcript[3].text, "stop please");
    assert_eq!(report.transcript[4].text, "You said: stop please.");
    assert_eq!(f.tts.log().cancels.len(), 1);
}

#[tokio::test]
async fn a_cough_over_the_reply_resumes_it() {
    // The cough is loud enough to interrupt but has no words.
    let f = fakes(&["tell me", ""]).await;
    let long =
        "Our clinic opens at nine. We have five doctors on staff. Parking is free for patients.";
    f.llm.push_reply(LlmReply::text(long));
    let mut cfg = config();
    cfg.turn.false_interruption_timeout = Duration::from_millis(600);
    let call = start_call(cfg, cartesia(&f), &f, ollama(&f));
    call.wait_for(|h| h.transcript.len() == 1, 5).await;
    call.caller.speak(500);
    call.wait_for(|h| h.transcript.len() == 2, 5).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    call.caller.speak(700);
    call.wait_for(|h| h.clears == 1, 5).await;
    call.wait_for(|h| h.transcript.len() == 4, 8).await;
    let report = call.hang_up().await;
    let (cut, resumed) = (&report.transcript[2], &report.transcript[3]);
    assert!(cut.interrupted);
    assert!(!resumed.interrupted);
    assert_eq!(format!("{} {}", cut.text, resumed.text), long);
}

#[tokio::test]
async fn tts_dying_mid_reply_falls_back_and_the_reply_is_finished() {
    let f = fakes(&["hello"]).await;
    let eleven = FakeElevenLabs::start().await;
    let tts: Arc<dyn TextToSpeech> = Arc::new(FallbackTts::new(vec![
        Arc::new(
            CartesiaTts::new(key())
                .with_base_url(f.tts.url())
                .with_backoff(Backoff::NONE),
        ),
        Arc::new(ElevenLabsTts::new(key()).with_base_url(eleven.url())),
    ]));
    let reply = "Thanks for calling, we are open from nine to nine every day.";
    f.llm.push_reply(LlmReply::text(reply));
    let call = start_call(config(), tts, &f, ollama(&f));
    call.wait_for(|h| h.transcript.len() == 1, 5).await;
    // Cartesia dies two chunks into the reply and stays down.
    let sent = f.tts.log().chunks_sent;
    f.tts
        .update_script(|s| s.disconnect_after_chunks = Some(sent + 2));
    f.tts.refuse_next(100);
    call.caller.speak(500);
    call.wait_for(|h| h.transcript.len() == 3, 8).await;
    let report = call.hang_up().await;
    assert_eq!(report.transcript[2].text, reply);
    assert!(!report.transcript[2].interrupted);
    let said_by_eleven = eleven
        .log()
        .texts
        .iter()
        .map(|(_, t)| t.clone())
        .collect::<String>();
    assert!(
        !said_by_eleven.is_empty() && reply.contains(said_by_eleven.trim()),
        "{said_by_eleven:?}"
    );
}

#[tokio::test]
async fn when_the_llm_fails_the_caller_hears_the_apology() {
    let f = fakes(&["hello"]).await;
    f.llm
        .push_reply(LlmReply::text("x").failing(LlmFailure::Status(500, "down".into())));
    let call = start_call(config(), cartesia(&f), &f, ollama(&f));
    call.wait_for(|h| h.transcript.len() == 1, 5).await;
    call.caller.speak(500);
    call.wait_for(|h| h.transcript.len() == 3, 8).await;
    let report = call.hang_up().await;
    assert_eq!(report.transcript[2].text, phrases::apology("en"));
    // The apology was synthesized at call start, so its audio came from the cache.
    let texts: Vec<String> = f.tts.log().texts.into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.as_str() == phrases::apology("en"))
            .count(),
        1
    );
}

#[tokio::test]
async fn silence_reprompts_then_ends_the_call() {
    let f = fakes(&[]).await;
    let mut cfg = config();
    cfg.turn.silence_timeout = Duration::from_millis(400);
    let call = start_call(cfg, cartesia(&f), &f, ollama(&f));
    let report = tokio::time::timeout(Duration::from_secs(10), call.call)
        .await
        .expect("the bot hangs up")
        .unwrap()
        .unwrap();
    call.caller.task.abort();
    assert_eq!(report.end, CallEnd::SilenceTimeout);
    let said: Vec<&str> = report.transcript.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        said,
        vec![
            "Hello, how can I help?",
            phrases::reprompt("en"),
            phrases::goodbye("en")
        ]
    );
}

#[tokio::test]
async fn the_greeting_is_synthesized_once_per_bot_and_voice() {
    let f = fakes(&[]).await;
    let cache = PhraseCache::new();
    for _ in 0..2 {
        let stt = Arc::new(DeepgramStt::new(key()).with_base_url(f.stt.url()));
        let pipeline = Pipeline::new(
            config(),
            Providers {
                stt,
                tts: cartesia(&f),
            },
        )
        .with_phrase_cache(cache.clone());
        let responder = Box::new(LlmResponder::new(
            ollama(&f),
            "",
            "Hello, how can I help?",
            "en",
        ));
        let (in_tx, in_rx) = mpsc::channel(64);
        let (out_tx, out_rx) = mpsc::channel(64);
        let heard = collect(out_rx);
        let call = tokio::spawn(pipeline.run(responder, in_rx, out_tx));
        while heard.lock().unwrap().transcript.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        in_tx.send(CallInput::Hangup).await.unwrap();
        call.await.unwrap().unwrap();
    }
    let greetings = f
        .tts
        .log()
        .texts
        .iter()
        .filter(|(_, t)| t == "Hello, how can I help?")
        .count();
    assert_eq!(greetings, 1);
}

/// The agent prepares the opening while it joins the room: the call then says it from the
/// cache, whole, without asking the synthesizer again.
#[tokio::test]
async fn an_opening_prepared_before_the_call_is_said_without_another_synthesis() {
    let f = fakes(&[]).await;
    let cache = PhraseCache::new();
    let pipeline = |tts: Arc<dyn TextToSpeech>| {
        let stt = Arc::new(DeepgramStt::new(key()).with_base_url(f.stt.url()));
        Pipeline::new(config(), Providers { stt, tts }).with_phrase_cache(cache.clone())
    };
    let greeting = "Hello, how can I help?";
    let cached = PhraseCache::key("test-bot", None, config().output_rate, greeting);

    // A synthesizer that is down prepares nothing, and says so by leaving the cache alone.
    let down = Arc::new(CartesiaTts::new(key()).with_base_url("http://127.0.0.1:9"));
    pipeline(down).prepare_phrase(greeting.into()).await;
    assert!(cache.get(&cached).is_none());

    let p = pipeline(cartesia(&f));
    p.prepare_phrase(greeting.into()).await;
    let prepared = cache.get(&cached).expect("the opening is in the cache");
    assert_eq!(
        prepared.len(),
        18 * 70 * config().output_rate as usize / 1000
    );
    // Prepared twice (a second call of the same bot): the cache answers, not the synthesizer.
    p.prepare_phrase(greeting.into()).await;

    let responder = Box::new(LlmResponder::new(ollama(&f), "", greeting, "en"));
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, out_rx) = mpsc::channel(64);
    let heard = collect(out_rx);
    let call = tokio::spawn(p.run(responder, in_rx, out_tx));
    let caller = Caller::start(in_tx.clone());
    while heard.lock().unwrap().transcript.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    in_tx.send(CallInput::Hangup).await.unwrap();
    call.await.unwrap().unwrap();
    caller.task.abort();
    assert_eq!(heard.lock().unwrap().frames, 18 * 70 / 20);
    // (The fake logs text per context id, and each connection numbers its contexts from 1.)
    let synthesized = f
        .tts
        .log()
        .texts
        .iter()
        .map(|(_, t)| t.matches(greeting).count())
        .sum::<usize>();
    assert_eq!(
        synthesized, 1,
        "only the preparation asked for the greeting"
    );
}
