//! This process's CPU and memory, for heartbeats (and the capacity bench). Read from /proc; zero
//! where it is not there.

use std::time::{Duration, Instant};

/// USER_HZ, the unit of /proc's CPU times: 100 on every Linux this runs on.
const TICKS_PER_SEC: u64 = 100;

pub(crate) struct LoadSampler {
    last: Option<(Instant, u64)>,
    ticks_per_sec: f64,
    cores: f64,
}

impl LoadSampler {
    pub(crate) fn new() -> LoadSampler {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        LoadSampler {
            last: None,
            ticks_per_sec: TICKS_PER_SEC as f64,
            cores,
        }
    }

    /// CPU use since the previous sample, as a share of the whole machine (0.0–1.0).
    pub(crate) fn cpu(&mut self) -> f32 {
        let Some(ticks) = cpu_ticks() else { return 0.0 };
        let now = Instant::now();
        let share = match self.last {
            Some((at, before)) => {
                let secs = now.duration_since(at).as_secs_f64();
                if secs > 0.0 {
                    (ticks.saturating_sub(before) as f64 / self.ticks_per_sec / secs / self.cores)
                        as f32
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, ticks));
        share.clamp(0.0, 1.0)
    }
}

/// CPU time (user + system) this process has used so far.
pub fn cpu_time() -> Duration {
    Duration::from_millis(cpu_ticks().unwrap_or(0) * 1000 / TICKS_PER_SEC)
}

fn cpu_ticks() -> Option<u64> {
    stat_cpu_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// utime + stime from a /proc/PID/stat line.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name (which may hold spaces) start after the last ')', counted as
    // written (tpgid is -1 without a terminal, so skipping what does not parse would shift them).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory in bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime() {
        let check =
            |line: &str, want: Option<u64>| assert_eq!(stat_cpu_ticks(line), want, "{line}");
        check("4242 (callfleet) S 1 4242 4242 0 -1 4194560 9156 0 0 0 731 212 0 0 20 0 12 0 1907 123 456", Some(943));
        // A command name with spaces and a ')' in it; a controlling terminal (tpgid ≥ 0).
        check(
            "7 (tokio-rt (x) y) R 1 7 7 34816 7 4194304 10 0 0 0 5 6 0 0 20 0 1 0 1 2 3",
            Some(11),
        );
        check("7 (cut short) R 1 7", None);
        check("", None);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        // The clock ticks every 10 ms of CPU: burn until it has (a few seconds at most).
        let started = Instant::now();
        let mut x = 0u64;
        while cpu_time() == Duration::ZERO && started.elapsed() < Duration::from_secs(5) {
            x = (0..100_000u64).fold(x, |a, b| a.wrapping_mul(31).wrapping_add(b));
        }
        assert!(cpu_time() > Duration::ZERO, "{x}");
        assert!(rss_bytes() > 1 << 20);
    }
}
