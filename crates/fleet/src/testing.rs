//! Buses and queues for tests, on every transport the machine offers: in-process always, Redis
//! when `CALLFLEET_TEST_REDIS_URL` is set (required under CI). Each Redis instance gets a fresh
//! key prefix so tests never see each other's keys.

use crate::{FleetBus, MemoryBus, PostCallQueue, RedisBus, RedisQueue};
use std::sync::Arc;

pub const REDIS_ENV: &str = "CALLFLEET_TEST_REDIS_URL";

/// The Redis URL for tests, if any; panics under CI when it is missing.
pub fn redis_url() -> Option<String> {
    match std::env::var(REDIS_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{REDIS_ENV} is not set under CI: the Redis half of the suite cannot run")
        }
        _ => {
            eprintln!("note: {REDIS_ENV} unset; testing the in-process bus only");
            None
        }
    }
}

pub fn unique_prefix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "cftest:{}:{nanos}:{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `("memory", bus)` and, when available, `("redis", bus)`.
pub async fn test_buses() -> Vec<(&'static str, Arc<dyn FleetBus>)> {
    let mut out: Vec<(&'static str, Arc<dyn FleetBus>)> =
        vec![("memory", Arc::new(MemoryBus::new()))];
    if let Some(url) = redis_url() {
        let bus = RedisBus::connect(&url, &unique_prefix())
            .await
            .expect("connect to test Redis");
        out.push(("redis", Arc::new(bus)));
    }
    out
}

/// A Redis post-call queue under a fresh prefix, when Redis is available.
pub async fn redis_queue() -> Option<Arc<dyn PostCallQueue>> {
    let url = redis_url()?;
    Some(Arc::new(
        RedisQueue::connect(&url, &unique_prefix())
            .await
            .expect("connect to test Redis"),
    ))
}
