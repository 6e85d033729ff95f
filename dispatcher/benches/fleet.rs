//! Fleet figures on Redis (`CALLFLEET_TEST_REDIS_URL`, started by `scripts/bench-fleet`):
//! - dispatch latency: `place()` from request to job queued on a worker (LiveKit's own join
//!   excluded), p50/p99 over BENCH_PLACEMENTS placements with 4 live workers;
//! - failover time: from a worker's last heartbeat to its call being queued on another worker,
//!   with the production heartbeat TTL and scan interval, over BENCH_FAILOVERS trials.

use callfleet_core::domain::CallDirection;
use callfleet_dispatcher::{Dispatcher, DispatcherConfig, PlacementRequest};
use callfleet_fleet::testing::unique_prefix;
use callfleet_fleet::{FleetBus, RedisBus, WorkerStatus, HEARTBEAT_TTL, MESSAGE_VERSION};
use callfleet_store::testing::sqlite;
use callfleet_store::{NewBot, NewCompany};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn worker(id: &str, active: u32) -> WorkerStatus {
    WorkerStatus {
        v: MESSAGE_VERSION,
        worker_id: id.into(),
        capacity: 100_000,
        active_calls: active,
        cpu: 0.1,
        memory_bytes: 0,
        provider_connections: 0,
        draining: false,
        at: 0,
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn main() {
    let url = std::env::var("CALLFLEET_TEST_REDIS_URL")
        .expect("CALLFLEET_TEST_REDIS_URL (scripts/bench-fleet starts Redis)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let db = sqlite().await;
        let company = db.store.create_company(NewCompany { name: "bench".into(), timezone: "UTC".into(), max_concurrent_calls: 1_000_000 }).await.unwrap();
        let text = "language: en\ngreeting: Hi\nfallback: Sorry\n";
        let config = callfleet_core::BotConfig::parse_any(text).unwrap();
        let (bot, _) = db.store.create_bot(NewBot { company_id: &company.id, name: "b", config: &config, source_text: text, source_format: "yaml" }).await.unwrap();

        // Dispatch latency.
        let bus: Arc<dyn FleetBus> = Arc::new(RedisBus::connect(&url, &unique_prefix()).await.unwrap());
        for i in 0..4 {
            bus.heartbeat(&worker(&format!("w{i}"), 0), Duration::from_secs(600)).await.unwrap();
        }
        let dispatcher = Dispatcher::new(bus.clone(), db.store.clone(), DispatcherConfig::default());
        let n = env_or("BENCH_PLACEMENTS", 500);
        let mut latencies = Vec::with_capacity(n);
        for i in 0..n {
            let request = PlacementRequest { room: format!("room-{i}"), bot_id: bot.id.clone(), direction: CallDirection::Web, caller_identity: None, from_number: None, to_number: None };
            let t = Instant::now();
            dispatcher.place(request).await.expect("placed");
            latencies.push(t.elapsed());
            // Keep the per-company count realistic: calls end as new ones start.
            if i % 50 == 49 {
                for w in 0..4 {
                    for job in bus.jobs_of(&format!("w{w}")).await.unwrap() {
                        bus.finish_job(&format!("w{w}"), &job.call_id).await.unwrap();
                    }
                }
            }
        }
        latencies.sort();
        println!(
            "dispatch latency (request → job queued, Redis, 4 workers): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({n} placements)",
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.last().unwrap().as_secs_f64() * 1e3
        );

        // Failover time.
        let trials = env_or("BENCH_FAILOVERS", 10);
        let mut times = Vec::new();
        for trial in 0..trials {
            let bus: Arc<dyn FleetBus> = Arc::new(RedisBus::connect(&url, &unique_prefix()).await.unwrap());
            let dispatcher = Arc::new(Dispatcher::new(bus.clone(), db.store.clone(), DispatcherConfig::default()));
            bus.heartbeat(&worker("dying", 0), HEARTBEAT_TTL).await.unwrap();
            let request = PlacementRequest { room: format!("fo-{trial}"), bot_id: bot.id.clone(), direction: CallDirection::Web, caller_identity: None, from_number: None, to_number: None };
            let placed = dispatcher.place(request).await.unwrap();
            bus.heartbeat(&worker("survivor", 0), Duration::from_secs(600)).await.unwrap();
            let stop = CancellationToken::new();
            let scanner = tokio::spawn(dispatcher.clone().run_failover(stop.clone()));
            // The dying worker's last beat is now; it never beats again.
            bus.heartbeat(&worker("dying", 1), HEARTBEAT_TTL).await.unwrap();
            let last_beat = Instant::now();
            loop {
                if bus.jobs_of("survivor").await.unwrap().iter().any(|j| j.call_id == placed.job.call_id) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            times.push(last_beat.elapsed());
            stop.cancel();
            scanner.await.ok();
        }
        times.sort();
        println!(
            "failover (last heartbeat → call queued on another worker; TTL {} ms): p50 {:.0} ms  max {:.0} ms  ({trials} trials)",
            HEARTBEAT_TTL.as_millis(),
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            times.last().unwrap().as_secs_f64() * 1e3
        );
    });
}
