//! This process's CPU and memory, for heartbeats. Read from /proc; zero where it is not there.

use std::time::Instant;

pub(crate) struct LoadSampler {
    last: Option<(Instant, u64)>,
    ticks_per_sec: f64,
    cores: f64,
}

impl LoadSampler {
    pub(crate) fn new() -> LoadSampler {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        // USER_HZ is 100 on every Linux this runs on.
        LoadSampler { last: None, ticks_per_sec: 100.0, cores }
    }

    /// CPU use since the previous sample, as a share of the whole machine (0.0–1.0).
    pub(crate) fn cpu(&mut self) -> f32 {
        let Some(ticks) = cpu_ticks() else { return 0.0 };
        let now = Instant::now();
        let share = match self.last {
            Some((at, before)) => {
                let secs = now.duration_since(at).as_secs_f64();
                if secs > 0.0 {
                    (ticks.saturating_sub(before) as f64 / self.ticks_per_sec / secs / self.cores) as f32
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

fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory in bytes.
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}
