//! When a failed delivery is tried again: an exponential schedule spread over about a day, each
//! delay jittered so a recovering receiver is not hit by every sender at once, and never sooner
//! than the receiver's `Retry-After`. Pure: the jitter is passed in.

use std::time::Duration;

/// The retry schedule of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The wait before attempt 2, 3, …; its length + 1 is the number of attempts.
    pub delays: Vec<Duration>,
    /// Each delay is drawn from `delay × (1 ± jitter)`.
    pub jitter: f64,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 12 attempts over about 24 hours: 5 s, 30 s, 2 min, 5 min, 15 min, 30 min, 1 h, 2 h, 4 h,
    /// 8 h, 8 h (±20 %).
    fn default() -> RetryPolicy {
        let secs = [
            5, 30, 120, 300, 900, 1800, 3600, 7200, 14_400, 28_800, 28_800,
        ];
        RetryPolicy {
            delays: secs.iter().map(|s| Duration::from_secs(*s)).collect(),
            jitter: 0.2,
            max_retry_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len() + 1).unwrap_or(u32::MAX)
    }

    /// The wait after failed attempt `attempt` (1-based), or `None` when it was the last.
    /// `unit` in [0, 1) picks the jitter; `retry_after` is the receiver's request.
    pub fn delay_after(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Duration> {
        let base = *self
            .delays
            .get(usize::try_from(attempt).ok()?.checked_sub(1)?)?;
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        // Whole milliseconds: the outbox keeps unix-ms times.
        let jittered =
            Duration::from_millis((base.as_millis() as f64 * factor.max(0.0)).round() as u64);
        let asked = retry_after.map_or(Duration::ZERO, |r| r.min(self.max_retry_after));
        Some(jittered.max(asked))
    }
}

/// `Retry-After` as seconds or an HTTP date, relative to `now_ms`.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let ms = at.timestamp_millis() - now_ms;
    Some(Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Option<Duration> {
        Some(Duration::from_secs(secs))
    }

    #[test]
    fn the_schedule_spans_about_a_day_with_jitter() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 12);
        let total: Duration = policy.delays.iter().sum();
        assert!(
            (Duration::from_secs(20 * 3600)..Duration::from_secs(28 * 3600)).contains(&total),
            "{total:?}"
        );
        // (attempt, Retry-After, jitter unit) → wait.
        for (attempt, retry_after, unit, wait) in [
            (1, None, 0.5, s(5)),
            (1, None, 0.0, s(4)),
            (1, None, 1.0, s(6)),
            (2, None, 0.5, s(30)),
            (11, None, 0.5, s(28_800)),
            (12, None, 0.5, None),
            (0, None, 0.5, None),
            // Retry-After is honoured when longer, never shortens the schedule.
            (1, s(120), 0.5, s(120)),
            (3, s(1), 0.5, s(120)),
            (1, s(7 * 24 * 3600), 0.5, s(24 * 3600)),
        ] {
            assert_eq!(
                policy.delay_after(attempt, retry_after, unit),
                wait,
                "attempt {attempt}, Retry-After {retry_after:?}, unit {unit}"
            );
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .timestamp_millis();
        for (value, wait) in [
            ("120", s(120)),
            (" 0 ", s(0)),
            ("Wed, 21 Oct 2015 07:28:00 GMT", s(60)),
            ("Wed, 21 Oct 2015 07:00:00 GMT", s(0)),
            ("soon", None),
        ] {
            assert_eq!(parse_retry_after(value, now), wait, "{value}");
        }
    }
}
