//! Cost of bidirectional audio streams in one process, and latency through the SFU.
//!
//!   eval "$(scripts/rtc-test-env.sh)" && cargo bench -p callfleet-rtc --bench rtc_streams
//!
//! For each N in `CALLFLEET_BENCH_STREAMS` (default 10,50,100): N rooms, each with one measured
//! participant in this process (publishes a 48 kHz tone in 20 ms frames, receives and decodes
//! the far end's audio) and one far-end participant in a child process (this binary with
//! `--peer`; publishes a tone at Opus complexity 0, subscribes to nothing). CPU (user+system, % of one core) and RSS
//! growth of this process are measured over `CALLFLEET_BENCH_SECS` (default 10) after a warm-up.
//! Latency: two participants in this process, one room; a tone burst after silence is pushed
//! into one track and detected in the other's decoded stream (push → PCM out, through the SFU).
//! With `--python` (or `CALLFLEET_BENCH_PYTHON=1`) the stream measurement is repeated with
//! LiveKit's Python SDK as the measured side (`benches/py_streams.py`, same far ends).
//! First of all, `CALLFLEET_BENCH_ROOMS` (default 20, 0 skips) rooms at once with the Python SDK
//! as the far end — the e2e scale scenario (`tests/common/rooms.rs`) at a size that is a figure,
//! not a pass/fail test; `--rooms` runs only that.

// The e2e tests' harness (a livekit-server, LiveKit's Python SDK as the far end), for `rooms`.
#[path = "../tests/common/mod.rs"]
mod common;

use std::io::BufRead;
use std::time::{Duration, Instant};

use callfleet_rtc::{participant_token, AudioFrame, LocalAudioTrack, Room, RoomEvent, RoomOptions};
use tokio::sync::mpsc;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

struct Server {
    url: String,
    key: String,
    secret: String,
}

impl Server {
    fn from_env() -> Server {
        Server {
            url: env_or("CALLFLEET_LIVEKIT_URL", "ws://127.0.0.1:7880"),
            key: env_or("CALLFLEET_LIVEKIT_API_KEY", "devkey"),
            secret: env_or("CALLFLEET_LIVEKIT_API_SECRET", "secret"),
        }
    }

    async fn join(
        &self,
        room: &str,
        identity: &str,
        options: RoomOptions,
    ) -> (Room, mpsc::Receiver<RoomEvent>) {
        let token = participant_token(&self.key, &self.secret, room, identity).expect("token");
        Room::connect(&self.url, &token, options)
            .await
            .expect("join")
    }
}

fn tone_frame(freq: f64, phase: &mut f64) -> Vec<i16> {
    (0..960)
        .map(|_| {
            *phase += 2.0 * std::f64::consts::PI * freq / 48_000.0;
            (phase.sin() * 8000.0) as i16
        })
        .collect()
}

/// Push one 20 ms frame into every track, in real time, until dropped.
fn spawn_feeder(tracks: Vec<LocalAudioTrack>, freq: f64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut phase = 0.0;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            let frame = AudioFrame::new(tone_frame(freq, &mut phase), 48_000);
            for t in &tracks {
                t.push(&frame);
            }
        }
    })
}

/// `(user+system CPU seconds, RSS bytes)` of this process.
fn usage() -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, utime 14, stime 15 (1-based) → index 11, 12.
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    let hz = 100.0; // USER_HZ on Linux
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    (ticks / hz, rss_kb * 1024)
}

async fn peer_mode(n: usize, prefix: String) {
    let server = Server::from_env();
    let mut rooms = Vec::new();
    let mut tracks = Vec::new();
    for i in 0..n {
        // The far ends only need to produce audio, as cheaply as possible, so that the
        // shared cores are left to the process being measured.
        let options = RoomOptions {
            auto_subscribe: false,
            opus_complexity: 0,
            ..Default::default()
        };
        let (room, events) = server
            .join(&format!("{prefix}{i}"), "far-end", options)
            .await;
        tracks.push(room.publish_audio("tone", 48_000).await.expect("publish"));
        rooms.push((room, events));
    }
    let _feeder = spawn_feeder(tracks, 300.0);
    println!("ready");
    // Run until the parent closes our stdin.
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    })
    .await;
    for (room, _) in &rooms {
        room.leave().await;
    }
}

/// Start N far ends in a child process (this binary with `--peer`) and wait until they publish.
fn spawn_far_ends(n: usize, prefix: &str) -> std::process::Child {
    let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .arg("--peer")
        .arg(n.to_string())
        .arg(prefix)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("peer process");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    assert_eq!(line.trim(), "ready", "peer process failed");
    child
}

/// The same measurement with LiveKit's Python SDK on the measured side (`py_streams.py`).
fn measure_python(n: usize, secs: u64) {
    let prefix = format!("bench-py-{}-{n}-", std::process::id());
    let mut child = spawn_far_ends(n, &prefix);
    let python = std::env::var_os("CALLFLEET_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/callfleet/venv/bin/python")
        });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/py_streams.py");
    let status = std::process::Command::new(python)
        .arg(script)
        .args([
            "--n",
            &n.to_string(),
            "--prefix",
            &prefix,
            "--secs",
            &secs.to_string(),
        ])
        .env("PYTHONWARNINGS", "ignore")
        .status();
    if !status.as_ref().is_ok_and(|s| s.success()) {
        println!("python streams={n:>3}  failed ({status:?})");
    }
    drop(child.stdin.take());
    let _ = child.wait();
}

async fn measure(server: &Server, n: usize, secs: u64) {
    let prefix = format!("bench-{}-{n}-", std::process::id());
    let mut child = spawn_far_ends(n, &prefix);

    let (_, rss0) = usage();
    let mut rooms = Vec::new();
    let mut tracks = Vec::new();
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    for i in 0..n {
        let (room, mut events) = server
            .join(&format!("{prefix}{i}"), "measured", RoomOptions::default())
            .await;
        tracks.push(room.publish_audio("tone", 48_000).await.expect("publish"));
        let count = received.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let RoomEvent::TrackSubscribed { mut stream, .. } = ev {
                    let count = count.clone();
                    tokio::spawn(async move {
                        while let Some(f) = stream.recv().await {
                            std::hint::black_box(&f);
                            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    });
                }
            }
        });
        rooms.push(room);
    }
    let feeder = spawn_feeder(tracks, 440.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cpu0, _) = usage();
    let frames0 = received.load(std::sync::atomic::Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (cpu1, rss1) = usage();
    let wall = t0.elapsed().as_secs_f64();
    let frames = received.load(std::sync::atomic::Ordering::Relaxed) - frames0;
    let cpu_pct = (cpu1 - cpu0) / wall * 100.0;
    println!(
        "streams={n:>3}  cpu={cpu_pct:6.1}% of a core  cpu/stream={:5.2}%  rss+={:6.1} MiB  rss/stream={:6.0} KiB  rx frames/s/stream={:5.1}",
        cpu_pct / n as f64,
        rss1.saturating_sub(rss0) as f64 / 1048576.0,
        rss1.saturating_sub(rss0) as f64 / 1024.0 / n as f64,
        frames as f64 / wall / n as f64,
    );
    feeder.abort();
    for r in &rooms {
        r.leave().await;
    }
    drop(child.stdin.take());
    let _ = child.wait();
}

async fn latency(server: &Server, rounds: usize) {
    let room = format!("bench-latency-{}", std::process::id());
    let (a, _a_events) = server.join(&room, "speaker", RoomOptions::default()).await;
    let (b, mut b_events) = server.join(&room, "listener", RoomOptions::default()).await;
    let track = a.publish_audio("burst", 48_000).await.expect("publish");
    let mut stream = loop {
        match b_events.recv().await {
            Some(RoomEvent::TrackSubscribed { stream, .. }) => break stream,
            Some(_) => {}
            None => panic!("listener closed"),
        }
    };
    let mut phase = 0.0;
    let mut results = Vec::new();
    for _ in 0..rounds {
        // 400 ms of silence, then a tone burst; time from the first push to the first loud PCM.
        for _ in 0..20 {
            track.push(&AudioFrame::new(vec![0; 960], 48_000));
        }
        track.wait_played_out().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        while stream.try_recv().is_some() {}
        let pushed = Instant::now();
        for _ in 0..10 {
            track.push(&AudioFrame::new(tone_frame(440.0, &mut phase), 48_000));
        }
        let deadline = pushed + Duration::from_secs(2);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.recv()).await {
                Ok(Some(f)) => {
                    let loud = f
                        .samples
                        .iter()
                        .map(|&s| i64::from(s).abs())
                        .max()
                        .unwrap_or(0)
                        > 2000;
                    if loud {
                        results.push(pushed.elapsed().as_secs_f64() * 1000.0);
                        break;
                    }
                }
                _ => break,
            }
        }
        track.wait_played_out().await;
    }
    results.sort_by(f64::total_cmp);
    if results.is_empty() {
        println!("latency: no burst detected");
    } else {
        let pct = |p: f64| results[((results.len() - 1) as f64 * p).round() as usize];
        println!(
            "latency push→PCM through the SFU ({} bursts): min {:.1} ms  median {:.1} ms  p90 {:.1} ms  max {:.1} ms",
            results.len(),
            pct(0.0),
            pct(0.5),
            pct(0.9),
            pct(1.0)
        );
    }
    a.leave().await;
    b.leave().await;
}

/// The e2e scale scenario at a size no pass/fail test should carry on two cores: `n` rooms
/// at once, each with a Rust participant and a Python SDK one (one process for all of them),
/// speech and a per-room tone verified. Prints how long subscriptions took and the verdicts.
async fn rooms(n: usize) {
    let Some(env) = common::env() else { return };
    let t0 = Instant::now();
    let outcomes = common::rooms::rooms_at_once(&env, n).await;
    let wall = t0.elapsed().as_secs_f64();
    let mut after_publish = Vec::new();
    let mut subscribed = Vec::new();
    let mut correlations = Vec::new();
    let mut bad_audio = Vec::new();
    let mut hung = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            Ok(o) => {
                after_publish.push(o.subscribed_secs - o.published_secs);
                subscribed.push(o.subscribed_secs);
                correlations.push(o.speech_correlation);
                if !o.audio_ok() {
                    bad_audio.push(i);
                }
            }
            Err(e) => hung.push(e.clone()),
        }
    }
    let spread = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        match (v.first(), v.get(v.len() / 2), v.last()) {
            (Some(min), Some(median), Some(max)) => {
                format!("min {min:.2} median {median:.2} max {max:.2}")
            }
            _ => "none".into(),
        }
    };
    println!(
        "rooms={n}: {wall:.1} s in all; TrackSubscribed after far-end start (s): {}; after its publish (s): {}; speech correlation: {}; audio verified in {}/{n} rooms (bad: {bad_audio:?}); hung: {hung:?}",
        spread(&mut subscribed),
        spread(&mut after_publish),
        spread(&mut correlations),
        outcomes.len() - hung.len() - bad_audio.len(),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Some(i) = args.iter().position(|a| a == "--peer") {
        let n = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .expect("--peer N PREFIX");
        let prefix = args.get(i + 2).cloned().expect("--peer N PREFIX");
        runtime.block_on(peer_mode(n, prefix));
        return;
    }
    let server = Server::from_env();
    let host = url::Url::parse(&server.url)
        .ok()
        .and_then(|u| u.socket_addrs(|| Some(7880)).ok());
    if host
        .and_then(|a| a.first().copied())
        .is_none_or(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_err())
    {
        eprintln!(
            "no livekit-server at {} (eval \"$(scripts/rtc-test-env.sh)\" first)",
            server.url
        );
        std::process::exit(if std::env::var_os("CI").is_some() {
            1
        } else {
            0
        });
    }
    let secs: u64 = env_or("CALLFLEET_BENCH_SECS", "10").parse().unwrap_or(10);
    let counts: Vec<usize> = env_or("CALLFLEET_BENCH_STREAMS", "10,50,100")
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    println!(
        "callfleet-rtc: {} cores; measured process only (far ends run in a child process)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let room_count: usize = env_or("CALLFLEET_BENCH_ROOMS", "20").parse().unwrap_or(20);
    if args.iter().any(|a| a == "--rooms") {
        runtime.block_on(rooms(room_count));
        return;
    }
    let python = args.iter().any(|a| a == "--python")
        || std::env::var_os("CALLFLEET_BENCH_PYTHON").is_some();
    runtime.block_on(async {
        if room_count > 0 {
            rooms(room_count).await;
        }
        latency(&server, 20).await;
        for &n in &counts {
            measure(&server, n, secs).await;
        }
    });
    if python {
        for &n in &counts {
            measure_python(n, secs);
        }
    }
}
