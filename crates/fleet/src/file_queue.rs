//! The post-call queue of `callfleet dev`: records are appended (and fsynced) to a JSON-lines file
//! under the data dir before `push` returns, acks to a second file, so a crash loses nothing and a
//! restart delivers every unacked record again. The log is compacted to what is still pending at
//! open and whenever acked records outnumber pending ones by far, so it does not grow forever.

use crate::bus::{PostCallQueue, QueuedRecord, Result};
use async_trait::async_trait;
use callfleet_core::domain::CallRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Serialize, Deserialize)]
struct Entry {
    id: String,
    record: CallRecord,
}

struct State {
    /// Unacked records by id (ids sort in push order).
    pending: BTreeMap<String, CallRecord>,
    /// Records handed to a consumer and not acked yet: id → when taken.
    taken: HashMap<String, Instant>,
    next_seq: u64,
    log: File,
    acks: File,
    /// Acks written since the log was last compacted.
    acked_since_compaction: usize,
}

pub struct FileQueue {
    state: Mutex<State>,
    pushed: Notify,
    dir: PathBuf,
}

impl std::fmt::Debug for FileQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileQueue")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

const LOG: &str = "postcall.jsonl";
const ACKS: &str = "postcall.acked";

/// Rewrites the log with only `pending` (atomically, by rename) and starts a fresh ack file;
/// returns both, open for appending.
fn compact(dir: &Path, pending: &BTreeMap<String, CallRecord>) -> Result<(File, File)> {
    let tmp = dir.join(format!("{LOG}.tmp"));
    {
        let mut out = File::create(&tmp)?;
        for (id, record) in pending {
            serde_json::to_writer(
                &mut out,
                &Entry {
                    id: id.clone(),
                    record: record.clone(),
                },
            )?;
            out.write_all(b"\n")?;
        }
        out.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(LOG))?;
    // Acks of records no longer in the log mean nothing; a crash before this line leaves them
    // harmlessly in place.
    let acks = File::create(dir.join(ACKS))?;
    let log = OpenOptions::new().append(true).open(dir.join(LOG))?;
    Ok((log, acks))
}

/// Compaction runs once this many acks accumulated and they are four times the pending records.
const COMPACT_AFTER_ACKS: usize = 1024;

impl FileQueue {
    /// Opens (creating) the queue in `dir`, keeping only unacked records.
    pub fn open(dir: &Path) -> Result<FileQueue> {
        std::fs::create_dir_all(dir)?;
        let acked: std::collections::HashSet<String> = match File::open(dir.join(ACKS)) {
            Ok(f) => BufReader::new(f).lines().collect::<std::io::Result<_>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(e.into()),
        };
        let mut pending = BTreeMap::new();
        if let Ok(f) = File::open(dir.join(LOG)) {
            for line in BufReader::new(f).lines() {
                let line = line?;
                // A torn last line (crash mid-write) was never acknowledged to the pusher.
                let Ok(entry) = serde_json::from_str::<Entry>(&line) else {
                    continue;
                };
                if !acked.contains(&entry.id) {
                    pending.insert(entry.id, entry.record);
                }
            }
        }
        let (log, acks) = compact(dir, &pending)?;
        let next_seq = pending
            .keys()
            .last()
            .and_then(|id| id.parse::<u64>().ok())
            .map_or(0, |n| n + 1);
        Ok(FileQueue {
            state: Mutex::new(State {
                pending,
                taken: HashMap::new(),
                next_seq,
                log,
                acks,
                acked_since_compaction: 0,
            }),
            pushed: Notify::new(),
            dir: dir.to_path_buf(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("file queue lock poisoned")
    }

    /// Records not yet acknowledged.
    pub fn pending_len(&self) -> usize {
        self.state().pending.len()
    }
}

#[async_trait]
impl PostCallQueue for FileQueue {
    async fn push(&self, record: &CallRecord) -> Result<String> {
        let id = {
            let mut state = self.state();
            let id = format!("{:020}", state.next_seq);
            state.next_seq += 1;
            let mut line = serde_json::to_vec(&Entry {
                id: id.clone(),
                record: record.clone(),
            })?;
            line.push(b'\n');
            state.log.write_all(&line)?;
            state.log.sync_data()?;
            state.pending.insert(id.clone(), record.clone());
            id
        };
        self.pushed.notify_waiters();
        Ok(id)
    }

    async fn pop(&self, _consumer: &str, wait: Duration) -> Result<Option<QueuedRecord>> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.pushed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.state();
                let next = state
                    .pending
                    .iter()
                    .find(|(id, _)| !state.taken.contains_key(*id))
                    .map(|(id, r)| (id.clone(), r.clone()));
                if let Some((id, record)) = next {
                    state.taken.insert(id.clone(), Instant::now());
                    return Ok(Some(QueuedRecord { id, record }));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn ack(&self, id: &str) -> Result<()> {
        let mut state = self.state();
        if state.pending.remove(id).is_some() {
            state.taken.remove(id);
            let line = format!("{id}\n");
            state.acks.write_all(line.as_bytes())?;
            state.acks.sync_data()?;
            state.acked_since_compaction += 1;
            if state.acked_since_compaction >= COMPACT_AFTER_ACKS
                && state.acked_since_compaction >= 4 * state.pending.len()
            {
                let (log, acks) = compact(&self.dir, &state.pending)?;
                state.log = log;
                state.acks = acks;
                state.acked_since_compaction = 0;
            }
        }
        Ok(())
    }

    async fn reclaim(&self, _consumer: &str, idle: Duration) -> Result<Vec<QueuedRecord>> {
        let now = Instant::now();
        let mut state = self.state();
        let stale: Vec<String> = state
            .taken
            .iter()
            .filter(|(_, at)| now.duration_since(**at) >= idle)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in stale {
            state.taken.insert(id.clone(), now);
            if let Some(record) = state.pending.get(&id) {
                out.push(QueuedRecord {
                    id,
                    record: record.clone(),
                });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callfleet_core::domain::{CallDirection, CallStatus};

    fn record(id: &str) -> CallRecord {
        CallRecord {
            id: id.into(),
            company_id: "cmp".into(),
            bot_id: "bot".into(),
            bot_config_version: 1,
            direction: CallDirection::Web,
            status: CallStatus::Completed,
            from_number: None,
            to_number: None,
            room: None,
            started_at: 0,
            ended_at: Some(1),
            language: None,
            transcript: vec![],
            fields: Default::default(),
            outcome: None,
            summary: None,
            metrics: vec![],
        }
    }

    #[tokio::test]
    async fn consumed_records_are_compacted_away_without_losing_pending_ones() {
        let dir = tempfile::tempdir().unwrap();
        let queue = FileQueue::open(dir.path()).unwrap();
        queue.push(&record("kept")).await.unwrap();
        let kept = queue.pop("c", Duration::ZERO).await.unwrap().unwrap();
        for i in 0..COMPACT_AFTER_ACKS {
            let id = queue.push(&record(&format!("call_{i}"))).await.unwrap();
            queue.ack(&id).await.unwrap();
        }
        let log = std::fs::read_to_string(dir.path().join(LOG)).unwrap();
        assert_eq!(
            log.lines().count(),
            1,
            "only the pending record is left in the log"
        );
        assert_eq!(std::fs::read_to_string(dir.path().join(ACKS)).unwrap(), "");
        let id = queue.push(&record("after")).await.unwrap();
        drop(queue);
        let reopened = FileQueue::open(dir.path()).unwrap();
        assert_eq!(reopened.pending_len(), 2, "nothing pending was lost");
        let first = reopened.pop("c", Duration::ZERO).await.unwrap().unwrap();
        assert_eq!((first.id, first.record.id), (kept.id, "kept".to_string()));
        let second = reopened.pop("c", Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(second.id, id);
    }
}
