//! Retries with exponential backoff, on tokio time so tests run on a paused clock.

use std::future::Future;
use std::time::Duration;

/// How often and how patiently to retry a failed connection or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry; doubled after each failure.
    pub initial: Duration,
    /// Cap on one delay.
    pub max: Duration,
    /// Tries in all, the first included; `1` means no retry.
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        // A caller waits on every retry, so a call gives up on a provider within about a second
        // and moves to the next one in its chain.
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            attempts: 3,
        }
    }
}

impl Backoff {
    /// No retries at all, for tests of the fallback itself.
    pub const NONE: Backoff = Backoff {
        initial: Duration::ZERO,
        max: Duration::ZERO,
        attempts: 1,
    };

    /// The delay before retry number `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Runs `op` until it succeeds, fails with an error `retryable` rejects, or tries run out.
    pub async fn retry<T, E, F, Fut>(
        &self,
        mut op: F,
        retryable: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut tried = 0;
        loop {
            tried += 1;
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if tried < self.attempts.max(1) && retryable(&e) => {
                    tokio::time::sleep(self.delay(tried)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            attempts: 5,
        };
        let got: Vec<u128> = (1..=5).map(|r| b.delay(r).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_what_is_retryable() {
        let b = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(10),
            attempts: 3,
        };
        for (fatal, expect_tries) in [(false, 3), (true, 1)] {
            let mut tries = 0;
            let r: Result<(), bool> = b
                .retry(
                    || {
                        tries += 1;
                        std::future::ready(Err(fatal))
                    },
                    |fatal| !fatal,
                )
                .await;
            assert!(r.is_err());
            assert_eq!(tries, expect_tries, "fatal={fatal}");
        }
    }
}
