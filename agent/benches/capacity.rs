//! How many voice calls one agent worker sustains on this machine, and what each costs.
//!
//! This process is the worker: the real `Worker` + `VoiceSession` (pipeline, rtc participant,
//! Deepgram and Cartesia clients) on a real livekit-server. A child process (this same binary,
//! `CALLFLEET_BENCH_ROLE=callers`) plays the other side: protocol-exact fake Deepgram and
//! Cartesia servers and one callfleet-rtc caller per call, who speaks for 1.5 s every 8 s and
//! counts the agent's replies. So this process's RSS and CPU are the worker's alone.
//!
//! Calls are added in steps (CALLFLEET_BENCH_CALLS, default 10,25,50,75,100); at each step,
//! after the new calls have settled, it measures for CALLFLEET_BENCH_SECS (default 12) seconds:
//! - RSS per call: (RSS now − RSS before the first call) / calls, and the step's marginal cost;
//! - underruns: agent audio frames that left more than 40 ms after their real-time slot
//!   (a listener's jitter buffer would have run dry), as a share of frames sent;
//! - the worker's CPU (share of the whole machine) and the replies the callers heard.
//!
//!   scripts/bench-fleet            # runs this after the dispatcher bench
//!   cargo bench -p callfleet-agent --bench capacity

use callfleet_agent::load::{cpu_time, rss_bytes};
use callfleet_agent::{LiveKitSettings, VoiceSession, Worker, WorkerConfig};
use callfleet_core::domain::CallDirection;
use callfleet_core::secret::Secret;
use callfleet_core::BotConfig;
use callfleet_fleet::{FileQueue, FleetBus, Job, MemoryBus, PostCallQueue, MESSAGE_VERSION};
use callfleet_providers::ProviderEnv;
use callfleet_rtc::{participant_token, AudioFrame, Room, RoomEvent, RoomOptions};
use callfleet_testkit::{FakeCartesia, FakeDeepgram, SttScript, TEST_KEY};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

const BOT: &str = r#"
language: en
greeting: "Hello, thanks for calling. How can I help you today?"
fallback: "I see. Could you tell me a little more about that, please?"
scenarios: []
providers:
  stt: {provider: deepgram}
  tts: {provider: cartesia, voice: bench-voice}
"#;

struct Settings {
    url: String,
    key: String,
    secret: String,
}

fn settings() -> Settings {
    Settings {
        url: std::env::var("CALLFLEET_LIVEKIT_URL")
            .unwrap_or_else(|_| "ws://127.0.0.1:7880".into()),
        key: std::env::var("CALLFLEET_LIVEKIT_API_KEY").unwrap_or_else(|_| "devkey".into()),
        secret: std::env::var("CALLFLEET_LIVEKIT_API_SECRET").unwrap_or_else(|_| "secret".into()),
    }
}

fn room_name(run: &str, i: usize) -> String {
    format!("cap-{run}-{i}")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::var("CALLFLEET_BENCH_ROLE").as_deref() == Ok("callers") {
        runtime.block_on(callers());
    } else {
        runtime.block_on(worker());
    }
}

// ------------------------------------------------------------------------------------ callers

/// The child: fakes plus callers. Prints `fakes STT_URL TTS_URL`, then reads commands:
/// `join RUN I` (a caller joins room I), `stats` (prints `stats REPLIES`), `quit`.
async fn callers() {
    let script = SttScript {
        transcripts: vec!["I have a question about my account".into(); 100_000],
        ..SttScript::default()
    };
    let stt = FakeDeepgram::start(script).await;
    let tts = FakeCartesia::start().await;
    println!("fakes {} {}", stt.url(), tts.url());
    let s = Arc::new(settings());
    let replies = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["join", run, i] => {
                let (room, index) = (
                    room_name(run, i.parse().unwrap()),
                    i.parse::<u64>().unwrap(),
                );
                tokio::spawn(caller(
                    s.clone(),
                    room,
                    index,
                    replies.clone(),
                    stop.clone(),
                ));
            }
            ["stats"] => println!("stats {}", replies.load(Ordering::Relaxed)),
            ["quit"] => break,
            _ => eprintln!("callers: unknown command {line}"),
        }
    }
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// One caller: publishes a microphone (speech for 1.5 s every 8 s, silence otherwise: what a
/// phone sends) and counts the agent's replies as stretches of sound.
async fn caller(
    s: Arc<Settings>,
    room: String,
    index: u64,
    replies: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let identity = format!("caller-{index}");
    let token = participant_token(&s.key, &s.secret, &room, &identity).unwrap();
    // The callers are the harness, sharing the worker's two cores: the cheapest Opus encoding
    // leaves more of them to the worker being measured (which keeps the product's default).
    let options = RoomOptions {
        opus_complexity: 0,
        ..RoomOptions::default()
    };
    let (room, mut events) = match Room::connect(&s.url, &token, options).await {
        Ok(joined) => joined,
        Err(e) => return eprintln!("caller {index}: could not join: {e}"),
    };
    let mic = match room.publish_audio("mic", 16_000).await {
        Ok(track) => track,
        Err(e) => return eprintln!("caller {index}: could not publish: {e}"),
    };
    let ears = tokio::spawn({
        let replies = replies.clone();
        async move {
            while let Some(event) = events.recv().await {
                if let RoomEvent::TrackSubscribed { mut stream, .. } = event {
                    let (mut loud, mut quiet_ms) = (false, 0u32);
                    while let Some(frame) = stream.recv().await {
                        let ms = (frame.samples.len() as u64 * 1000
                            / u64::from(frame.sample_rate.max(1)))
                            as u32;
                        if callfleet_testkit::audio::rms(&frame.samples) > 300.0 {
                            if !loud {
                                replies.fetch_add(1, Ordering::Relaxed);
                            }
                            loud = true;
                            quiet_ms = 0;
                        } else {
                            quiet_ms += ms;
                            if quiet_ms > 400 {
                                loud = false;
                            }
                        }
                    }
                }
            }
        }
    });
    // Calls start at different moments so their turns do not all line up.
    let speech = callfleet_testkit::audio::speech(1500, 16_000);
    let mut tick = tokio::time::interval(Duration::from_millis(8000));
    tokio::time::sleep(Duration::from_millis(3000 + (index * 397) % 5000)).await;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => mic.push(&AudioFrame::new(speech.clone(), 16_000)),
        }
    }
    ears.abort();
    room.leave().await;
}

// ------------------------------------------------------------------------------------- worker

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

async fn worker() {
    let s = settings();
    let host_port = s
        .url
        .split("://")
        .nth(1)
        .unwrap_or(&s.url)
        .trim_end_matches('/')
        .to_string();
    if host_port
        .parse()
        .ok()
        .is_none_or(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_err())
    {
        eprintln!(
            "no livekit-server at {} (scripts/bench-fleet starts one): skipping the capacity bench",
            s.url
        );
        return;
    }
    let steps: Vec<usize> = std::env::var("CALLFLEET_BENCH_CALLS")
        .unwrap_or_else(|_| "10,25,50,75,100".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let secs: u64 = std::env::var("CALLFLEET_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let run = format!("{}", std::process::id());

    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("CALLFLEET_BENCH_ROLE", "callers")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the callers' process");
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap());
    let mut read_line = move || {
        let mut line = String::new();
        from_child.read_line(&mut line).unwrap();
        line.trim().to_string()
    };
    let fakes = read_line();
    let urls: Vec<&str> = fakes.split_whitespace().skip(1).collect();
    let providers = ProviderEnv {
        deepgram_key: Some(Secret::new(TEST_KEY)),
        deepgram_url: Some(urls[0].to_string()),
        cartesia_key: Some(Secret::new(TEST_KEY)),
        cartesia_url: Some(urls[1].to_string()),
        ..ProviderEnv::default()
    };
    let livekit = LiveKitSettings {
        url: s.url.clone(),
        api_key: s.key.clone(),
        api_secret: Secret::new(s.secret.clone()),
        grants: Default::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn FleetBus> = Arc::new(MemoryBus::new());
    let queue = Arc::new(FileQueue::open(dir.path()).unwrap());
    let max = steps.iter().copied().max().unwrap_or(0);
    let worker = Worker::new(
        bus.clone(),
        queue.clone(),
        Arc::new(VoiceSession::new(livekit, providers)),
        WorkerConfig::new("bench", max as u32 + 1),
    );
    let (drain, force) = (CancellationToken::new(), CancellationToken::new());
    let running = tokio::spawn(worker.clone().run(drain.clone(), force.clone()));
    let config = BotConfig::parse_any(BOT).unwrap().to_json();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss_bytes();

    println!("capacity of one agent worker ({} cores, livekit-server and the callers on the same machine)", std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!(
        "{:>6} {:>10} {:>12} {:>12} {:>10} {:>11} {:>10} {:>9}",
        "calls", "RSS MiB", "MiB/call", "marginal", "CPU", "late/sent", "underruns", "replies"
    );
    let (mut placed, mut prev_rss, mut prev_calls) = (0usize, baseline, 0usize);
    let mut sustained = 0;
    for &target in &steps {
        while placed < target {
            let job = Job {
                v: MESSAGE_VERSION,
                call_id: format!("cap_{run}_{placed}"),
                room: room_name(&run, placed),
                company_id: "bench".into(),
                bot_id: "bench-bot".into(),
                config_version: 1,
                config: config.clone(),
                direction: CallDirection::Web,
                caller_identity: Some(format!("caller-{placed}")),
                from_number: None,
                to_number: None,
                created_at: 0,
                attempt: 0,
                livekit_agent: None,
            };
            bus.assign("bench", &job).await.unwrap();
            writeln!(to_child, "join {run} {placed}").unwrap();
            placed += 1;
            // Calls arrive at 20 per second, not all in one instant.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let joins, greetings and first turns settle, then measure a window.
        tokio::time::sleep(Duration::from_secs(6)).await;
        writeln!(to_child, "stats").unwrap();
        let replies_before: u64 = read_line()
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let (sent_before, cpu_before, at) = (
            callfleet_rtc::process_send_stats(),
            cpu_time(),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (sent, cpu, elapsed) = (
            callfleet_rtc::process_send_stats(),
            cpu_time(),
            at.elapsed(),
        );
        writeln!(to_child, "stats").unwrap();
        let replies: u64 = read_line()
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let rss = rss_bytes();
        let active = worker.active_calls() as usize;
        let frames = sent.frames - sent_before.frames;
        let late = sent.late_frames - sent_before.late_frames;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let cpu_share = (cpu - cpu_before).as_secs_f64() / elapsed.as_secs_f64() / cores;
        let share = if frames > 0 {
            late as f64 / frames as f64
        } else {
            0.0
        };
        println!(
            "{:>6} {:>10.1} {:>12.2} {:>12.2} {:>9.0}% {:>11} {:>9.3}% {:>9}",
            active,
            mib(rss as f64),
            mib(rss.saturating_sub(baseline) as f64) / active.max(1) as f64,
            mib(rss.saturating_sub(prev_rss) as f64)
                / (active.saturating_sub(prev_calls)).max(1) as f64,
            cpu_share * 100.0,
            format!("{late}/{frames}"),
            share * 100.0,
            replies - replies_before,
        );
        if active < target {
            println!("       only {active} of {target} calls are running: the worker could not hold them");
            break;
        }
        if share <= 0.001 && replies > replies_before {
            sustained = active;
        }
        prev_rss = rss;
        prev_calls = active;
    }
    println!("sustained with no underruns (≤ 0.1% late frames): {sustained} calls");
    // The callers hang up; every call ends and its record shows what was said.
    writeln!(to_child, "quit").ok();
    drain.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), running).await;
    force.cancel();
    let _ = child.wait();
    let (mut calls, mut user, mut bot) = (0, 0, 0);
    while let Ok(Some(item)) = queue.pop("bench", Duration::from_millis(100)).await {
        calls += 1;
        for turn in &item.record.transcript {
            match turn.speaker {
                callfleet_core::domain::Speaker::User => user += 1,
                callfleet_core::domain::Speaker::Bot => bot += 1,
            }
        }
    }
    println!(
        "calls recorded: {calls}; turns per call: caller {:.1}, agent {:.1}",
        user as f64 / calls.max(1) as f64,
        bot as f64 / calls.max(1) as f64
    );
}
