//! A phone call through the whole fleet and a real livekit-sip: testkit's `SipStack` (Redis,
//! livekit-server with its webhooks pointed at the dispatcher, livekit-sip), `callfleet api` and
//! `callfleet dispatcher` with LiveKit SIP provisioning on, one `callfleet agent` (fake Deepgram for
//! the caller's words, espeak-ng as the bot's voice), and the phone: sipp for the SIP signalling
//! and testkit's `RtpPhone` for G.711 media, speaking espeak-ng speech at 8 kHz and recording
//! what it hears.
//!
//! Routing a number to the bot through the API provisions its trunk and dispatch rule; the call
//! to that number reaches the bot; the phone hears the greeting and the reply to what it said —
//! checked by recognising the recording with Whisper, not by "some audio came" — a phone number
//! keyed in (RFC 4733) fills the field asked for, and the stored call says inbound, from the
//! caller's number, to the called number. A bot that ends a call hangs the phone up.
//!
//! Needs `scripts/sip-test-env.sh` (livekit-sip, sipp), espeak-ng and the Whisper tiny.en model
//! (`scripts/fetch-models.sh`); `scripts/test` sets them up.

mod support;

use callfleet_local_engines::{WhisperConfig, WhisperModel, WhisperStt};
use callfleet_testkit::sip::{
    free_tcp_port, free_udp_tcp_port, scenario, RtpPhone, SipBinaries, SipStack, SipStackOptions,
    Sipp,
};
use callfleet_testkit::{FakeDeepgram, SttScript, TEST_KEY};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::caller::espeak_wav;
use support::{company_with_bot, Env, Proc, Stack, TestDir};

const CALLED: &str = "+15550100";
const CALLER: &str = "+15550199";
/// Who outbound calls call.
const CALLEE: &str = "+15550300";

/// What the caller says; the fake recognizer hears each stretch of speech as the next line.
const LINES: [&str; 4] = [
    "I would like to book an appointment",
    "Anna Smith",
    "general practice",
    "next Monday at 10 am",
];

/// Then the phone number asked for is keyed in (RFC 4733 through livekit-sip), `#` ending it.
const KEYED: &str = "0014155550100#";

/// The stretch of speech in `samples` (8 kHz) that starts at or after `from` and is followed by
/// `quiet_ms` of silence; `None` while it has not ended yet.
fn utterance(samples: &[i16], from: usize, quiet_ms: usize) -> Option<(usize, usize)> {
    let frame = 160;
    let loud = |chunk: &[i16]| {
        let energy: f64 = chunk.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (energy / chunk.len() as f64).sqrt() > 300.0
    };
    let frames: Vec<bool> = samples[from.min(samples.len())..]
        .chunks(frame)
        .map(loud)
        .collect();
    let start = frames.iter().position(|&l| l)?;
    let quiet_frames = quiet_ms / 20;
    let mut last_loud = start;
    for (i, &l) in frames.iter().enumerate().skip(start) {
        if l {
            last_loud = i;
        } else if i - last_loud >= quiet_frames {
            return Some((from + start * frame, from + (last_loud + 1) * frame));
        }
    }
    None
}

/// Waits (up to `limit`) for the next utterance the phone hears after sample `from`.
fn next_utterance(phone: &RtpPhone, from: usize, limit: Duration) -> Option<(usize, usize)> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(found) = utterance(&phone.samples(), from, 900) {
            return Some(found);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn recognise(whisper: &WhisperStt, samples_8k: &[i16]) -> String {
    let wide = callfleet_audio::resample(samples_8k, 8000, 16000);
    whisper
        .transcribe(WhisperModel::TinyEn, &wide, Some("en"), 2)
        .expect("whisper transcribes")
        .text
        .to_lowercase()
}

fn words_in(text: &str, words: &[&str]) -> usize {
    words.iter().filter(|w| text.contains(*w)).count()
}

/// SIP end-to-end tests run one at a time: each starts a whole stack on two shared cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A SIP stack, the fleet around it and a bot with `CALLED` routed to it.
struct Fleet {
    _serial: std::sync::MutexGuard<'static, ()>,
    runtime: tokio::runtime::Runtime,
    bins: SipBinaries,
    stack: SipStack,
    dir: TestDir,
    base: String,
    key: String,
    bot_id: String,
    /// The API and the dispatcher.
    _fleet: Stack,
    /// The agent workers (`agent`, then `agent-1`, …) and their processes.
    agents: Vec<(String, Proc)>,
    _stt: FakeDeepgram,
}

impl Fleet {
    /// `None` (after a note; a panic under CI) when a piece is missing.
    fn start(test: &str, bot_extra: &str, lines: &[&str]) -> Option<Fleet> {
        Fleet::start_with(test, bot_extra, lines, 1)
    }

    fn start_with(test: &str, bot_extra: &str, lines: &[&str], workers: usize) -> Option<Fleet> {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let bins = match SipBinaries::from_env() {
            Ok(bins) => bins,
            Err(missing) => return support::missing(test, &missing),
        };
        if std::process::Command::new("espeak-ng")
            .arg("--version")
            .output()
            .is_err()
        {
            return support::missing(test, "espeak-ng is not installed");
        }
        let dir = TestDir::new();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dispatcher_port = free_tcp_port();
        let stack = runtime.block_on(SipStack::start(
            &bins,
            SipStackOptions {
                webhook_url: Some(format!(
                    "http://127.0.0.1:{dispatcher_port}/livekit/webhook"
                )),
            },
        ));
        let stt = runtime.block_on(FakeDeepgram::start(SttScript {
            transcripts: lines.iter().map(|l| l.to_string()).collect(),
            ..SttScript::default()
        }));
        let env = Env {
            redis: stack.redis_url.clone(),
            livekit: stack.ws_url.clone(),
            python: PathBuf::new(),
        };
        let livekit = [
            ("LIVEKIT_API_KEY", stack.api_key.clone()),
            ("LIVEKIT_API_SECRET", stack.api_secret.clone()),
            ("CALLFLEET_LIVEKIT_SIP", "1".to_string()),
        ];
        let agent_env: Vec<(&str, String)> = livekit
            .iter()
            .cloned()
            .chain([
                ("DEEPGRAM_API_KEY", TEST_KEY.to_string()),
                ("DEEPGRAM_URL", stt.url()),
                ("CALLFLEET_VAD", "energy".to_string()),
            ])
            .collect();
        let dispatcher_addr = format!("127.0.0.1:{dispatcher_port}");
        let fleet = Stack::start(&env, dir.path(), "cfsip", &dispatcher_addr, &livekit);
        let base = fleet.base.clone();
        let log = |name: &str| fleet.log(name);
        let ids: Vec<String> = (0..workers).map(|i| format!("w-sip-{i}")).collect();
        let agents: Vec<(String, Proc)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let name = if i == 0 {
                    "agent".to_string()
                } else {
                    format!("agent-{i}")
                };
                let args = ["agent", "--worker-id", id, "--capacity", "4"];
                let proc = fleet.spawn(&name, &args, &agent_env);
                (name, proc)
            })
            .collect();
        fleet.wait_workers(
            &ids.iter().map(String::as_str).collect::<Vec<_>>(),
            Duration::from_secs(30),
        );

        let http = reqwest::blocking::Client::new();
        let clinic = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots/clinic-en.yaml"),
        )
        .unwrap();
        let config = format!(
            "{clinic}\n{bot_extra}providers:\n  stt: {{provider: deepgram}}\n  tts: {{provider: espeak}}\n"
        );
        let (key, bot_id) = company_with_bot(&http, &base, &config);
        // The admin key gives the number to the bot's company and routes it: that provisions the
        // inbound trunk and dispatch rule in LiveKit.
        let routed = http
            .post(format!("{base}/bots/{bot_id}/phone-numbers"))
            .bearer_auth("e2e-admin")
            .json(&serde_json::json!({"number": CALLED}))
            .send()
            .unwrap();
        assert_eq!(
            routed.status(),
            201,
            "{}\n{}",
            routed.text().unwrap_or_default(),
            std::fs::read_to_string(log("api")).unwrap_or_default()
        );
        Some(Fleet {
            _serial: serial,
            runtime,
            bins,
            stack,
            dir,
            base,
            key,
            bot_id,
            _fleet: fleet,
            agents,
            _stt: stt,
        })
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn logs(&self) -> String {
        format!(
            "{}\n--- sipp\n{}\n--- dispatcher\n{}\n{}",
            self.stack.log_tail("livekit-sip", 20),
            std::fs::read_to_string(self.log("sipp")).unwrap_or_default(),
            std::fs::read_to_string(self.log("dispatcher")).unwrap_or_default(),
            self.agents
                .iter()
                .map(|(name, _)| format!(
                    "--- {name}\n{}",
                    std::fs::read_to_string(self.log(name)).unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// Calls `CALLED` from `CALLER` with the sipp `scenario`; the phone's media is `phone`.
    fn call(&self, scenario_name: &str, phone: &RtpPhone, extra: &[&str]) -> tokio::process::Child {
        let _guard = self.runtime.enter();
        let mut sipp = Sipp::new(
            &self.bins,
            &scenario(scenario_name),
            self.stack.sip_port,
            free_udp_tcp_port(),
            CALLED,
        )
        .set("caller", CALLER)
        .set("rtp_port", &phone.port.to_string())
        .trace(&self.log("sipp"));
        for arg in extra {
            sipp = sipp.arg(arg);
        }
        sipp.spawn()
    }

    /// The bot's first stored call, once post-call processing has stored it.
    /// The bot's outbound calls as `GET /calls` lists them.
    fn outbound_calls(&self) -> Vec<serde_json::Value> {
        let page: serde_json::Value = reqwest::blocking::Client::new()
            .get(format!(
                "{}/calls?bot_id={}&direction=outbound",
                self.base, self.bot_id
            ))
            .bearer_auth(&self.key)
            .send()
            .unwrap()
            .json()
            .unwrap();
        page["calls"].as_array().cloned().unwrap_or_default()
    }

    /// `GET /calls/{id}` once `ready` holds for it; panics with the logs after 60 s.
    fn call_when(&self, id: &str, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let http = reqwest::blocking::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let reply = http
                .get(format!("{}/calls/{id}", self.base))
                .bearer_auth(&self.key)
                .send()
                .unwrap();
            if reply.status() == 200 {
                let call: serde_json::Value = reply.json().unwrap();
                if ready(&call) {
                    return call;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "call {id} never got there:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn stored_call(&self) -> serde_json::Value {
        let http = reqwest::blocking::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let call = loop {
            let page: serde_json::Value = http
                .get(format!("{}/calls?bot_id={}", self.base, self.bot_id))
                .bearer_auth(&self.key)
                .send()
                .unwrap()
                .json()
                .unwrap();
            if let Some(call) = page["calls"].as_array().and_then(|c| c.first()) {
                break call.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the call was never stored:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        };
        http.get(format!(
            "{}/calls/{}",
            self.base,
            call["id"].as_str().unwrap()
        ))
        .bearer_auth(&self.key)
        .send()
        .unwrap()
        .json()
        .unwrap()
    }
}

fn whisper(test: &str) -> Option<WhisperStt> {
    let whisper = WhisperStt::new(WhisperConfig::new(callfleet_local_engines::models_dir()));
    if whisper.load(WhisperModel::TinyEn).is_err() {
        return support::missing(test, "the Whisper tiny.en model is not fetched");
    }
    Some(whisper)
}

#[test]
fn a_phone_call_reaches_its_bot_through_livekit_sip() {
    let test = "SIP fleet end-to-end";
    let Some(whisper) = whisper(test) else { return };
    let Some(fleet) = Fleet::start(test, "silence_timeout_sec: 60\n", &LINES) else {
        return;
    };
    let speech_wav = fleet.dir.path().join("caller.wav");
    assert!(espeak_wav(&speech_wav, LINES[0]));
    let speech = callfleet_audio::wav::read(&speech_wav).expect("espeak's WAV");
    let speech_8k = callfleet_audio::resample(&speech.samples, speech.sample_rate, 8000);
    let runtime = &fleet.runtime;
    let phone = runtime.block_on(RtpPhone::bind());
    // The phone hangs up 75 s after the answer.
    let mut sipp = fleet.call("caller_hangs_up", &phone, &["-d", "75000"]);
    let logs = || fleet.logs();
    // The greeting, heard on the phone.
    let limit = Duration::from_secs(40);
    let (start, end) = next_utterance(&phone, 0, limit).unwrap_or_else(|| {
        panic!(
            "the phone heard no greeting ({} RTP packets):\n{}",
            phone.packets(),
            logs()
        )
    });
    let heard = phone.samples();
    let greeting = recognise(&whisper, &heard[start..end]);
    // The recording starts with livekit-sip's first packet, sent once it answered: the greeting's
    // offset in it is how long after the 200 OK the caller heard the bot (a figure, not a check).
    eprintln!(
        "the phone heard the greeting {} ms after the answer, as: {greeting}",
        start / 8
    );
    assert!(
        words_in(&greeting, &["riverside", "clinic", "help", "reached"]) >= 2,
        "greeting heard as {greeting:?}"
    );

    // The caller speaks (8 kHz PCMA); the bot's reply is heard, each time.
    for (i, line) in LINES.iter().enumerate() {
        runtime.block_on(phone.play(&speech_8k));
        let spoke_until = phone.samples().len();
        let (start, end) = next_utterance(&phone, spoke_until, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("the phone heard no reply to {line:?}:\n{}", logs()));
        if i == 0 {
            let heard = phone.samples();
            let reply = recognise(&whisper, &heard[start..end]);
            eprintln!("the phone heard the reply as: {reply}");
            assert!(
                words_in(&reply, &["patient", "full name", "name"]) >= 2,
                "reply heard as {reply:?}"
            );
        }
    }
    // The phone number, keyed in: the bot moves on (speaks again).
    let keyed_at = phone.samples().len();
    runtime.block_on(phone.press(KEYED));
    next_utterance(&phone, keyed_at, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the phone heard nothing after its keys:\n{}", logs()));

    // The phone hangs up: the agent leaves at once (else the silence re-prompt would follow)
    // and the call is stored as an inbound call from the caller to the number.
    let status = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(120), sipp.wait()).await })
        .expect("the phone hangs up")
        .expect("sipp ran");
    assert!(status.success(), "sipp: {status}\n{}", logs());
    let detail = fleet.stored_call();
    assert_eq!(detail["direction"], "inbound", "{detail}");
    assert_eq!(detail["from_number"], CALLER, "{detail}");
    assert_eq!(detail["to_number"], CALLED, "{detail}");
    let users: Vec<&str> = detail["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["speaker"] == "user")
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(users[..LINES.len()], LINES, "{detail}");
    assert_eq!(detail["fields"]["patient_name"], "Anna Smith", "{detail}");
    assert_eq!(
        detail["fields"]["phone"], "+14155550100",
        "the keyed-in number fills the field: {detail}"
    );
}

/// The bot ends the call (the caller stays silent: a re-prompt, then goodbye): the phone leg is
/// hung up — sipp's scenario waits for the BYE and succeeds only when it comes.
#[test]
fn the_bot_hanging_up_ends_the_phone_leg() {
    let test = "SIP hang-up end-to-end";
    let Some(whisper) = whisper(test) else { return };
    let Some(fleet) = Fleet::start(test, "silence_timeout_sec: 2\n", &[]) else {
        return;
    };
    let runtime = &fleet.runtime;
    let phone = runtime.block_on(RtpPhone::bind());
    let mut sipp = fleet.call("caller_waits", &phone, &[]);
    let status = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(90), sipp.wait()).await })
        .unwrap_or_else(|_| panic!("the bot never hung the phone up:\n{}", fleet.logs()))
        .expect("sipp ran");
    assert!(status.success(), "sipp: {status}\n{}", fleet.logs());
    let (start, end) = next_utterance(&phone, 0, Duration::ZERO)
        .unwrap_or_else(|| panic!("the phone heard nothing:\n{}", fleet.logs()));
    let heard = phone.samples();
    let greeting = recognise(&whisper, &heard[start..end]);
    assert!(
        words_in(&greeting, &["riverside", "clinic", "help", "reached"]) >= 2,
        "greeting heard as {greeting:?}"
    );
    let detail = fleet.stored_call();
    assert_eq!(detail["direction"], "inbound", "{detail}");
}

/// `POST /calls` dials out through the number's outbound trunk (a sipp callee on loopback): an
/// answered call hears the bot first and is stored as outbound; a busy callee and one that
/// never answers are told apart.
#[test]
fn outbound_calls_are_placed_and_their_outcome_tracked() {
    let test = "SIP outbound end-to-end";
    let Some(whisper) = whisper(test) else { return };
    let Some(fleet) = Fleet::start(test, "silence_timeout_sec: 2\n", &[]) else {
        return;
    };
    let runtime = &fleet.runtime;
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap();
    let bot: serde_json::Value = http
        .get(format!("{}/bots/{}", fleet.base, fleet.bot_id))
        .bearer_auth(&fleet.key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let company = bot["company_id"].as_str().unwrap();
    let callee_port = free_udp_tcp_port();
    let trunk = http
        .put(format!(
            "{}/companies/{company}/phone-numbers/%2B15550100/trunk",
            fleet.base
        ))
        .bearer_auth(&fleet.key)
        .json(&serde_json::json!({"outbound_address": format!("127.0.0.1:{callee_port}")}))
        .send()
        .unwrap();
    assert_eq!(trunk.status(), 200, "{}", trunk.text().unwrap_or_default());
    let dial = |ringing: u64| -> serde_json::Value {
        let placed = http
            .post(format!("{}/calls", fleet.base))
            .bearer_auth(&fleet.key)
            .json(&serde_json::json!({"bot_id": fleet.bot_id, "to": CALLEE,
                "from_number": CALLED, "ringing_timeout_sec": ringing}))
            .send()
            .unwrap();
        assert_eq!(placed.status(), 201);
        placed.json().unwrap()
    };

    // Busy.
    let callee = {
        let _guard = runtime.enter();
        Sipp::uas(&fleet.bins, &scenario("callee_busy"), callee_port).spawn()
    };
    let placed = dial(10);
    assert_eq!(placed["status"], "busy", "{placed}\n{}", fleet.logs());
    drop(callee);
    // The agent only saw its room close; the stored call keeps the dial's outcome once its
    // record has been through post-call (which writes the summary).
    let busy = fleet.call_when(placed["call_id"].as_str().unwrap(), |c| {
        !c["summary"].is_null()
    });
    assert_eq!(busy["status"], "no_answer", "{busy}");
    assert_eq!(busy["outcome"]["kind"], "BUSY", "{busy}");
    assert!(
        busy["outcome"]["evidence"].to_string().contains("SIP 486"),
        "{busy}"
    );

    // Nobody answers; while it rings, the call can be seen ringing.
    let callee = {
        let _guard = runtime.enter();
        Sipp::uas(&fleet.bins, &scenario("callee_no_answer"), callee_port).spawn()
    };
    let (placed, rang) = std::thread::scope(|s| {
        let dialing = s.spawn(|| dial(5));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut rang = false;
        while !rang && !dialing.is_finished() && std::time::Instant::now() < deadline {
            rang = fleet
                .outbound_calls()
                .iter()
                .any(|c| c["status"] == "ringing");
            std::thread::sleep(Duration::from_millis(100));
        }
        (dialing.join().unwrap(), rang)
    });
    assert!(rang, "the call was never listed as ringing");
    assert_eq!(placed["status"], "no-answer", "{placed}\n{}", fleet.logs());
    drop(callee);
    let unanswered = fleet.call_when(placed["call_id"].as_str().unwrap(), |c| {
        !c["summary"].is_null()
    });
    assert_eq!(unanswered["outcome"]["kind"], "NO_ANSWER", "{unanswered}");

    // Answered: the callee hears the bot first; the silent callee is re-prompted, then hung up.
    let phone = runtime.block_on(RtpPhone::bind());
    let mut callee = {
        let _guard = runtime.enter();
        Sipp::uas(&fleet.bins, &scenario("callee_answers"), callee_port)
            .set("rtp_port", &phone.port.to_string())
            .trace(&fleet.log("sipp"))
            .spawn()
    };
    let placed = dial(15);
    assert_eq!(placed["status"], "answered", "{placed}\n{}", fleet.logs());
    let status = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(90), callee.wait()).await })
        .unwrap_or_else(|_| panic!("the bot never hung up:\n{}", fleet.logs()))
        .expect("sipp ran");
    assert!(status.success(), "sipp: {status}\n{}", fleet.logs());
    let (start, end) = next_utterance(&phone, 0, Duration::ZERO)
        .unwrap_or_else(|| panic!("the callee heard nothing:\n{}", fleet.logs()));
    let heard = phone.samples();
    let greeting = recognise(&whisper, &heard[start..end]);
    eprintln!("the callee heard: {greeting}");
    assert!(
        words_in(&greeting, &["riverside", "clinic", "help", "reached"]) >= 2,
        "greeting heard as {greeting:?}"
    );
    let answered = fleet
        .outbound_calls()
        .into_iter()
        .find(|c| c["id"] == placed["call_id"]);
    let detail = answered.unwrap_or_else(|| fleet.stored_call());
    assert_eq!(detail["direction"], "outbound", "{detail}");
    assert_eq!(detail["from_number"], CALLED, "{detail}");
    assert_eq!(detail["to_number"], CALLEE, "{detail}");
}

/// Failover on a phone call: the worker holding it is killed with SIGKILL mid-call; another
/// takes the call over and the phone hears the bot again, saying it is back.
#[test]
fn a_phone_call_survives_its_worker_being_killed() {
    let test = "SIP failover end-to-end";
    let Some(whisper) = whisper(test) else { return };
    let Some(mut fleet) = Fleet::start_with(test, "silence_timeout_sec: 60\n", &LINES, 2) else {
        return;
    };
    let speech_wav = fleet.dir.path().join("caller.wav");
    assert!(espeak_wav(&speech_wav, LINES[0]));
    let speech = callfleet_audio::wav::read(&speech_wav).expect("espeak's WAV");
    let speech_8k = callfleet_audio::resample(&speech.samples, speech.sample_rate, 8000);
    let phone = fleet.runtime.block_on(RtpPhone::bind());
    let _sipp = fleet.call("caller_hangs_up", &phone, &["-d", "60000"]);
    next_utterance(&phone, 0, Duration::from_secs(40))
        .unwrap_or_else(|| panic!("the phone heard no greeting:\n{}", fleet.logs()));
    // One turn, so the call has a checkpoint to resume from.
    fleet.runtime.block_on(phone.play(&speech_8k));
    let spoke_until = phone.samples().len();
    next_utterance(&phone, spoke_until, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the phone heard no reply:\n{}", fleet.logs()));

    let holder = fleet
        .agents
        .iter()
        .position(|(name, _)| {
            std::fs::read_to_string(fleet.log(name))
                .unwrap_or_default()
                .contains("job taken")
        })
        .expect("a worker took the call");
    let (name, mut proc) = fleet.agents.remove(holder);
    proc.0.kill().unwrap();
    proc.0.wait().unwrap();
    let killed_at = phone.samples().len();
    eprintln!("killed {name}");
    let (start, end) = next_utterance(&phone, killed_at, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the phone never heard the bot again:\n{}", fleet.logs()));
    let heard_after_ms = (start - killed_at) / 8;
    let back = recognise(&whisper, &phone.samples()[start..end]);
    eprintln!("the phone heard the bot again {heard_after_ms} ms later: {back}");
    assert!(
        words_in(&back, &["sorry", "cut off", "got cut"]) >= 1,
        "the new worker says it is back: {back:?}"
    );
    fleet.agents.push((name, proc));
}

/// A phone caller who asks for a person is transferred (SIP REFER) to the number the bot config
/// names, and the call is stored as TRANSFERRED.
#[test]
fn a_caller_asking_for_a_person_is_transferred() {
    let test = "SIP transfer end-to-end";
    let lines = ["I want to talk to a person"];
    let Some(fleet) = Fleet::start(
        test,
        "silence_timeout_sec: 60\ntransfer_to: \"+15550500\"\n",
        &lines,
    ) else {
        return;
    };
    let speech_wav = fleet.dir.path().join("caller.wav");
    assert!(espeak_wav(&speech_wav, lines[0]));
    let speech = callfleet_audio::wav::read(&speech_wav).expect("espeak's WAV");
    let speech_8k = callfleet_audio::resample(&speech.samples, speech.sample_rate, 8000);
    let runtime = &fleet.runtime;
    let phone = runtime.block_on(RtpPhone::bind());
    let mut sipp = fleet.call("caller_transferred", &phone, &[]);
    next_utterance(&phone, 0, Duration::from_secs(40))
        .unwrap_or_else(|| panic!("the phone heard no greeting:\n{}", fleet.logs()));
    runtime.block_on(phone.play(&speech_8k));
    let status = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(90), sipp.wait()).await })
        .unwrap_or_else(|_| panic!("the phone was never transferred:\n{}", fleet.logs()))
        .expect("sipp ran");
    assert!(status.success(), "sipp: {status}\n{}", fleet.logs());
    let trace = std::fs::read_to_string(fleet.log("sipp")).unwrap_or_default();
    let refer_to = trace
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("refer-to:"))
        .unwrap_or_else(|| panic!("no REFER reached the phone:\n{}", fleet.logs()));
    assert!(refer_to.contains("+15550500"), "{refer_to}");
    let detail = fleet.stored_call();
    assert_eq!(detail["outcome"]["kind"], "TRANSFERRED", "{detail}");
}

/// A number whose trunk has digest credentials: livekit-sip challenges the INVITE; a phone with
/// the wrong password never gets through (and nothing is placed), one with the right password
/// reaches the bot and hears its greeting.
#[test]
fn a_trunk_with_credentials_admits_only_callers_who_know_them() {
    let test = "SIP digest authentication end-to-end";
    let Some(fleet) = Fleet::start(test, "silence_timeout_sec: 60\n", &[]) else {
        return;
    };
    let http = reqwest::blocking::Client::new();
    let bot: serde_json::Value = http
        .get(format!("{}/bots/{}", fleet.base, fleet.bot_id))
        .bearer_auth(&fleet.key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let company = bot["company_id"].as_str().unwrap();
    let trunk = http
        .put(format!(
            "{}/companies/{company}/phone-numbers/%2B15550100/trunk",
            fleet.base
        ))
        .bearer_auth(&fleet.key)
        .json(&serde_json::json!({"auth_username": "acme", "auth_password": "s3cret-trunk-pass"}))
        .send()
        .unwrap();
    assert_eq!(trunk.status(), 200, "{}", trunk.text().unwrap_or_default());
    let shown = trunk_text(&http, &fleet, company);
    assert!(
        !shown.contains("s3cret-trunk-pass"),
        "the password is a secret: {shown}"
    );
    let runtime = &fleet.runtime;

    // The wrong password: challenged again or refused, so the scenario fails; the phone hears
    // nothing and no call is placed on an agent.
    let phone = runtime.block_on(RtpPhone::bind());
    let mut sipp = fleet.call(
        "caller_authenticates",
        &phone,
        &["-au", "acme", "-ap", "wrong-pass", "-d", "3000"],
    );
    let status = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), sipp.wait()).await })
        .expect("sipp gives up")
        .expect("sipp ran");
    assert!(
        !status.success(),
        "a wrong password got through:\n{}",
        fleet.logs()
    );
    assert_eq!(phone.packets(), 0, "the refused phone heard audio");
    let agent_log = std::fs::read_to_string(fleet.log("agent")).unwrap_or_default();
    assert!(
        !agent_log.contains("joined the room"),
        "a refused call reached an agent:\n{agent_log}"
    );

    // The right password: through to the bot, which greets.
    let phone = runtime.block_on(RtpPhone::bind());
    let mut sipp = fleet.call(
        "caller_authenticates",
        &phone,
        &["-au", "acme", "-ap", "s3cret-trunk-pass", "-d", "20000"],
    );
    next_utterance(&phone, 0, Duration::from_secs(40)).unwrap_or_else(|| {
        panic!(
            "the authenticated phone heard no greeting:\n{}",
            fleet.logs()
        )
    });
    let status = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), sipp.wait()).await })
        .expect("the phone hangs up")
        .expect("sipp ran");
    assert!(status.success(), "sipp: {status}\n{}", fleet.logs());
    let detail = fleet.stored_call();
    assert_eq!(detail["from_number"], CALLER, "{detail}");
    assert_eq!(detail["to_number"], CALLED, "{detail}");
}

/// The company's view of its numbers (with their trunks), as text.
fn trunk_text(http: &reqwest::blocking::Client, fleet: &Fleet, company: &str) -> String {
    http.get(format!("{}/companies/{company}/phone-numbers", fleet.base))
        .bearer_auth(&fleet.key)
        .send()
        .unwrap()
        .text()
        .unwrap()
}
