//! Post-call processing as production runs it — the `callfleet dispatcher` process, on Redis and
//! PostgreSQL — through the faults issue #15 names, with servers of this test's own (a
//! redis-server with AOF, a PostgreSQL cluster made with initdb, both on loopback ports of their
//! own; the shared ones are never touched). The test plays the agents: it pushes finished calls
//! to the stream, retrying while Redis is down as a worker does.
//!
//! 1. The process is killed with SIGKILL while it is in the middle of a record (waiting for the
//!    bot's language model to summarise it); a new process takes the record over.
//! 2. Redis is killed (SIGKILL; AOF with appendfsync always) and restarted while calls end.
//! 3. PostgreSQL is stopped for a few seconds while calls end.
//! 4. One record is poison (its company does not exist: the database refuses it every time).
//!
//! Every good call ends up stored exactly once with exactly one webhook delivery per event, the
//! poison one is a dead letter with its error, and the stream is empty.

mod support;

use callfleet_core::config::BotConfig;
use callfleet_core::domain::{
    CallDirection, CallRecord, CallStatus, Evidence, Outcome, Speaker, Turn,
};
use callfleet_fleet::{PostCallQueue, RedisQueue};
use callfleet_store::{NewBot, NewCompany, NewWebhookEndpoint, Store};
use callfleet_testkit::llm::{FakeOllama, LlmReply};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{free_port, AofRedis, Proc};

const BOT: &str = r#"
bot_id: "salon"
language: "en"
greeting: "Hello!"
scenarios:
  - name: "booking"
    trigger_keywords: ["book"]
    collect_fields:
      - {name: "service", prompt: "Which service?"}
    on_complete: "booking_created"
fallback: "Sorry?"
providers:
  llm: {provider: ollama, model: "qwen2.5:3b"}
"#;

fn root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a PostgreSQL program as the `postgres` user when we are root (PostgreSQL refuses root).
fn pg_command(program: &Path, args: &[&str]) -> Command {
    if root() {
        let mut line = shell_quote(program.to_str().expect("utf-8 path"));
        for a in args {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
        let mut c = Command::new("su");
        c.args(["postgres", "-s", "/bin/sh", "-c", &line]);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// A PostgreSQL cluster of this test's own, stopped and started at will.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Postgres {
    fn init() -> Postgres {
        let bin = pg_bin().expect("PostgreSQL (scripts/test-services.sh installs it)");
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("pg");
        std::fs::create_dir(&data).expect("data dir");
        if root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let data_s = data.to_str().expect("utf-8").to_string();
        let out = pg_command(
            &bin.join("initdb"),
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        )
        .output()
        .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = Postgres {
            bin,
            data,
            port: free_port(),
            _dir: dir,
        };
        pg.start();
        pg
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let data = self.data.to_str().expect("utf-8");
        let log = self.data.join("server.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port, data
        );
        let status = pg_command(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                data,
                "-l",
                log.to_str().expect("utf-8"),
                "-w",
                "-o",
                &options,
                "start",
            ],
        )
        .stdout(Stdio::null())
        .status()
        .expect("pg_ctl start");
        assert!(status.success(), "PostgreSQL started");
    }

    fn stop(&self) {
        let data = self.data.to_str().expect("utf-8");
        let status = pg_command(
            &self.bin.join("pg_ctl"),
            &["-D", data, "-w", "-m", "fast", "stop"],
        )
        .stdout(Stdio::null())
        .status()
        .expect("pg_ctl stop");
        assert!(status.success(), "PostgreSQL stopped");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap_or_default().to_string();
        pg_command(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-m", "immediate", "stop"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok();
    }
}

/// `callfleet dispatcher` (which runs post-call processing) against `pg` and `redis`.
fn postcall_process(
    pg: &Postgres,
    redis: &AofRedis,
    prefix: &str,
    ollama: &str,
    data: &Path,
    log: &Path,
) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callfleet"))
        .arg("dispatcher")
        .env("DATABASE_URL", pg.url())
        .env("REDIS_URL", redis.url())
        .env("CALLFLEET_REDIS_PREFIX", prefix)
        .env("CALLFLEET_DATA", data)
        .env("CALLFLEET_DISPATCHER_ADDR", "127.0.0.1:0")
        .env("CALLFLEET_POSTCALL_RECLAIM_SEC", "2")
        .env("CALLFLEET_ALLOW_DEV_SECRET", "1")
        .env("CALLFLEET_WEBHOOK_ALLOW_PRIVATE", "all")
        .env("OLLAMA_URL", ollama)
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("log file"),
        )
        .spawn()
        .expect("start callfleet dispatcher");
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).expect("stdout") > 0,
            "the dispatcher exited; see {}",
            log.display()
        );
        if line.starts_with("dispatcher: ") {
            break;
        }
    }
    std::thread::spawn(move || for _ in out.lines() {});
    Proc(child)
}

fn record(id: &str, company: &str, bot: &str) -> CallRecord {
    let turn = |speaker, text: &str, at_ms| Turn {
        speaker,
        text: text.into(),
        at_ms,
        interrupted: false,
    };
    CallRecord {
        id: id.into(),
        company_id: company.into(),
        bot_id: bot.into(),
        bot_config_version: 1,
        direction: CallDirection::Inbound,
        status: CallStatus::Completed,
        from_number: Some("+14155550100".into()),
        to_number: None,
        room: None,
        started_at: 1_700_000_000_000,
        ended_at: Some(1_700_000_030_000),
        language: Some("en".into()),
        transcript: vec![
            turn(Speaker::Bot, "Hello!", 0),
            turn(Speaker::User, "I would like to book a haircut", 2_000),
            turn(Speaker::Bot, "Booked.", 4_000),
        ],
        fields: [("service".to_string(), "haircut".to_string())].into(),
        outcome: Some(Outcome {
            kind: "BOOKING".into(),
            evidence: vec![Evidence::ScenarioCompleted {
                turn: 2,
                scenario: "booking".into(),
                event: Some("booking_created".into()),
            }],
        }),
        summary: None,
        metrics: vec![],
    }
}

/// Pushes like an agent worker: retried until the queue has it.
async fn push(queue: &RedisQueue, record: &CallRecord) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match queue.push(record).await {
            Ok(_) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "push never succeeded: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Ids of stored calls, with how many rows each has; `None` while the database is down.
async fn stored(store: &Store, company: &str) -> Option<BTreeMap<String, usize>> {
    let filter = callfleet_store::CallFilter {
        company_id: Some(company.to_string()),
        ..Default::default()
    };
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_calls(&filter, cursor.as_deref(), 500)
            .await
            .ok()?
            .ok()?;
        for c in page.calls {
            *out.entry(c.id).or_insert(0) += 1;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Some(out),
        }
    }
}

async fn wait_for(what: &str, log: &Path, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done().await {
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "timed out waiting for {what}; the post-call log ends:\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_stored_once_through_kills_restarts_and_outages() {
    if pg_bin().is_none()
        || Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
    {
        if std::env::var_os("CI").is_some() {
            panic!(
                "PostgreSQL and redis-server are needed (scripts/test-services.sh installs them)"
            );
        }
        eprintln!("note: skipping: PostgreSQL or redis-server is not installed");
        return;
    }
    let pg = Postgres::init();
    let mut redis = AofRedis::start();
    let work = tempfile::tempdir().expect("temp dir");
    let log = work.path().join("postcall.log");
    let prefix = "faults:";

    let store = Store::connect(&pg.url()).await.expect("own PostgreSQL");
    store.migrate().await.expect("migrate");
    let company = store
        .create_company(NewCompany {
            name: "Salon".into(),
            timezone: "UTC".into(),
            max_concurrent_calls: 5,
        })
        .await
        .expect("company")
        .id;
    let config = BotConfig::parse_any(BOT).expect("valid config");
    let bot = store
        .create_bot(NewBot {
            company_id: &company,
            name: "salon",
            config: &config,
            source_text: BOT,
            source_format: "yaml",
        })
        .await
        .expect("bot")
        .0
        .id;
    // Nothing listens there: deliveries stay queued, which is what is counted.
    let endpoint = store
        .create_webhook(
            &company,
            NewWebhookEndpoint {
                url: format!("http://127.0.0.1:{}/hook", free_port()),
                description: None,
                events: vec![],
            },
        )
        .await
        .expect("endpoint")
        .id;
    let ollama = FakeOllama::start().await;
    let queue = Arc::new(
        RedisQueue::connect(&redis.url(), prefix)
            .await
            .expect("own Redis"),
    );
    let data = work.path().join("data");
    let spawn = || postcall_process(&pg, &redis, prefix, &ollama.url(), &data, &log);

    // 1. Killed in the middle of a record: the model is asked and never answers in time.
    ollama.push_reply(
        LlmReply::text("The caller booked a haircut.")
            .delays(Duration::from_secs(600), Duration::ZERO),
    );
    let first = spawn();
    push(&queue, &record("call_000", &company, &bot)).await;
    wait_for("the first record's summary request", &log, async || {
        !ollama.requests().is_empty()
    })
    .await;
    let pid = first.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    drop(first);
    let mut expected: Vec<String> = vec!["call_000".into()];
    for i in 1..10 {
        let id = format!("call_{i:03}");
        push(&queue, &record(&id, &company, &bot)).await;
        expected.push(id);
    }
    let _second = spawn();
    wait_for(
        "the killed process's record, taken over",
        &log,
        async || {
            stored(&store, &company)
                .await
                .is_some_and(|s| s.contains_key("call_000"))
        },
    )
    .await;

    // 2. Redis dies (SIGKILL) while calls end, and comes back with its append-only file.
    for i in 10..20 {
        let id = format!("call_{i:03}");
        push(&queue, &record(&id, &company, &bot)).await;
        expected.push(id);
    }
    redis.kill();
    let pushing = {
        let queue = queue.clone();
        let (company, bot) = (company.clone(), bot.clone());
        tokio::spawn(async move {
            for i in 20..30 {
                push(&queue, &record(&format!("call_{i:03}"), &company, &bot)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart();
    pushing.await.expect("pushes");
    expected.extend((20..30).map(|i| format!("call_{i:03}")));

    // 3. PostgreSQL stops for a few seconds while calls end; and one record is poison.
    pg.stop();
    for i in 30..40 {
        let id = format!("call_{i:03}");
        push(&queue, &record(&id, &company, &bot)).await;
        expected.push(id);
    }
    push(&queue, &record("call_poison", "cmp_deleted", &bot)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.start();

    wait_for("every call stored", &log, async || {
        stored(&store, &company)
            .await
            .is_some_and(|s| s.len() == expected.len())
    })
    .await;
    wait_for("the poison record set aside", &log, async || {
        store
            .list_dead_letters(None, 10)
            .await
            .is_ok_and(|d| !d.is_empty())
    })
    .await;
    wait_for("the stream emptied", &log, async || {
        queue.pending_entries().await.is_ok_and(|n| n == 0)
    })
    .await;

    let calls = stored(&store, &company).await.expect("database up");
    assert_eq!(
        calls.keys().cloned().collect::<Vec<_>>(),
        expected,
        "every call stored"
    );
    assert!(calls.values().all(|n| *n == 1), "each once: {calls:?}");
    let deliveries = store
        .list_deliveries(&endpoint, 500)
        .await
        .expect("deliveries");
    let mut per_event: BTreeMap<(String, String), usize> = BTreeMap::new();
    for d in &deliveries {
        *per_event
            .entry((d.call_id.clone().unwrap_or_default(), d.event.clone()))
            .or_insert(0) += 1;
    }
    assert_eq!(
        per_event.len(),
        expected.len() * 2,
        "call.completed and booking.created for every call: {per_event:?}"
    );
    assert!(
        per_event.values().all(|n| *n == 1),
        "one delivery per call and event: {per_event:?}"
    );
    let dead = store
        .list_dead_letters(None, 10)
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 1, "only the poison record: {dead:?}");
    assert_eq!(dead[0].call_id, "call_poison");
    assert!(
        dead[0].attempts >= 5 && !dead[0].last_error.is_empty(),
        "{:?}",
        dead[0]
    );
    assert_eq!(queue.dead_entries().await.expect("dead stream"), 0);
}
