//! A real SIP stack for phone-call tests: Redis, livekit-server and livekit-sip started as
//! processes of the test, on loopback only, with ports of their own — so a test can point
//! livekit-server's webhooks at its dispatcher, and stacks never share rooms or trunks. Plus the
//! phone's side: `sipp` scenarios for the signalling ([`Sipp`], scenarios in `testkit/sipp/`) and
//! the phone's media ([`RtpPhone`]: speaks PCMA and keypad digits, keeps what it heard as 8 kHz PCM).
//!
//! The binaries come from `scripts/sip-test-env.sh` (`CALLFLEET_LIVEKIT_SERVER_BIN`,
//! `CALLFLEET_LIVEKIT_SIP_BIN`, `CALLFLEET_REDIS_SERVER_BIN`, `CALLFLEET_SIPP_BIN`); without them
//! [`SipBinaries::from_env`] says what is missing, and tests fail under `CI` or skip locally.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};

/// The API key and secret every stack's servers share.
pub const SIP_API_KEY: &str = "callfleet-sip-test";
pub const SIP_API_SECRET: &str = "callfleet-sip-test-secret-0123456789abcdef";

/// Where the programs of a SIP stack are.
#[derive(Debug, Clone)]
pub struct SipBinaries {
    pub livekit_server: PathBuf,
    pub livekit_sip: PathBuf,
    pub redis_server: PathBuf,
    pub sipp: PathBuf,
}

impl SipBinaries {
    /// From the environment `scripts/sip-test-env.sh` prints, else the cache and `PATH`; `Err`
    /// names what is missing.
    pub fn from_env() -> Result<SipBinaries, String> {
        let cache = PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/callfleet/bin");
        let pick = |var: &str, fallback: PathBuf| -> Result<PathBuf, String> {
            let path = std::env::var_os(var).map(PathBuf::from).unwrap_or(fallback);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "{} not found ({var}; run `eval \"$(scripts/sip-test-env.sh)\"`)",
                    path.display()
                ))
            }
        };
        Ok(SipBinaries {
            livekit_server: pick("CALLFLEET_LIVEKIT_SERVER_BIN", cache.join("livekit-server"))?,
            livekit_sip: pick("CALLFLEET_LIVEKIT_SIP_BIN", cache.join("livekit-sip"))?,
            redis_server: pick(
                "CALLFLEET_REDIS_SERVER_BIN",
                PathBuf::from("/usr/bin/redis-server"),
            )?,
            sipp: pick("CALLFLEET_SIPP_BIN", PathBuf::from("/usr/bin/sipp"))?,
        })
    }
}

/// A free loopback TCP port (bound and released; the OS does not hand it out again at once).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback TCP port")
}

/// A port free on loopback for both UDP and TCP (SIP listens on both).
pub fn free_udp_tcp_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP port");
        let port = udp.local_addr().expect("bound").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

static STACKS: AtomicU32 = AtomicU32::new(0);

/// What a stack is started with.
#[derive(Debug, Clone, Default)]
pub struct SipStackOptions {
    /// Where livekit-server sends its webhooks (signed with [`SIP_API_KEY`]).
    pub webhook_url: Option<String>,
}

/// Redis + livekit-server + livekit-sip, stopped (killed) when dropped.
pub struct SipStack {
    /// The server's WebSocket URL (`ws://127.0.0.1:…`).
    pub ws_url: String,
    /// livekit-sip's SIP port on 127.0.0.1 (UDP and TCP).
    pub sip_port: u16,
    /// The stack's own Redis (`redis://127.0.0.1:…`), free for the test's fleet too.
    pub redis_url: String,
    pub api_key: String,
    pub api_secret: String,
    pub dir: PathBuf,
    children: Vec<(&'static str, Child)>,
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(format!("{name}.log"))).expect("create a log file")
}

impl SipStack {
    pub async fn start(bins: &SipBinaries, options: SipStackOptions) -> SipStack {
        let n = STACKS.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("callfleet-sip-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the stack's dir");
        let mut stack = SipStack {
            ws_url: String::new(),
            sip_port: 0,
            redis_url: String::new(),
            api_key: SIP_API_KEY.into(),
            api_secret: SIP_API_SECRET.into(),
            dir: dir.clone(),
            children: Vec::new(),
        };

        let redis_port = free_tcp_port();
        let redis = Command::new(&bins.redis_server)
            .args(["--bind", "127.0.0.1", "--port", &redis_port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(log_file(&dir, "redis"))
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        stack.children.push(("redis-server", redis));
        wait_for_tcp(redis_port, "redis-server", &mut stack).await;
        stack.redis_url = format!("redis://127.0.0.1:{redis_port}");

        let http_port = free_tcp_port();
        let rtc_tcp = free_tcp_port();
        let rtc_udp = free_udp_tcp_port();
        let webhook = match &options.webhook_url {
            Some(url) => format!("webhook:\n  api_key: {SIP_API_KEY}\n  urls:\n    - {url}\n"),
            None => String::new(),
        };
        let server_conf = format!(
            "port: {http_port}\nbind_addresses: [127.0.0.1]\n\
             rtc:\n  tcp_port: {rtc_tcp}\n  udp_port: {rtc_udp}\n  node_ip: 127.0.0.1\n  \
             use_external_ip: false\n  enable_loopback_candidate: true\n  \
             interfaces:\n    includes: [lo]\n  ips:\n    includes: [127.0.0.1/8]\n\
             redis:\n  address: 127.0.0.1:{redis_port}\n\
             keys:\n  {SIP_API_KEY}: {SIP_API_SECRET}\n\
             room:\n  empty_timeout: 10\n  departure_timeout: 5\n\
             logging:\n  level: info\n{webhook}"
        );
        std::fs::write(dir.join("livekit-server.yaml"), server_conf).expect("write config");
        let server = Command::new(&bins.livekit_server)
            .arg("--config")
            .arg(dir.join("livekit-server.yaml"))
            .args(["--bind", "127.0.0.1", "--node-ip", "127.0.0.1"])
            .stdout(log_file(&dir, "livekit-server"))
            .stderr(Stdio::from(log_file(&dir, "livekit-server.err")))
            .kill_on_drop(true)
            .spawn()
            .expect("start livekit-server");
        stack.children.push(("livekit-server", server));
        wait_for_http(http_port, "/", "livekit-server", &mut stack).await;
        stack.ws_url = format!("ws://127.0.0.1:{http_port}");

        let sip_port = free_udp_tcp_port();
        let health_port = free_tcp_port();
        // Each stack gets its own RTP window; livekit-sip picks free ports inside it.
        let rtp_start = 30_000 + (std::process::id() % 200) * 100 + (n % 10) * 10;
        let sip_conf = format!(
            "api_key: {SIP_API_KEY}\napi_secret: {SIP_API_SECRET}\nws_url: ws://127.0.0.1:{http_port}\n\
             redis:\n  address: 127.0.0.1:{redis_port}\n\
             sip_port: {sip_port}\nrtp_port: {rtp_start}-{}\nhealth_port: {health_port}\n\
             use_external_ip: false\nlocal_net: 127.0.0.1/8\nnat_1_to_1_ip: 127.0.0.1\n\
             listen_ip: 127.0.0.1\nmedia_nat_1_to_1_ip: 127.0.0.1\n\
             max_cpu_utilization: 1.0\n\
             logging:\n  level: debug\n",
            rtp_start + 9_999
        );
        std::fs::write(dir.join("livekit-sip.yaml"), sip_conf).expect("write config");
        let sip = Command::new(&bins.livekit_sip)
            .arg("--config")
            .arg(dir.join("livekit-sip.yaml"))
            .stdout(log_file(&dir, "livekit-sip"))
            .stderr(Stdio::from(log_file(&dir, "livekit-sip.err")))
            .kill_on_drop(true)
            .spawn()
            .expect("start livekit-sip");
        stack.children.push(("livekit-sip", sip));
        wait_for_http(health_port, "/", "livekit-sip", &mut stack).await;
        stack.sip_port = sip_port;
        stack
    }

    /// The last lines of a process's logs, for a failing test's message.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let mut out = String::new();
        for file in [format!("{name}.log"), format!("{name}.err.log")] {
            if let Ok(text) = std::fs::read_to_string(self.dir.join(&file)) {
                let all: Vec<&str> = text.lines().collect();
                let from = all.len().saturating_sub(lines);
                out.push_str(&format!("--- {file}\n{}\n", all[from..].join("\n")));
            }
        }
        out
    }

    fn check_alive(&mut self) {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let name: &str = name;
                panic!(
                    "{name} exited ({status}) while starting:\n{}",
                    self.log_tail(name, 30)
                );
            }
        }
    }
}

impl Drop for SipStack {
    fn drop(&mut self) {
        // Reverse order: livekit-sip, the server, then Redis.
        while let Some((_, mut child)) = self.children.pop() {
            let _ = child.start_kill();
        }
        if std::env::var_os("CALLFLEET_KEEP_SIP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn wait_for_tcp(port: u16, name: &str, stack: &mut SipStack) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        stack.check_alive();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never listened on 127.0.0.1:{port}");
}

async fn wait_for_http(port: u16, path: &str, name: &str, stack: &mut SipStack) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for _ in 0..600 {
        if let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            let mut answer = Vec::new();
            if conn.write_all(request.as_bytes()).await.is_ok()
                && conn.read_to_end(&mut answer).await.is_ok()
                && answer.starts_with(b"HTTP/1.")
                && answer.get(9..12) == Some(b"200")
            {
                return;
            }
        }
        stack.check_alive();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{name} never answered 200 on 127.0.0.1:{port}{path}:\n{}",
        stack.log_tail(name, 30)
    );
}

/// A sipp scenario shipped in `crates/testkit/sipp/`: the phone calling (`caller_waits`,
/// `caller_hangs_up`) or called (`callee_answers`, `callee_busy`, `callee_no_answer`).
pub fn scenario(name: &str) -> PathBuf {
    scenarios_dir().join(format!("{name}.xml"))
}

/// This checkout's sipp scenarios, found from the running test's own crate (cargo sets
/// `CARGO_MANIFEST_DIR` for a test process) rather than from where testkit was compiled: a build
/// cache shared by several checkouts can hand a test a testkit compiled in another one, whose
/// path may be gone.
fn scenarios_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .and_then(|dir| {
            dir.ancestors()
                .map(|a| a.join("crates/testkit/sipp"))
                .find(|p| p.is_dir())
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp"))
}

/// A `sipp` run: a scenario file against livekit-sip, on loopback only.
pub struct Sipp {
    command: Command,
}

impl Sipp {
    /// `sipp -sf SCENARIO 127.0.0.1:REMOTE -i 127.0.0.1 -mi 127.0.0.1 -p LOCAL -m 1` (given up
    /// after 3 minutes); the
    /// scenario's `[service]` is `service` (the number called). Add variables with [`Sipp::set`].
    pub fn new(
        bins: &SipBinaries,
        scenario: &Path,
        remote_port: u16,
        local_port: u16,
        service: &str,
    ) -> Sipp {
        let mut command = Command::new(&bins.sipp);
        command
            .arg("-sf")
            .arg(scenario)
            .arg(format!("127.0.0.1:{remote_port}"))
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &local_port.to_string()])
            .args(["-mp", &free_udp_tcp_port().to_string()])
            .args(["-s", service, "-m", "1", "-nostdin"])
            .args(["-timeout", "180s", "-timeout_error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        Sipp { command }
    }

    /// A phone waiting for calls on 127.0.0.1:`local_port` (`callee_*` scenarios): it takes one
    /// call, then exits.
    pub fn uas(bins: &SipBinaries, scenario: &Path, local_port: u16) -> Sipp {
        let mut command = Command::new(&bins.sipp);
        command
            .arg("-sf")
            .arg(scenario)
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &local_port.to_string()])
            .args(["-mp", &free_udp_tcp_port().to_string()])
            .args(["-m", "1", "-nostdin"])
            .args(["-timeout", "180s", "-timeout_error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        Sipp { command }
    }

    /// A scenario variable (`[$name]` in the scenario).
    pub fn set(mut self, name: &str, value: &str) -> Sipp {
        self.command.args(["-set", name, value]);
        self
    }

    /// Writes every SIP message sipp sends and receives to `path` (for a failing test's log).
    pub fn trace(mut self, path: &Path) -> Sipp {
        self.command.args(["-trace_msg", "-message_file"]).arg(path);
        self
    }

    /// Any other argument.
    pub fn arg(mut self, arg: &str) -> Sipp {
        self.command.arg(arg);
        self
    }

    /// Runs in the background; the child is killed when dropped.
    pub fn spawn(mut self) -> Child {
        self.command.spawn().expect("start sipp")
    }
}

/// The phone's media: a UDP port on loopback that keeps the G.711 RTP sent to it as 8 kHz PCM
/// (each packet's samples land at its RTP timestamp, so a lost packet leaves silence where it
/// belonged) and speaks back — PCMA speech and RFC 4733 digits — to where that RTP came from.
/// Its port goes into the phone's SDP (the scenarios' `[$rtp_port]`); sipp only signals.
pub struct RtpPhone {
    pub port: u16,
    state: Arc<Mutex<Recorded>>,
    outgoing: Arc<Mutex<Outgoing>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What the phone is about to send: speech samples, then keys; silence when both are empty.
#[derive(Default)]
struct Outgoing {
    samples: std::collections::VecDeque<i16>,
    keys: std::collections::VecDeque<u8>,
}

#[derive(Default)]
struct Recorded {
    first_ts: Option<u32>,
    samples: Vec<i16>,
    packets: usize,
    remote: Option<std::net::SocketAddr>,
    /// The G.711 payload type the far end sends (0 PCMU, 8 PCMA); the phone answers in it.
    audio_pt: Option<u8>,
    /// RFC 4733 events heard (their codes, once per event) and the last one's timestamp.
    events: Vec<u8>,
    last_event_ts: Option<u32>,
}

struct Sender {
    seq: u16,
    ts: u32,
    ssrc: u32,
    /// The key being pressed and the 20 ms steps it has been held.
    key: Option<(u8, u16)>,
}

/// RFC 4733 telephone-event payload type the scenarios offer.
pub const DTMF_PAYLOAD_TYPE: u8 = 101;

impl RtpPhone {
    pub async fn bind() -> RtpPhone {
        let socket = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind the phone's RTP port"),
        );
        let port = socket.local_addr().expect("bound").port();
        let state = Arc::new(Mutex::new(Recorded::default()));
        let shared = state.clone();
        let reader = socket.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = reader.recv_from(&mut buf).await {
                let Some(packet) = parse_rtp(&buf[..n]) else {
                    continue;
                };
                let mut rec = shared.lock().expect("phone lock");
                rec.packets += 1;
                rec.remote.get_or_insert(from);
                if packet.payload_type != 0 && packet.payload_type != 8 {
                    // A telephone-event: one event per timestamp, however often it repeats.
                    if packet.payload.len() >= 4 && rec.last_event_ts != Some(packet.timestamp) {
                        rec.last_event_ts = Some(packet.timestamp);
                        rec.events.push(packet.payload[0]);
                    }
                    continue;
                }
                rec.audio_pt.get_or_insert(packet.payload_type);
                let first = *rec.first_ts.get_or_insert(packet.timestamp);
                let at = packet.timestamp.wrapping_sub(first) as usize;
                // Reordered before the first packet, or absurdly far: not part of this call.
                if at > 8000 * 600 {
                    continue;
                }
                let end = at + packet.payload.len();
                if rec.samples.len() < end {
                    rec.samples.resize(end, 0);
                }
                for (i, &b) in packet.payload.iter().enumerate() {
                    rec.samples[at + i] = if packet.payload_type == 8 {
                        alaw_to_linear(b)
                    } else {
                        ulaw_to_linear(b)
                    };
                }
            }
        });
        let outgoing = Arc::new(Mutex::new(Outgoing::default()));
        let speaker = tokio::spawn(speak(socket, state.clone(), outgoing.clone(), port));
        RtpPhone {
            port,
            state,
            outgoing,
            tasks: vec![task, speaker],
        }
    }

    /// What was heard so far, 8 kHz mono.
    pub fn samples(&self) -> Vec<i16> {
        self.state.lock().expect("phone lock").samples.clone()
    }

    pub fn packets(&self) -> usize {
        self.state.lock().expect("phone lock").packets
    }

    /// Keypad events the far end sent (RFC 4733 codes: 0-9, 10 `*`, 11 `#`).
    pub fn events(&self) -> Vec<u8> {
        self.state.lock().expect("phone lock").events.clone()
    }

    /// Where the far end's RTP comes from, once some came.
    pub fn remote(&self) -> Option<std::net::SocketAddr> {
        self.state.lock().expect("phone lock").remote
    }

    async fn wait_sent(&self) {
        loop {
            {
                let out = self.outgoing.lock().expect("phone lock");
                if out.samples.is_empty() && out.keys.is_empty() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Speaks 8 kHz PCM into the call (G.711 in the far end's payload type, 20 ms a packet at
    /// real-time pace); returns once it is sent. Between such calls the phone sends silence,
    /// as a phone does (livekit-sip hangs up a call whose media stops).
    pub async fn play(&self, pcm: &[i16]) {
        self.outgoing
            .lock()
            .expect("phone lock")
            .samples
            .extend(pcm.iter().copied());
        self.wait_sent().await;
    }

    /// Keeps quiet for `duration` (silence is sent meanwhile).
    pub async fn silence(&self, duration: Duration) {
        let samples = (duration.as_millis() as usize) * 8;
        self.play(&vec![0i16; samples]).await;
    }

    /// Presses keypad keys (`0-9`, `*`, `#`) as RFC 4733 events: each held 100 ms, then 100 ms
    /// of silence, the end packet sent three times.
    pub async fn press(&self, keys: &str) {
        {
            let mut out = self.outgoing.lock().expect("phone lock");
            for key in keys.chars() {
                let event = match key {
                    '0'..='9' => key as u8 - b'0',
                    '*' => 10,
                    '#' => 11,
                    other => panic!("no keypad key {other:?}"),
                };
                out.keys.push_back(event);
            }
        }
        self.wait_sent().await;
    }
}

fn rtp_packet(sender: &mut Sender, payload_type: u8, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(12 + payload.len());
    packet.push(0x80);
    packet.push(payload_type | if marker { 0x80 } else { 0 });
    packet.extend_from_slice(&sender.seq.to_be_bytes());
    packet.extend_from_slice(&sender.ts.to_be_bytes());
    packet.extend_from_slice(&sender.ssrc.to_be_bytes());
    packet.extend_from_slice(payload);
    sender.seq = sender.seq.wrapping_add(1);
    packet
}

/// The phone's sending side: from the first RTP it hears (which says where the far end is), a
/// packet every 20 ms — a key's event, else speech, else silence.
async fn speak(
    socket: Arc<tokio::net::UdpSocket>,
    state: Arc<Mutex<Recorded>>,
    outgoing: Arc<Mutex<Outgoing>>,
    port: u16,
) {
    let mut sender = Sender {
        seq: 1,
        ts: 0,
        ssrc: 0x0ca1_1f1e ^ u32::from(port),
        key: None,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (remote, pt) = loop {
        tick.tick().await;
        let rec = state.lock().expect("phone lock");
        if let (Some(remote), Some(pt)) = (rec.remote, rec.audio_pt) {
            break (remote, pt);
        }
    };
    let encode = if pt == 0 {
        linear_to_ulaw
    } else {
        linear_to_alaw
    };
    // After a key, this many 20 ms packets of silence before the next one.
    let mut gap = 0u16;
    loop {
        tick.tick().await;
        let mut packets = Vec::new();
        {
            let mut out = outgoing.lock().expect("phone lock");
            if sender.key.is_none() && gap == 0 {
                sender.key = out.keys.pop_front().map(|k| (k, 0));
            }
            if let Some((event, held)) = sender.key {
                let held = held + 1;
                let end = held == 5;
                let duration = held * 160;
                let payload = [
                    event,
                    if end { 0x80 | 10 } else { 10 },
                    (duration >> 8) as u8,
                    duration as u8,
                ];
                for _ in 0..if end { 3 } else { 1 } {
                    packets.push(rtp_packet(
                        &mut sender,
                        DTMF_PAYLOAD_TYPE,
                        held == 1,
                        &payload,
                    ));
                }
                if end {
                    sender.key = None;
                    sender.ts = sender.ts.wrapping_add(5 * 160);
                    gap = 5;
                } else {
                    sender.key = Some((event, held));
                }
            } else {
                gap = gap.saturating_sub(1);
                let mut payload = Vec::with_capacity(160);
                for _ in 0..160 {
                    payload.push(encode(out.samples.pop_front().unwrap_or(0)));
                }
                packets.push(rtp_packet(&mut sender, pt, false, &payload));
                sender.ts = sender.ts.wrapping_add(160);
            }
        }
        for packet in packets {
            if socket.send_to(&packet, remote).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for RtpPhone {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct RtpPacket<'a> {
    payload_type: u8,
    timestamp: u32,
    payload: &'a [u8],
}

fn parse_rtp(data: &[u8]) -> Option<RtpPacket<'_>> {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return None;
    }
    let csrc = usize::from(data[0] & 0x0f);
    let mut start = 12 + 4 * csrc;
    if data[0] & 0x10 != 0 {
        let ext = data.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = data.len();
    if data[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*data.last()?))?;
    }
    Some(RtpPacket {
        payload_type: data[1] & 0x7f,
        timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        payload: data.get(start..end)?,
    })
}

/// G.711 A-law to linear PCM (ITU-T G.711).
pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = i16::from(a & 0x0f);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if a & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// Linear PCM to G.711 µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS;
    let exponent = (31 - s.leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// G.711 µ-law to linear PCM.
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// Linear PCM to G.711 A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let (sign, magnitude) = if sample >= 0 {
        (0x80u8, i32::from(sample))
    } else {
        (0u8, -i32::from(sample) - 1)
    };
    let magnitude = magnitude.min(0x7fff);
    let code = if magnitude < 256 {
        (magnitude >> 4) as u8
    } else {
        // The segment is where the top bit sits: 256..511 is segment 1, …, 16384.. is 7.
        let top_bit = 31 - magnitude.leading_zeros() as i32;
        let exponent = (top_bit - 7).clamp(1, 7);
        let mantissa = ((magnitude >> (exponent + 3)) & 0x0f) as u8;
        ((exponent as u8) << 4) | mantissa
    };
    (sign | code) ^ 0x55
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alaw_round_trips_within_its_step() {
        for sample in [
            -32768i16, -20000, -1000, -100, -1, 0, 1, 100, 1000, 20000, 32767,
        ] {
            let back = alaw_to_linear(linear_to_alaw(sample));
            let err = (i32::from(back) - i32::from(sample)).abs();
            // A-law's step is 1/16 of the segment: at most ~3% plus the smallest step.
            assert!(
                err <= i32::from(sample).abs() / 16 + 16,
                "{sample} -> {back}"
            );
        }
    }

    #[test]
    fn ulaw_round_trips_within_its_step() {
        for sample in [-32000i16, -20000, -1000, -100, 0, 100, 1000, 20000, 32000] {
            let back = ulaw_to_linear(linear_to_ulaw(sample));
            let err = (i32::from(back) - i32::from(sample)).abs();
            assert!(
                err <= i32::from(sample).abs() / 16 + 16,
                "{sample} -> {back}"
            );
        }
    }

    #[test]
    fn rtp_headers_parse() {
        let mut packet = vec![0x80, 8, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        packet.extend_from_slice(&[0xd5; 160]);
        let p = parse_rtp(&packet).expect("parses");
        assert_eq!(
            (p.payload_type, p.timestamp, p.payload.len()),
            (8, 160, 160)
        );
        assert!(parse_rtp(&packet[..8]).is_none());
    }
}
