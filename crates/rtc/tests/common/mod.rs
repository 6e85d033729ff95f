//! Harness for the end-to-end tests: a real livekit-server and LiveKit's Python SDK as the
//! other participant (`tests/py/peer.py`).
//!
//! Env: `CALLFLEET_LIVEKIT_URL` (default ws://127.0.0.1:7880), `CALLFLEET_LIVEKIT_API_KEY` /
//! `CALLFLEET_LIVEKIT_API_SECRET` (devkey / secret), `CALLFLEET_PYTHON` (default
//! `$HOME/.cache/callfleet/venv/bin/python`). `scripts/rtc-test-env.sh` sets all of them up.
//! With `CI` set, a missing server, Python or espeak-ng fails the test; locally it prints a
//! note and the test returns.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use callfleet_rtc::{AudioFrame, Room, RoomEvent, RoomOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub mod rooms;

/// End-to-end tests of one binary run one at a time: the far ends (Python, libwebrtc) and
/// the server share two cores, and parallel calls would measure the machine, not the code.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Env {
    _serial: std::sync::MutexGuard<'static, ()>,
    pub url: String,
    pub api_key: String,
    pub api_secret: String,
    pub python: PathBuf,
    pub peer_script: PathBuf,
    pub dir: tempfile::TempDir,
}

fn missing(what: &str) -> Option<Env> {
    if std::env::var_os("CI").is_some() {
        panic!("{what} (CI is set, so this end-to-end test fails instead of skipping; run scripts/rtc-test-env.sh)");
    }
    eprintln!("note: skipping end-to-end test: {what} (run `eval \"$(scripts/rtc-test-env.sh)\"` to set it up)");
    None
}

/// The environment, or `None` (locally) when the server or the Python SDK is missing.
pub fn env() -> Option<Env> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let url =
        std::env::var("CALLFLEET_LIVEKIT_URL").unwrap_or_else(|_| "ws://127.0.0.1:7880".into());
    let python = std::env::var_os("CALLFLEET_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/callfleet/venv/bin/python")
        });
    let parsed = url::Url::parse(&url).expect("CALLFLEET_LIVEKIT_URL is a URL");
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_string();
    let port = parsed.port_or_known_default().unwrap_or(7880);
    if std::net::TcpStream::connect_timeout(
        &format!("{host}:{port}")
            .parse()
            .unwrap_or_else(|_| ([127, 0, 0, 1], port).into()),
        Duration::from_secs(2),
    )
    .is_err()
    {
        return missing(&format!("no livekit-server answers at {url}"));
    }
    if !python.exists() {
        return missing(&format!(
            "no Python with the livekit SDK at {}",
            python.display()
        ));
    }
    let espeak = std::process::Command::new("espeak-ng")
        .arg("--version")
        .output();
    if !espeak.is_ok_and(|o| o.status.success()) {
        return missing("espeak-ng is not installed");
    }
    let peer_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/peer.py");
    Some(Env {
        _serial: SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
        url,
        api_key: std::env::var("CALLFLEET_LIVEKIT_API_KEY").unwrap_or_else(|_| "devkey".into()),
        api_secret: std::env::var("CALLFLEET_LIVEKIT_API_SECRET")
            .unwrap_or_else(|_| "secret".into()),
        python,
        peer_script,
        dir: tempfile::tempdir().expect("a temp dir"),
    })
}

static ROOM_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A room name no other test (or earlier run) uses.
pub fn unique_room(prefix: &str) -> String {
    let n = ROOM_COUNTER.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{prefix}-{}-{t}-{n}", std::process::id())
}

impl Env {
    pub fn token(&self, room: &str, identity: &str) -> String {
        callfleet_rtc::participant_token(&self.api_key, &self.api_secret, room, identity)
            .expect("token")
    }

    pub async fn join(
        &self,
        room: &str,
        identity: &str,
        options: RoomOptions,
    ) -> (Room, mpsc::Receiver<RoomEvent>) {
        Room::connect(&self.url, &self.token(room, identity), options)
            .await
            .expect("the Rust participant joins")
    }

    /// Speech made with espeak-ng, as (sample rate, samples).
    pub fn speech(&self, name: &str, text: &str) -> (PathBuf, u32, Vec<i16>) {
        let path = self.dir.path().join(format!("{name}.wav"));
        let status = std::process::Command::new("espeak-ng")
            .arg("-w")
            .arg(&path)
            .arg(text)
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => {
                panic!("espeak-ng failed ({other:?}); install it (apt-get install -y espeak-ng)")
            }
        }
        let (rate, samples) = read_wav(&path);
        (path, rate, samples)
    }

    /// Start `peer.py` with `args`; its JSON lines arrive on the returned peer.
    pub fn python(&self, args: &[&str]) -> PyPeer {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.peer_script)
            .arg("--url")
            .arg(&self.url)
            .arg("--api-key")
            .arg(&self.api_key)
            .arg("--api-secret")
            .arg(&self.api_secret)
            .args(args)
            .env("PYTHONWARNINGS", "ignore")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("python starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("peer.py: {line}"),
                }
            }
        });
        PyPeer {
            child,
            rx,
            seen: Vec::new(),
        }
    }
}

pub struct PyPeer {
    pub child: Child,
    rx: mpsc::UnboundedReceiver<serde_json::Value>,
    pub seen: Vec<serde_json::Value>,
}

impl PyPeer {
    /// The next event named `name` (optionally in `room`), within `timeout`.
    pub async fn wait_event(
        &mut self,
        name: &str,
        room: Option<&str>,
        timeout: Duration,
    ) -> serde_json::Value {
        let matches =
            |v: &serde_json::Value| v["event"] == name && room.is_none_or(|r| v["room"] == r);
        if let Some(i) = self.seen.iter().position(&matches) {
            return self.seen.remove(i);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(v)) if matches(&v) => return v,
                Ok(Some(v)) => self.seen.push(v),
                Ok(None) => panic!("peer.py exited before '{name}' (seen: {:?})", self.seen),
                Err(_) => panic!(
                    "timed out waiting for '{name}' from peer.py (seen: {:?})",
                    self.seen
                ),
            }
        }
    }

    /// The next event of any kind (those set aside by `wait_event` first), or `None` once
    /// `peer.py` has exited or nothing came within `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<serde_json::Value> {
        if !self.seen.is_empty() {
            return Some(self.seen.remove(0));
        }
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    pub async fn finish(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

/// Next event matching `pred` within `timeout`.
pub async fn wait_room_event<T>(
    events: &mut mpsc::Receiver<RoomEvent>,
    timeout: Duration,
    mut pred: impl FnMut(RoomEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ev)) => {
                let shown = format!("{ev:?}");
                match pred(ev) {
                    Some(t) => return t,
                    None => eprintln!("(event not waited for: {shown})"),
                }
            }
            Ok(None) => panic!("room events ended"),
            Err(_) => panic!("timed out waiting for a room event"),
        }
    }
}

/// Collect `secs` of audio (by sample count) from a stream, or whatever arrives until `timeout`.
pub async fn collect_audio(
    stream: &mut callfleet_rtc::AudioStream,
    secs: f64,
    timeout: Duration,
) -> (u32, Vec<i16>) {
    let mut out = Vec::new();
    let mut rate = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    while let Ok(Some(AudioFrame {
        samples,
        sample_rate,
    })) = tokio::time::timeout_at(deadline, stream.recv()).await
    {
        rate = sample_rate;
        out.extend(samples);
        if out.len() as f64 >= secs * f64::from(rate) {
            break;
        }
    }
    (rate, out)
}

/// Minimal RIFF/WAVE reader for 16-bit PCM (first channel).
pub fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let data = std::fs::read(path).expect("WAV readable");
    assert!(
        data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WAVE",
        "not a WAV: {}",
        path.display()
    );
    let mut pos = 12;
    let (mut rate, mut channels) = (0u32, 1usize);
    while pos + 8 <= data.len() {
        let id = &data[pos..pos + 4];
        let len = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]])
            as usize;
        let body = pos + 8;
        if id == b"fmt " {
            channels = u16::from_le_bytes([data[body + 2], data[body + 3]]) as usize;
            rate = u32::from_le_bytes([
                data[body + 4],
                data[body + 5],
                data[body + 6],
                data[body + 7],
            ]);
        } else if id == b"data" {
            let end = (body + len).min(data.len());
            let samples = data[body..end]
                .chunks_exact(2 * channels.max(1))
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (rate, samples);
        }
        pos = body + len + (len & 1);
    }
    panic!("no data chunk in {}", path.display());
}

/// RMS envelope in 20 ms windows (rate-independent, so signals at different rates compare).
pub fn envelope(samples: &[i16], rate: u32) -> Vec<f64> {
    envelope_ms(samples, rate, 20)
}

/// RMS envelope in `ms` windows; coarser windows tolerate small time warps (a far end that
/// stutters under load) while still following the speech.
pub fn envelope_ms(samples: &[i16], rate: u32, ms: u32) -> Vec<f64> {
    let n = (rate * ms / 1000).max(1) as usize;
    samples
        .chunks_exact(n)
        .map(|c| (c.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / n as f64).sqrt())
        .collect()
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let (a, b) = (&a[..n], &b[..n]);
    let ma = a.iter().sum::<f64>() / n as f64;
    let mb = b.iter().sum::<f64>() / n as f64;
    let (mut num, mut da, mut db) = (0.0, 0.0, 0.0);
    for i in 0..n {
        num += (a[i] - ma) * (b[i] - mb);
        da += (a[i] - ma).powi(2);
        db += (b[i] - mb).powi(2);
    }
    if da == 0.0 || db == 0.0 {
        0.0
    } else {
        num / (da.sqrt() * db.sqrt())
    }
}

/// Best Pearson correlation of the sent envelope against the received one over all lags
/// (received may start earlier or later); returns (correlation, lag in 20 ms windows).
pub fn best_correlation(sent: &[f64], received: &[f64]) -> (f64, i64) {
    let mut best = (f64::MIN, 0i64);
    let n = sent.len() as i64;
    let m = received.len() as i64;
    for lag in -(n / 2)..m {
        let (s, r) = if lag >= 0 {
            (sent, &received[lag as usize..])
        } else {
            (&sent[(-lag) as usize..], received)
        };
        let len = s.len().min(r.len());
        if len < (sent.len() / 2).max(10) {
            continue;
        }
        let c = pearson(&s[..len], &r[..len]);
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}

/// Dominant frequency (50–4000 Hz) of the loudest quarter second of `samples`, by a
/// coarse-then-fine DFT peak search (robust to short dropouts, unlike zero crossings).
pub fn dominant_frequency(samples: &[i16], rate: u32) -> f64 {
    let win = (rate as usize / 4).min(samples.len());
    let env = envelope(samples, rate);
    let loudest = env
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i * (rate as usize / 50))
        .unwrap_or(0);
    let start = loudest.saturating_sub(win / 2).min(samples.len() - win);
    let seg: Vec<f64> = samples[start..start + win]
        .iter()
        .map(|&s| f64::from(s))
        .collect();
    let power = |f: f64| {
        let w = 2.0 * std::f64::consts::PI * f / f64::from(rate);
        let (mut re, mut im) = (0.0, 0.0);
        for (i, x) in seg.iter().enumerate() {
            re += x * (w * i as f64).cos();
            im += x * (w * i as f64).sin();
        }
        re * re + im * im
    };
    let peak = |from: f64, to: f64, step: f64| {
        let mut best = (from, f64::MIN);
        let mut f = from;
        while f <= to {
            let p = power(f);
            if p > best.1 {
                best = (f, p);
            }
            f += step;
        }
        best.0
    };
    let coarse = peak(50.0, 4000.0, 4.0);
    peak(coarse - 4.0, coarse + 4.0, 0.25)
}

/// A sine tone.
pub fn tone(freq: f64, secs: f64, rate: u32, amplitude: f64) -> Vec<i16> {
    (0..(secs * f64::from(rate)) as usize)
        .map(|i| {
            ((2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() * amplitude)
                as i16
        })
        .collect()
}

/// Push `samples` into a track in 20 ms frames, in real time.
pub async fn play(track: &callfleet_rtc::LocalAudioTrack, samples: &[i16], rate: u32) {
    let n = (rate / 50) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for chunk in samples.chunks(n) {
        tick.tick().await;
        track.push(&AudioFrame::new(chunk.to_vec(), rate));
    }
}

/// A TCP proxy in front of the server's signalling port whose connections can be cut at
/// once, as a network failure would (media still flows directly over UDP).
pub struct CutProxy {
    pub url: String,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(server_url: &str) -> CutProxy {
        let parsed = url::Url::parse(server_url).expect("server URL");
        let upstream = format!(
            "{}:{}",
            parsed.host_str().unwrap_or("127.0.0.1"),
            parsed.port_or_known_default().unwrap_or(7880)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy binds");
        let port = listener.local_addr().expect("proxy address").port();
        let conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> =
            Default::default();
        let list = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                list.lock().expect("proxy list").push(task.abort_handle());
            }
        });
        CutProxy {
            url: format!("ws://127.0.0.1:{port}"),
            conns,
            accept,
        }
    }

    /// Drop every open connection (new ones are still accepted).
    pub fn cut(&self) -> usize {
        let mut list = self.conns.lock().expect("proxy list");
        let n = list.len();
        for c in list.drain(..) {
            c.abort();
        }
        n
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Fraction of 20 ms windows louder than `threshold`.
pub fn loud_fraction(samples: &[i16], rate: u32, threshold: f64) -> f64 {
    let env = envelope(samples, rate);
    env.iter().filter(|&&e| e > threshold).count() as f64 / env.len().max(1) as f64
}

/// A livekit-server of this test's own (so it can be killed and restarted), started with
/// scripts/start-livekit-server.sh on the given ports.
pub struct PrivateServer {
    pub url: String,
    dir: tempfile::TempDir,
    ports: (u16, u16, u16),
}

impl PrivateServer {
    pub fn start(ports: (u16, u16, u16)) -> Option<PrivateServer> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = PrivateServer {
            url: String::new(),
            dir,
            ports,
        };
        server.url = server.launch()?;
        Some(server)
    }

    fn launch(&self) -> Option<String> {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/start-livekit-server.sh");
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(&script)
            .arg(self.dir.path())
            .env("LIVEKIT_PORT", self.ports.0.to_string())
            .env("LIVEKIT_RTC_TCP_PORT", self.ports.1.to_string())
            .env("LIVEKIT_RTC_UDP_PORT", self.ports.2.to_string());
        let cached = PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/callfleet/bin/livekit-server");
        match std::env::var_os("LIVEKIT_SERVER_BIN") {
            Some(bin) => {
                cmd.env("LIVEKIT_SERVER_BIN", bin);
            }
            None if cached.exists() => {
                cmd.env("LIVEKIT_SERVER_BIN", &cached);
            }
            None => {
                missing("no livekit-server binary (LIVEKIT_SERVER_BIN or ~/.cache/callfleet/bin/livekit-server)");
                return None;
            }
        }
        let out = cmd.output().expect("start script runs");
        if !out.status.success() {
            panic!(
                "livekit-server did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("livekit-server.pid"))
            .ok()
            .map(|p| p.trim().to_string())
    }

    pub fn stop(&self) {
        if let Some(pid) = self.pid() {
            // SIGKILL: a crash. (SIGTERM makes the server drain its rooms first, slowly.)
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(&pid)
                .status();
            // Wait until it is gone so the ports are free again.
            for _ in 0..100 {
                let alive = std::process::Command::new("kill")
                    .arg("-0")
                    .arg(&pid)
                    .status()
                    .is_ok_and(|s| s.success());
                if !alive {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = std::fs::remove_file(self.dir.path().join("livekit-server.pid"));
        }
    }

    pub fn restart(&self) {
        self.stop();
        self.launch().expect("restarted");
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.stop();
    }
}
