//! Post-call throughput and webhook latency: N finished calls are queued as agents would queue
//! them; post-call processing stores, analyses and announces them while the deliverer sends each
//! webhook to a receiver on 127.0.0.1. Prints records processed per second and the latency from
//! call end (the push) to the receiver, p50/p99.
//!
//! CALLFLEET_BENCH_RECORDS (default 500); the store is SQLite, or PostgreSQL when
//! CALLFLEET_TEST_POSTGRES_URL is set; the queue is the file queue, and Redis too when
//! CALLFLEET_TEST_REDIS_URL is set.

use callfleet_core::domain::{
    CallDirection, CallRecord, CallStatus, Evidence, Outcome, Speaker, Turn,
};
use callfleet_fleet::{FileQueue, PostCallQueue};
use callfleet_postcall::{
    AddressPolicy, DeliveryConfig, HttpTransport, PostCallWorker, WebhookDeliverer,
};
use callfleet_store::{NewCompany, NewWebhookEndpoint, Store};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn record(i: usize, company: &str) -> CallRecord {
    let now = now_ms();
    CallRecord {
        id: format!("call_bench_{i}_{now}"),
        company_id: company.into(),
        bot_id: "bot_1".into(),
        bot_config_version: 1,
        direction: CallDirection::Inbound,
        status: CallStatus::Completed,
        from_number: Some("+79161234567".into()),
        to_number: None,
        room: None,
        started_at: now - 60_000,
        ended_at: Some(now),
        language: Some("en".into()),
        transcript: (0..10)
            .map(|t| Turn {
                speaker: if t % 2 == 0 {
                    Speaker::Bot
                } else {
                    Speaker::User
                },
                text: "a sentence of about eight words said here".into(),
                at_ms: t * 3_000,
                interrupted: false,
            })
            .collect(),
        fields: [("phone".to_string(), "+79161234567".to_string())].into(),
        outcome: Some(Outcome {
            kind: "LEAD".into(),
            evidence: vec![Evidence::Field {
                turn: 5,
                name: "phone".into(),
                value: "+79161234567".into(),
            }],
        }),
        summary: None,
        metrics: vec![],
    }
}

/// A minimal HTTP receiver: answers 200 and notes, per request, how long after the call's end
/// (`data.ended_at` in the body) it arrived.
async fn receiver(latencies: Arc<Mutex<Vec<i64>>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let latencies = latencies.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + length {
                        continue;
                    }
                    let body: serde_json::Value =
                        serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap_or_default();
                    if let Some(ended) = body["data"]["ended_at"].as_i64() {
                        latencies.lock().unwrap().push(now_ms() - ended);
                    }
                    buf.drain(..end + 4 + length);
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if socket.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Calls of `company` stored so far.
async fn stored_calls(store: &Store, company: &str) -> usize {
    let filter = callfleet_store::CallFilter {
        company_id: Some(company.to_string()),
        ..Default::default()
    };
    let mut count = 0;
    let mut cursor = None;
    loop {
        let page = store
            .list_calls(&filter, cursor.as_deref(), 500)
            .await
            .unwrap()
            .unwrap();
        count += page.calls.len();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return count,
        }
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(label: &str, store: &Store, queue: Arc<dyn PostCallQueue>, records: usize) {
    let company = store
        .create_company(NewCompany {
            name: "Bench".into(),
            timezone: "UTC".into(),
            max_concurrent_calls: 100,
        })
        .await
        .unwrap()
        .id;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let port = receiver(latencies.clone()).await;
    store
        .create_webhook(
            &company,
            NewWebhookEndpoint {
                url: format!("http://127.0.0.1:{port}/hook"),
                description: None,
                events: vec!["call.completed".into()],
            },
        )
        .await
        .unwrap();
    let transport = HttpTransport::new(
        AddressPolicy::parse("127.0.0.1/32").unwrap(),
        Duration::from_secs(10),
    )
    .unwrap();
    let deliverer = WebhookDeliverer::new(
        Arc::new(store.clone()),
        Arc::new(transport),
        DeliveryConfig::default(),
    );
    let worker =
        PostCallWorker::new(queue.clone(), store.clone(), "bench").with_deliverer(deliverer);
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));

    let started = Instant::now();
    for i in 0..records {
        queue.push(&record(i, &company)).await.unwrap();
    }
    let pushed = started.elapsed();
    let mut processed_by = None;
    let delivered_by = loop {
        if processed_by.is_none() && stored_calls(store, &company).await >= records {
            processed_by = Some(started.elapsed());
        }
        let done = latencies.lock().unwrap().len();
        if (processed_by.is_some() && done >= records)
            || started.elapsed() > Duration::from_secs(600)
        {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let processed_by = processed_by.unwrap_or(delivered_by);
    stop.cancel();
    running.await.ok();
    let mut l = latencies.lock().unwrap().clone();
    l.sort_unstable();
    println!(
        "{label}: {records} records pushed in {:.2} s, stored and analysed by {:.2} s = {:.0} records/s, \
         webhooks delivered by {:.2} s; latency call end → receiver p50 {} ms, p99 {} ms ({} delivered)",
        pushed.as_secs_f64(),
        processed_by.as_secs_f64(),
        records as f64 / processed_by.as_secs_f64(),
        delivered_by.as_secs_f64(),
        percentile(&l, 50.0),
        percentile(&l, 99.0),
        l.len()
    );
}

#[tokio::main]
async fn main() {
    let records: usize = std::env::var("CALLFLEET_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let sqlite = callfleet_store::testing::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let file: Arc<dyn PostCallQueue> = Arc::new(FileQueue::open(dir.path()).unwrap());
    run("SQLite + file queue", &sqlite.store, file, records).await;
    if let Ok(url) = std::env::var(callfleet_store::testing::POSTGRES_ENV) {
        if !url.is_empty() {
            let pg = callfleet_store::testing::postgres(&url).await;
            if let Some(redis) = callfleet_fleet::testing::redis_queue().await {
                run("PostgreSQL + Redis stream", &pg.store, redis, records).await;
            }
        }
    }
}
