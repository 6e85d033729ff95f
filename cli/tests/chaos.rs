//! The chaos run (not part of the default test run: `scripts/chaos`, or
//! `cargo test -p callfleet-cli --test chaos -- --ignored --nocapture`).
//!
//! Calls go through the whole fleet as separate processes — `callfleet api`, `dispatcher` and
//! three `agent` workers on a Redis server of its own (append-only file, so a restart keeps
//! what was written) and the test livekit-server — to protocol-exact fake Deepgram, Cartesia
//! and ElevenLabs servers. Each caller is a callfleet-rtc participant that starts a browser
//! session, speaks every few seconds, listens, and hangs up. While the calls run, a controller
//! injects faults in turn: a worker killed with SIGKILL (and a new one started), a worker
//! stalled with SIGSTOP past the failover timeout and then resumed, the TTS provider refusing
//! connections (calls fall back to ElevenLabs), and once, Redis killed and restarted.
//!
//! It prints calls placed, calls recorded, records lost, calls answered by two agents at once
//! (both audible for more than a second) and calls in which no agent was heard, and fails on any
//! lost record or doubly answered call. CHAOS_CALLS (200), CHAOS_CALL_SECS (14) and
//! CHAOS_FAULT_EVERY_SECS (6) tune it.

mod support;

use callfleet_rtc::{AudioFrame, Room, RoomEvent, RoomOptions};
use callfleet_testkit::{FakeCartesia, FakeDeepgram, FakeElevenLabs, SttScript, TEST_KEY};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{api_base, callfleet, company_with_bot_at, AofRedis, Env, Proc};

const BOT: &str = r#"
language: en
greeting: "Hello, thanks for calling. How can I help you today?"
fallback: "I see. Could you tell me a little more about that, please?"
scenarios: []
providers:
  stt: {provider: deepgram}
  tts:
    provider: cartesia
    voice: chaos-voice
    fallback: [{provider: elevenlabs, voice: chaos-fallback}]
"#;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one caller observed.
#[derive(Default)]
struct Heard {
    call_id: String,
    /// Per agent identity, the 250 ms slots (since the call began) in which it was audible.
    slots: BTreeMap<String, Vec<u64>>,
    error: Option<String>,
}

impl Heard {
    /// How long two agents were audible at the same time.
    fn overlap_ms(&self) -> u64 {
        let mut count: HashMap<u64, usize> = HashMap::new();
        for slots in self.slots.values() {
            let mut unique = slots.clone();
            unique.dedup();
            for s in unique {
                *count.entry(s).or_default() += 1;
            }
        }
        count.values().filter(|&&n| n > 1).count() as u64 * 250
    }
}

async fn caller(
    http: reqwest::Client,
    base: String,
    key: String,
    bot: String,
    index: u64,
    call_secs: u64,
) -> Heard {
    let mut heard = Heard::default();
    let session = match http
        .post(format!("{base}/bots/{bot}/sessions"))
        .bearer_auth(&key)
        .send()
        .await
    {
        Ok(reply) if reply.status() == 201 => reply.json::<serde_json::Value>().await.unwrap(),
        Ok(reply) => {
            heard.error = Some(format!("session: {}", reply.status()));
            return heard;
        }
        Err(e) => {
            heard.error = Some(format!("session: {e}"));
            return heard;
        }
    };
    heard.call_id = session["call_id"].as_str().unwrap_or_default().to_string();
    let options = RoomOptions {
        opus_complexity: 0,
        ..RoomOptions::default()
    };
    let (room, mut events) = match Room::connect(
        session["url"].as_str().unwrap_or_default(),
        session["token"].as_str().unwrap_or_default(),
        options,
    )
    .await
    {
        Ok(joined) => joined,
        Err(e) => {
            heard.error = Some(format!("join: {e}"));
            return heard;
        }
    };
    let mic = match room.publish_audio("mic", 16_000).await {
        Ok(track) => track,
        Err(e) => {
            heard.error = Some(format!("publish: {e}"));
            room.leave().await;
            return heard;
        }
    };
    let began = Instant::now();
    let slots: Arc<Mutex<BTreeMap<String, Vec<u64>>>> = Arc::default();
    let ears = tokio::spawn({
        let slots = slots.clone();
        async move {
            while let Some(event) = events.recv().await {
                if let RoomEvent::TrackSubscribed {
                    participant,
                    mut stream,
                    ..
                } = event
                {
                    let slots = slots.clone();
                    tokio::spawn(async move {
                        while let Some(frame) = stream.recv().await {
                            if callfleet_testkit::audio::rms(&frame.samples) > 300.0 {
                                let slot = began.elapsed().as_millis() as u64 / 250;
                                slots
                                    .lock()
                                    .unwrap()
                                    .entry(participant.identity.clone())
                                    .or_default()
                                    .push(slot);
                            }
                        }
                    });
                }
            }
        }
    });
    let speech = callfleet_testkit::audio::speech(1200, 16_000);
    tokio::time::sleep(Duration::from_millis(2500 + (index * 331) % 1500)).await;
    while began.elapsed() < Duration::from_secs(call_secs) {
        mic.push(&AudioFrame::new(speech.clone(), 16_000));
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    room.leave().await;
    ears.abort();
    heard.slots = std::mem::take(&mut *slots.lock().unwrap());
    heard
}

struct Fleet {
    env: Env,
    data: PathBuf,
    logs: PathBuf,
    prefix: String,
    providers: Vec<(&'static str, String)>,
    agents: Vec<(String, Proc)>,
    started: usize,
}

impl Fleet {
    fn start_agent(&mut self) {
        self.started += 1;
        let id = format!("chaos-w{}", self.started);
        let proc = callfleet(
            &["agent", "--worker-id", &id, "--capacity", "60"],
            &self.data,
            &self.env,
            &self.prefix,
            &self.logs.join(format!("{id}.log")),
            &self.providers,
        );
        self.agents.push((id, proc));
    }
}

fn signal(pid: &str, sig: &str) {
    Command::new("kill").args([sig, pid]).status().ok();
}

#[test]
#[ignore = "the chaos run: scripts/chaos"]
fn chaos_run_loses_no_call() {
    let Some(shared) = support::env("chaos run") else {
        return;
    };
    let calls = env_or("CHAOS_CALLS", 200);
    let call_secs = env_or("CHAOS_CALL_SECS", 14);
    let fault_every = Duration::from_secs(env_or("CHAOS_FAULT_EVERY_SECS", 6));
    let dir = support::TestDir::new();
    let mut redis = AofRedis::start();
    let env = Env {
        redis: redis.url(),
        livekit: shared.livekit.clone(),
        python: shared.python.clone(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stt = runtime.block_on(FakeDeepgram::start(SttScript {
        transcripts: vec!["I have a question about my account".into(); 100_000],
        ..SttScript::default()
    }));
    let tts = runtime.block_on(FakeCartesia::start());
    let fallback_tts = runtime.block_on(FakeElevenLabs::start());
    let providers = vec![
        ("DEEPGRAM_API_KEY", TEST_KEY.to_string()),
        ("DEEPGRAM_URL", stt.url()),
        ("CARTESIA_API_KEY", TEST_KEY.to_string()),
        ("CARTESIA_URL", tts.url()),
        ("ELEVENLABS_API_KEY", TEST_KEY.to_string()),
        ("ELEVENLABS_URL", fallback_tts.url()),
        ("CALLFLEET_VAD", "energy".to_string()),
        // No offline models: the fakes are the providers.
        (
            "CALLFLEET_MODELS",
            dir.path().join("no-models").display().to_string(),
        ),
    ];
    let data = dir.path().join("data");
    let prefix = format!("chaos:{}:", std::process::id());
    let logs = dir.path().to_path_buf();
    let mut api = callfleet(
        &["api", "--http-addr", "127.0.0.1:0", "--rate-limit", "0"],
        &data,
        &env,
        &prefix,
        &logs.join("api.log"),
        &[],
    );
    let base = api_base(&mut api);
    let _dispatcher = callfleet(
        &["dispatcher", "--http-addr", "127.0.0.1:0"],
        &data,
        &env,
        &prefix,
        &logs.join("dispatcher.log"),
        &[],
    );
    let mut fleet = Fleet {
        env,
        data,
        logs,
        prefix,
        providers,
        agents: Vec::new(),
        started: 0,
    };
    for _ in 0..3 {
        fleet.start_agent();
    }
    std::thread::sleep(Duration::from_secs(2));
    let blocking = reqwest::blocking::Client::new();
    // The company may hold every call of the run at once.
    let (key, bot) = company_with_bot_at(&blocking, &base, BOT, 10_000);

    let started = Instant::now();
    let http = reqwest::Client::new();
    let callers = runtime.spawn({
        let (base, key, bot) = (base.clone(), key.clone(), bot.clone());
        async move {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..calls {
                set.spawn(caller(
                    http.clone(),
                    base.clone(),
                    key.clone(),
                    bot.clone(),
                    i,
                    call_secs,
                ));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let mut heard = Vec::new();
            while let Some(h) = set.join_next().await {
                heard.push(h.unwrap());
            }
            heard
        }
    });

    // The faults, in turn, until the callers are done.
    let (mut kills, mut stalls, mut refusals, mut restarts) = (0, 0, 0, 0);
    let mut step = 0usize;
    while !callers.is_finished() {
        std::thread::sleep(fault_every);
        if callers.is_finished() {
            break;
        }
        let pick = step % fleet.agents.len().max(1);
        match step % 4 {
            0 => {
                let (id, proc) = fleet.agents.remove(pick);
                signal(&proc.pid(), "-KILL");
                eprintln!(
                    "chaos {:>5.1}s: killed {id}",
                    started.elapsed().as_secs_f64()
                );
                drop(proc);
                kills += 1;
                fleet.start_agent();
            }
            1 => {
                let (id, proc) = &fleet.agents[pick];
                signal(&proc.pid(), "-STOP");
                eprintln!(
                    "chaos {:>5.1}s: stalled {id} for 3 s",
                    started.elapsed().as_secs_f64()
                );
                std::thread::sleep(Duration::from_secs(3));
                signal(&proc.pid(), "-CONT");
                stalls += 1;
            }
            2 => {
                tts.refuse_next(20);
                eprintln!(
                    "chaos {:>5.1}s: the TTS provider refuses 20 connections",
                    started.elapsed().as_secs_f64()
                );
                refusals += 1;
            }
            _ if restarts == 0 => {
                redis.kill();
                eprintln!(
                    "chaos {:>5.1}s: Redis killed",
                    started.elapsed().as_secs_f64()
                );
                std::thread::sleep(Duration::from_secs(2));
                redis.restart();
                eprintln!(
                    "chaos {:>5.1}s: Redis restarted from its append-only file",
                    started.elapsed().as_secs_f64()
                );
                restarts += 1;
            }
            _ => {}
        }
        step += 1;
    }
    let heard = runtime.block_on(callers).unwrap();

    // Every placed call must end up stored, whatever happened to its workers.
    let placed: Vec<&Heard> = heard.iter().filter(|h| !h.call_id.is_empty()).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut missing: Vec<String> = placed.iter().map(|h| h.call_id.clone()).collect();
    while !missing.is_empty() && Instant::now() < deadline {
        missing.retain(|id| {
            blocking
                .get(format!("{base}/calls/{id}"))
                .bearer_auth(&key)
                .send()
                .map(|r| r.status() != 200)
                .unwrap_or(true)
        });
        if !missing.is_empty() {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let doubled: Vec<&&Heard> = placed.iter().filter(|h| h.overlap_ms() > 1000).collect();
    let max_overlap = placed.iter().map(|h| h.overlap_ms()).max().unwrap_or(0);
    let unheard = placed.iter().filter(|h| h.slots.is_empty()).count();
    let failed: Vec<&String> = heard.iter().filter_map(|h| h.error.as_ref()).collect();
    println!(
        "chaos: {calls} calls over {:.0} s; faults: {kills} workers killed, {stalls} stalled, \
         {refusals} TTS outages, {restarts} Redis restart",
        started.elapsed().as_secs_f64()
    );
    println!("chaos: calls placed      {}", placed.len());
    println!(
        "chaos: calls not placed  {} {:?}",
        failed.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
    println!("chaos: calls recorded    {}", placed.len() - missing.len());
    println!(
        "chaos: records lost      {} {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    println!(
        "chaos: answered by two agents at once (> 1 s)  {} (longest overlap {max_overlap} ms)",
        doubled.len()
    );
    println!("chaos: calls with no agent heard  {unheard}");
    assert!(missing.is_empty(), "records lost: {missing:?}");
    assert!(
        doubled.is_empty(),
        "calls answered by two agents: {:?}",
        doubled.iter().map(|h| &h.call_id).collect::<Vec<_>>()
    );
}
