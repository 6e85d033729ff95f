//! Per-key token buckets: each key may make `rate` requests a second on average and `burst` at
//! once. Time comes from tokio so tests run on a paused clock.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::time::Instant;

pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Beyond this many keys, idle full buckets are forgotten so memory stays bounded.
const MAX_TRACKED_KEYS: usize = 100_000;

impl RateLimiter {
    pub(crate) fn new(rate_per_sec: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: rate_per_sec,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` has a request left, without taking it; `Err(seconds to wait)` when not.
    pub(crate) fn available(&self, key: &str) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let buckets = self
            .buckets
            .lock()
            .expect("rate limiter lock is never poisoned: no panics inside");
        match buckets.get(key) {
            None => Ok(()),
            Some(bucket) => {
                let elapsed = now.duration_since(bucket.updated).as_secs_f64();
                let tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
                if tokens >= 1.0 {
                    Ok(())
                } else {
                    Err(((1.0 - tokens) / self.rate).ceil().max(1.0) as u64)
                }
            }
        }
    }

    /// Takes one request from `key`'s bucket; `Err(seconds to wait)` when it is empty.
    pub(crate) fn check(&self, key: &str) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .expect("rate limiter lock is never poisoned: no panics inside");
        if buckets.len() >= MAX_TRACKED_KEYS && !buckets.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimiter;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn buckets_empty_and_refill_per_key() {
        let limiter = RateLimiter::new(2.0, 3);
        for _ in 0..3 {
            assert_eq!(limiter.check("a"), Ok(()));
        }
        assert_eq!(limiter.check("a"), Err(1), "burst spent");
        assert_eq!(
            limiter.check("b"),
            Ok(()),
            "other keys have their own bucket"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(
            limiter.check("a"),
            Ok(()),
            "one token back after 1/rate seconds"
        );
        assert_eq!(limiter.check("a"), Err(1));
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            assert_eq!(limiter.check("a"), Ok(()));
        }
        assert!(
            limiter.check("a").is_err(),
            "refill stops at the burst size"
        );
        assert_eq!(limiter.available("a"), Err(1), "looking takes nothing");
        assert_eq!(limiter.available("never-seen"), Ok(()));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(limiter.available("a"), Ok(()));
        assert_eq!(limiter.available("a"), Ok(()), "and takes nothing again");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_rate_means_unlimited() {
        let limiter = RateLimiter::new(0.0, 1);
        for _ in 0..1000 {
            assert_eq!(limiter.check("a"), Ok(()));
        }
    }
}
