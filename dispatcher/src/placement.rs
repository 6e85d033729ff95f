//! Choosing a worker: pure, so the policy is tested with tables.
//!
//! LiveKit's own dispatch weighs CPU alone. Here a worker must have a free call slot and not be
//! draining; among those the least loaded wins, load being the larger of its call-slot use and its
//! CPU use, so a worker whose calls are cheap but whose CPU is busy (or the reverse) is not chosen
//! over an idle one. Ties go to fewer active calls, then to the id, so the choice is stable.

use callfleet_fleet::WorkerStatus;

fn load(worker: &WorkerStatus) -> f32 {
    let slots = worker.active_calls as f32 / worker.capacity.max(1) as f32;
    slots.max(worker.cpu)
}

/// The worker to place the next call on, never one in `exclude`.
pub fn choose_worker<'a>(
    workers: &'a [WorkerStatus],
    exclude: &[&str],
) -> Option<&'a WorkerStatus> {
    workers
        .iter()
        .filter(|w| w.has_room() && w.cpu < 0.95 && !exclude.contains(&w.worker_id.as_str()))
        .min_by(|a, b| {
            load(a)
                .total_cmp(&load(b))
                .then(a.active_calls.cmp(&b.active_calls))
                .then(a.worker_id.cmp(&b.worker_id))
        })
}

#[cfg(test)]
mod tests {
    use super::choose_worker;
    use callfleet_fleet::{WorkerStatus, MESSAGE_VERSION};

    fn w(id: &str, active: u32, capacity: u32, cpu: f32, draining: bool) -> WorkerStatus {
        WorkerStatus {
            v: MESSAGE_VERSION,
            worker_id: id.into(),
            capacity,
            active_calls: active,
            cpu,
            memory_bytes: 0,
            provider_connections: 0,
            draining,
            at: 0,
        }
    }

    #[track_caller]
    fn check(workers: &[WorkerStatus], exclude: &[&str], expected: Option<&str>) {
        assert_eq!(
            choose_worker(workers, exclude).map(|w| w.worker_id.as_str()),
            expected
        );
    }

    #[test]
    fn least_loaded_worker_with_room_wins() {
        check(
            &[w("a", 5, 10, 0.1, false), w("b", 2, 10, 0.1, false)],
            &[],
            Some("b"),
        );
        check(
            &[w("a", 5, 10, 0.1, false), w("b", 2, 10, 0.8, false)],
            &[],
            Some("a"),
        );
        check(
            &[w("a", 10, 10, 0.1, false), w("b", 9, 10, 0.2, false)],
            &[],
            Some("b"),
        );
        check(
            &[w("a", 0, 10, 0.0, true), w("b", 9, 10, 0.2, false)],
            &[],
            Some("b"),
        );
        check(
            &[w("a", 1, 10, 0.0, false), w("b", 1, 10, 0.0, false)],
            &[],
            Some("a"),
        );
        check(
            &[w("a", 1, 10, 0.0, false), w("b", 3, 10, 0.0, false)],
            &["a"],
            Some("b"),
        );
        check(&[w("a", 1, 4, 0.97, false)], &[], None);
        check(
            &[w("a", 4, 4, 0.0, false), w("b", 0, 0, 0.0, false)],
            &[],
            None,
        );
        check(&[], &[], None);
    }
}
