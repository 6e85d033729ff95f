//! Read throughput and latency of `GET /calls` with 10k calls stored, over real HTTP on loopback,
//! on SQLite and (when `CALLFLEET_TEST_POSTGRES_URL` is set) PostgreSQL.
//!
//! Env: BENCH_CALLS (default 10000), BENCH_SECS per scenario (default 5), BENCH_CONCURRENCY (default 16).
//! Run through `scripts/bench-api`.

use callfleet_admin_api::{serve, ApiConfig, ApiContext};
use callfleet_core::domain::{CallDirection, CallRecord, CallStatus, Outcome, Speaker, Turn};
use callfleet_core::secret::Secret;
use callfleet_store::testing::{postgres, sqlite, TestDb, POSTGRES_ENV};
use callfleet_store::{NewBot, NewCompany, Store};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn seed(store: &Store, calls: u64) -> (String, String) {
    let company = store
        .create_company(NewCompany {
            name: "Bench".into(),
            timezone: "UTC".into(),
            max_concurrent_calls: 10,
        })
        .await
        .expect("company");
    let key = store
        .create_api_key(&company.id, "bench")
        .await
        .expect("key");
    let text = "language: en\ngreeting: Hi\nfallback: Sorry\n";
    let config = callfleet_core::BotConfig::parse_any(text).expect("config");
    let new = NewBot {
        company_id: &company.id,
        name: "bench",
        config: &config,
        source_text: text,
        source_format: "yaml",
    };
    let (bot, _) = store.create_bot(new).await.expect("bot");
    let started = Instant::now();
    let outcomes = ["BOOKING", "LEAD", "INFO_ONLY", "CALLBACK"];
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8u64 {
        let (store, company_id, bot_id) = (store.clone(), company.id.clone(), bot.id.clone());
        tasks.spawn(async move {
            for i in (worker..calls).step_by(8) {
                let at = 1_767_225_600_000 + i as i64 * 60_000;
                let call = CallRecord {
                    id: format!("call_{i:08}"),
                    company_id: company_id.clone(),
                    bot_id: bot_id.clone(),
                    bot_config_version: 1,
                    direction: if i % 5 == 0 {
                        CallDirection::Outbound
                    } else {
                        CallDirection::Inbound
                    },
                    status: CallStatus::Completed,
                    from_number: Some(format!("+7916{:07}", i % 1000)),
                    to_number: Some("+74950000000".into()),
                    room: None,
                    started_at: at,
                    ended_at: Some(at + 90_000),
                    language: Some("en".into()),
                    transcript: vec![
                        Turn {
                            speaker: Speaker::Bot,
                            text: "Hello, how can I help?".into(),
                            at_ms: 0,
                            interrupted: false,
                        },
                        Turn {
                            speaker: Speaker::User,
                            text: "I'd like to book a haircut tomorrow".into(),
                            at_ms: 1500,
                            interrupted: false,
                        },
                    ],
                    fields: BTreeMap::from([("service".to_string(), "haircut".to_string())]),
                    outcome: Some(Outcome {
                        kind: outcomes[(i % 4) as usize].into(),
                        evidence: vec![],
                    }),
                    summary: None,
                    metrics: vec![],
                };
                store.upsert_call(&call).await.expect("insert call");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("seeding task");
    }
    store.refresh_statistics().await.expect("analyze");
    println!(
        "  seeded {calls} calls in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (key.secret, bot.id)
}

struct Figures {
    requests: usize,
    secs: f64,
    p50: Duration,
    p99: Duration,
}

async fn load(base: &str, key: &str, path: &str, secs: u64, concurrency: u64) -> Figures {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, key) = (client.clone(), format!("{base}{path}"), key.to_string());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let response = client
                    .get(&url)
                    .bearer_auth(&key)
                    .send()
                    .await
                    .expect("request");
                assert!(
                    response.status().is_success(),
                    "{url}: {}",
                    response.status()
                );
                let body = response.bytes().await.expect("body");
                assert!(body.len() > 100, "a page of calls");
                latencies.push(t.elapsed());
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("load task"));
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Figures {
        requests: all.len(),
        secs,
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

async fn run(label: &str, db: TestDb) {
    let calls = env_or("BENCH_CALLS", 10_000);
    let secs = env_or("BENCH_SECS", 5);
    let concurrency = env_or("BENCH_CONCURRENCY", 16);
    println!("{label}:");
    let (key, bot) = seed(&db.store, calls).await;
    let config = ApiConfig {
        admin_key: Secret::new("bench-admin"),
        rate_limit_per_sec: 0.0,
        ..ApiConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        ApiContext::new(config, db.store.clone()),
        async {
            stopped.await.ok();
        },
    ));
    // The cursor of a page deep in the list, to measure keyset pagination away from the top.
    let deep: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/calls?limit=500"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("first page")
        .json()
        .await
        .expect("json");
    let cursor = deep["next_cursor"].as_str().unwrap_or_default().to_string();
    let scenarios = [
        ("first page (limit 50)", "/calls?limit=50".to_string()),
        (
            "filtered: bot + outcome + direction",
            format!("/calls?bot_id={bot}&outcome=LEAD&direction=inbound&limit=50"),
        ),
        (
            "date window (one day)",
            "/calls?from=2026-01-03&to=2026-01-04&limit=50".to_string(),
        ),
        (
            "next page via cursor",
            format!("/calls?limit=50&cursor={cursor}"),
        ),
    ];
    for (name, path) in scenarios {
        let f = load(&base, &key, &path, secs, concurrency).await;
        println!(
            "  {name:<38} {:>7.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} requests, {concurrency} clients)",
            f.requests as f64 / f.secs,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3,
            f.requests
        );
    }
    stop.send(()).ok();
    server.await.expect("server task").expect("server");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        run("SQLite", sqlite().await).await;
        match std::env::var(POSTGRES_ENV) {
            Ok(url) if !url.is_empty() => run("PostgreSQL", postgres(&url).await).await,
            _ => {
                println!("PostgreSQL: skipped ({POSTGRES_ENV} unset; scripts/bench-api starts one)")
            }
        }
    });
}
