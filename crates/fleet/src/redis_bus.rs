//! The production transport on Redis.
//!
//! Keys (all under a prefix, `cf:` by default):
//! - `worker:{id}` — the latest heartbeat (JSON), expiring after the heartbeat TTL;
//! - `workers` — a set of every registered worker id, so a dead one (key expired) is still known;
//! - `worker:{id}:jobs` — hash call_id → job, what the worker holds until it finishes;
//! - `worker:{id}:queue` — list of jobs waiting to be taken (BRPOP);
//! - `claim:{key}` — `SET NX PX` claims that stop two dispatchers placing one room twice;
//! - `checkpoint:{call_id}` — the call's latest checkpoint, with a TTL;
//! - `postcall` — a stream with consumer group `postcall` for finished calls; an entry is deleted
//!   once acked, so the stream holds only what is not processed yet;
//! - `postcall:dead` — entries that could not be read as a call record, set aside with the error
//!   (they would otherwise come back forever);
//! - `dead-jobs` — jobs a worker could not read (newer version, damaged), with the error; the
//!   latest 1 000 are kept.

use crate::bus::{
    check_version, FleetBus, FleetError, PostCallQueue, QueuedRecord, Result, UnreadableEntry,
};
use crate::messages::{Checkpoint, Job, WorkerStatus};
use async_trait::async_trait;
use callfleet_core::domain::CallRecord;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadOptions,
    StreamReadReply,
};
use redis::{AsyncCommands, AsyncConnectionConfig, Client};
use std::time::Duration;
use tokio::sync::Mutex;

async fn connections(url: &str) -> Result<(Client, ConnectionManager)> {
    let client = Client::open(url)?;
    let manager = client.get_connection_manager().await?;
    Ok((client, manager))
}

/// A connection for blocking reads (BRPOP, XREADGROUP BLOCK): without a response timeout, and
/// separate so a blocked read never stalls other commands.
async fn blocking_connection(client: &Client) -> Result<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new().set_response_timeout(None);
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// The blocking-read connection, made again after it breaks: a multiplexed connection does not
/// reconnect by itself, so after Redis restarts every blocking read would otherwise fail for
/// good (the connection manager used for everything else reconnects on its own).
struct Blocking {
    client: Client,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl Blocking {
    async fn open(client: &Client) -> Result<Blocking> {
        Ok(Blocking {
            client: client.clone(),
            conn: Mutex::new(Some(blocking_connection(client).await?)),
        })
    }

    /// Runs `cmd`; a connection that broke is dropped, to be made again on the next read.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut guard = self.conn.lock().await;
        let conn = match guard.as_mut() {
            Some(conn) => conn,
            None => guard.insert(blocking_connection(&self.client).await?),
        };
        let result = cmd.query_async(conn).await;
        if let Err(e) = &result {
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_unrecoverable_error()
            {
                *guard = None;
            }
        }
        Ok(result?)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Workers, jobs and checkpoints on Redis.
pub struct RedisBus {
    conn: ConnectionManager,
    blocking: Blocking,
    prefix: String,
}

impl RedisBus {
    /// Connects to `redis://…`; keys go under `prefix` (e.g. `cf:`).
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisBus> {
        let (client, conn) = connections(url).await?;
        let blocking = Blocking::open(&client).await?;
        Ok(RedisBus {
            conn,
            blocking,
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Takes a job this build cannot run off `worker_id` (its call id read from the raw JSON,
    /// when there is one) and keeps it under `dead-jobs` with the error, for an operator.
    async fn set_job_aside(&self, worker_id: &str, body: &str, error: &str) -> Result<()> {
        let call_id = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                v.get("call_id")
                    .and_then(|c| c.as_str())
                    .map(str::to_string)
            });
        tracing::error!(worker = %worker_id, call_id = call_id.as_deref().unwrap_or("?"), error = %error,
            "A job cannot be run by this worker; set aside under dead-jobs.");
        let entry = serde_json::json!({"worker": worker_id, "error": error, "job": body});
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .lpush(self.key("dead-jobs"), entry.to_string())
            .ignore()
            .ltrim(self.key("dead-jobs"), 0, 999)
            .ignore();
        if let Some(call_id) = &call_id {
            pipe.hdel(self.key(&format!("worker:{worker_id}:jobs")), call_id)
                .ignore();
        }
        pipe.exec_async(&mut conn).await?;
        Ok(())
    }
}

#[async_trait]
impl FleetBus for RedisBus {
    async fn heartbeat(&self, status: &WorkerStatus, ttl: Duration) -> Result<()> {
        let mut conn = self.conn.clone();
        let body = serde_json::to_string(status)?;
        redis::pipe()
            .cmd("SET")
            .arg(self.key(&format!("worker:{}", status.worker_id)))
            .arg(body)
            .arg("PX")
            .arg(millis(ttl))
            .ignore()
            .sadd(self.key("workers"), &status.worker_id)
            .ignore()
            .exec_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn deregister(&self, worker_id: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: () = conn.del(self.key(&format!("worker:{worker_id}"))).await?;
        Ok(())
    }

    async fn live_workers(&self) -> Result<Vec<WorkerStatus>> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn.smembers(self.key("workers")).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| self.key(&format!("worker:{id}")))
            .collect();
        let bodies: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let mut live = Vec::new();
        for (id, body) in ids.iter().zip(bodies) {
            let Some(body) = body else { continue };
            match serde_json::from_str::<WorkerStatus>(&body)
                .map_err(Into::into)
                .and_then(|s| check_version(s.v).map(|()| s))
            {
                Ok(status) => live.push(status),
                Err(e) => {
                    tracing::warn!(worker = %id, error = %e, "A worker's heartbeat cannot be read; it gets no calls from here.");
                }
            }
        }
        live.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        Ok(live)
    }

    async fn known_workers(&self) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let mut ids: Vec<String> = conn.smembers(self.key("workers")).await?;
        ids.sort();
        Ok(ids)
    }

    async fn forget_worker(&self, worker_id: &str) -> Result<bool> {
        // Only with no job left, checked and done in one step: a job assigned after the
        // failover scan read the worker's jobs must not be deleted with it.
        let script = redis::Script::new(
            r"if redis.call('HLEN', KEYS[2]) > 0 then return 0 end
              redis.call('SREM', KEYS[4], ARGV[1])
              redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
              return 1",
        );
        let mut conn = self.conn.clone();
        let forgotten: i64 = script
            .key(self.key(&format!("worker:{worker_id}")))
            .key(self.key(&format!("worker:{worker_id}:jobs")))
            .key(self.key(&format!("worker:{worker_id}:queue")))
            .key(self.key("workers"))
            .arg(worker_id)
            .invoke_async(&mut conn)
            .await?;
        Ok(forgotten == 1)
    }

    async fn claim(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(&format!("claim:{key}")))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    async fn release(&self, key: &str, owner: &str) -> Result<()> {
        // Compare-and-delete in one step, so an expired-and-retaken claim is not deleted.
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
        );
        let mut conn = self.conn.clone();
        let _: i64 = script
            .key(self.key(&format!("claim:{key}")))
            .arg(owner)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn release_room(&self, room: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: () = conn.del(self.key(&format!("claim:room:{room}"))).await?;
        Ok(())
    }

    async fn assign(&self, worker_id: &str, job: &Job) -> Result<()> {
        let mut conn = self.conn.clone();
        let body = serde_json::to_string(job)?;
        // Both in one MULTI: a job is never queued without being recorded as the worker's.
        redis::pipe()
            .atomic()
            .hset(
                self.key(&format!("worker:{worker_id}:jobs")),
                &job.call_id,
                &body,
            )
            .ignore()
            .lpush(self.key(&format!("worker:{worker_id}:queue")), &body)
            .ignore()
            .exec_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn next_job(&self, worker_id: &str, wait: Duration) -> Result<Option<Job>> {
        let secs = wait.as_secs_f64().max(0.01);
        let popped: Option<(String, String)> = self
            .blocking
            .query(&redis::Cmd::brpop(
                self.key(&format!("worker:{worker_id}:queue")),
                secs,
            ))
            .await?;
        let Some((_, body)) = popped else {
            return Ok(None);
        };
        let read = serde_json::from_str::<Job>(&body)
            .map_err(Into::into)
            .and_then(|job| check_version(job.v).map(|()| job));
        match read {
            Ok(job) => Ok(Some(job)),
            Err(e) => {
                self.set_job_aside(worker_id, &body, &e.to_string()).await?;
                Ok(None)
            }
        }
    }

    async fn finish_job(&self, worker_id: &str, call_id: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: () = conn
            .hdel(self.key(&format!("worker:{worker_id}:jobs")), call_id)
            .await?;
        Ok(())
    }

    async fn jobs_of(&self, worker_id: &str) -> Result<Vec<Job>> {
        let mut conn = self.conn.clone();
        let bodies: Vec<String> = conn
            .hvals(self.key(&format!("worker:{worker_id}:jobs")))
            .await?;
        let mut jobs: Vec<Job> = bodies
            .iter()
            .filter_map(|b| match serde_json::from_str::<Job>(b) {
                Ok(job) => Some(job),
                Err(e) => {
                    tracing::warn!(worker = %worker_id, error = %e, "A job cannot be read; left where it is.");
                    None
                }
            })
            .collect();
        jobs.sort_by(|a, b| a.call_id.cmp(&b.call_id));
        Ok(jobs)
    }

    async fn holds_job(&self, worker_id: &str, call_id: &str) -> Result<bool> {
        let mut conn = self.conn.clone();
        Ok(conn
            .hexists(self.key(&format!("worker:{worker_id}:jobs")), call_id)
            .await?)
    }

    async fn save_checkpoint(&self, checkpoint: &Checkpoint, ttl: Duration) -> Result<()> {
        // Compare-and-set in one step: the stored checkpoint's attempt is the fencing token.
        let script = redis::Script::new(
            r"local held = redis.call('GET', KEYS[1])
              if held then
                local ok, cp = pcall(cjson.decode, held)
                if ok and type(cp) == 'table' and tonumber(cp.attempt or 0) > tonumber(ARGV[2]) then
                  return tonumber(cp.attempt)
                end
              end
              redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
              return -1",
        );
        let mut conn = self.conn.clone();
        let body = serde_json::to_string(checkpoint)?;
        let held: i64 = script
            .key(self.key(&format!("checkpoint:{}", checkpoint.call_id)))
            .arg(body)
            .arg(checkpoint.attempt)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        if held >= 0 {
            return Err(crate::FleetError::Fenced {
                call_id: checkpoint.call_id.clone(),
                held: u32::try_from(held).unwrap_or(u32::MAX),
            });
        }
        Ok(())
    }

    async fn load_checkpoint(&self, call_id: &str) -> Result<Option<Checkpoint>> {
        let mut conn = self.conn.clone();
        let body: Option<String> = conn.get(self.key(&format!("checkpoint:{call_id}"))).await?;
        match body {
            Some(body) => {
                let checkpoint: Checkpoint = serde_json::from_str(&body)?;
                check_version(checkpoint.v)?;
                Ok(Some(checkpoint))
            }
            None => Ok(None),
        }
    }
}

/// The post-call queue on a Redis stream with a consumer group.
pub struct RedisQueue {
    conn: ConnectionManager,
    blocking: Blocking,
    stream: String,
    dead_stream: String,
    group: String,
}

impl RedisQueue {
    /// Connects and makes sure the stream and its consumer group exist.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisQueue> {
        let (client, conn) = connections(url).await?;
        let stream = format!("{prefix}postcall");
        let dead_stream = format!("{prefix}postcall:dead");
        let group = "postcall".to_string();
        let blocking = Blocking::open(&client).await?;
        let queue = RedisQueue {
            conn,
            blocking,
            stream,
            dead_stream,
            group,
        };
        queue.create_group().await?;
        Ok(queue)
    }

    /// Makes sure the stream and its consumer group exist.
    async fn create_group(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = conn
            .xgroup_create_mkstream(&self.stream, &self.group, "0")
            .await;
        match created {
            // The group already existing is the normal case after the first start.
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn decode(id: &StreamId) -> Result<QueuedRecord> {
        let body: String = id.get("record").unwrap_or_default();
        Ok(QueuedRecord {
            id: id.id.clone(),
            record: serde_json::from_str(&body)?,
        })
    }

    /// The record of `entry`; one that cannot be read is moved to the dead stream (raw, with
    /// the error) and removed, so it neither comes back forever nor blocks the others.
    async fn decode_or_set_aside(&self, entry: &StreamId) -> Result<Option<QueuedRecord>> {
        let error = match Self::decode(entry) {
            Ok(queued) => return Ok(Some(queued)),
            Err(e) => e.to_string(),
        };
        let body: String = entry.get("record").unwrap_or_default();
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .xadd(
                &self.dead_stream,
                "*",
                &[
                    ("id", entry.id.as_str()),
                    ("record", body.as_str()),
                    ("error", error.as_str()),
                ],
            )
            .ignore()
            .xack(&self.stream, &self.group, &[&entry.id])
            .ignore()
            .xdel(&self.stream, &[&entry.id])
            .ignore()
            .exec_async(&mut conn)
            .await?;
        tracing::error!(entry = %entry.id, %error, stream = %self.dead_stream, "unreadable post-call entry set aside");
        Ok(None)
    }

    /// Entries not yet processed (taken or not).
    pub async fn pending_entries(&self) -> Result<u64> {
        let mut conn = self.conn.clone();
        Ok(conn.xlen(&self.stream).await?)
    }

    /// Entries set aside as unreadable.
    pub async fn dead_entries(&self) -> Result<u64> {
        let mut conn = self.conn.clone();
        Ok(conn.xlen(&self.dead_stream).await?)
    }

    /// Pushes a raw body, as a broken or foreign producer might (for tests of what happens to
    /// entries that are not call records).
    pub async fn push_raw(&self, body: &str) -> Result<String> {
        let mut conn = self.conn.clone();
        Ok(conn.xadd(&self.stream, "*", &[("record", body)]).await?)
    }
}

#[async_trait]
impl PostCallQueue for RedisQueue {
    async fn unreadable(&self, max: usize) -> Result<Vec<UnreadableEntry>> {
        let mut conn = self.conn.clone();
        let reply: StreamRangeReply = conn
            .xrange_count(&self.dead_stream, "-", "+", max.max(1))
            .await?;
        Ok(reply
            .ids
            .iter()
            .map(|e| UnreadableEntry {
                id: e.id.clone(),
                entry_id: e.get("id").unwrap_or_default(),
                body: e.get("record").unwrap_or_default(),
                error: e.get("error").unwrap_or_default(),
            })
            .collect())
    }

    async fn forget_unreadable(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: u64 = conn.xdel(&self.dead_stream, ids).await?;
        Ok(())
    }

    async fn push(&self, record: &CallRecord) -> Result<String> {
        let mut conn = self.conn.clone();
        let body = serde_json::to_string(record)?;
        let id: String = conn.xadd(&self.stream, "*", &[("record", body)]).await?;
        Ok(id)
    }

    async fn pop(&self, consumer: &str, wait: Duration) -> Result<Option<QueuedRecord>> {
        let options = StreamReadOptions::default()
            .group(&self.group, consumer)
            .count(1)
            .block(millis(wait) as usize);
        let read = redis::Cmd::xread_options(&[&self.stream], &[">"], &options);
        let reply: Option<StreamReadReply> = match self.blocking.query(&read).await {
            Err(FleetError::Redis(e)) if e.code() == Some("NOGROUP") => {
                // Redis came back without the stream (no persistence): make it again.
                self.create_group().await?;
                self.blocking.query(&read).await?
            }
            other => other?,
        };
        let Some(reply) = reply else { return Ok(None) };
        match reply.keys.first().and_then(|k| k.ids.first()) {
            Some(entry) => self.decode_or_set_aside(entry).await,
            None => Ok(None),
        }
    }

    /// Acknowledges and deletes the entry: a consumed record leaves the stream.
    async fn ack(&self, id: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .xack(&self.stream, &self.group, &[id])
            .ignore()
            .xdel(&self.stream, &[id])
            .ignore()
            .exec_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn reclaim(&self, consumer: &str, idle: Duration) -> Result<Vec<QueuedRecord>> {
        let mut conn = self.conn.clone();
        let reply: StreamAutoClaimReply = conn
            .xautoclaim_options(
                &self.stream,
                &self.group,
                consumer,
                millis(idle),
                "0-0",
                StreamAutoClaimOptions::default().count(100),
            )
            .await?;
        let mut out = Vec::new();
        for entry in &reply.claimed {
            if let Some(queued) = self.decode_or_set_aside(entry).await? {
                out.push(queued);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{redis_url, unique_prefix};
    use callfleet_core::domain::{CallDirection, CallStatus};

    fn record(id: &str) -> CallRecord {
        CallRecord {
            id: id.into(),
            company_id: "cmp_1".into(),
            bot_id: "bot_1".into(),
            bot_config_version: 1,
            direction: CallDirection::Web,
            status: CallStatus::Completed,
            from_number: None,
            to_number: None,
            room: None,
            started_at: 0,
            ended_at: Some(1_000),
            language: None,
            transcript: vec![],
            fields: Default::default(),
            outcome: None,
            summary: None,
            metrics: vec![],
        }
    }

    #[tokio::test]
    async fn acked_entries_leave_the_stream_and_unreadable_ones_are_set_aside() {
        let Some(url) = redis_url() else { return };
        let queue = RedisQueue::connect(&url, &unique_prefix()).await.unwrap();
        queue.push(&record("call_1")).await.unwrap();
        let mut conn = queue.conn.clone();
        let _: String = conn
            .xadd(&queue.stream, "*", &[("record", "{not a record")])
            .await
            .unwrap();
        queue.push(&record("call_2")).await.unwrap();
        assert_eq!(queue.pending_entries().await.unwrap(), 3);

        let wait = Duration::from_millis(100);
        let first = queue.pop("c", wait).await.unwrap().unwrap();
        assert_eq!(first.record.id, "call_1");
        queue.ack(&first.id).await.unwrap();
        assert_eq!(
            queue.pending_entries().await.unwrap(),
            2,
            "the consumed entry is gone"
        );

        assert_eq!(
            queue.pop("c", wait).await.unwrap(),
            None,
            "the poison is set aside"
        );
        assert_eq!(queue.dead_entries().await.unwrap(), 1);
        let second = queue.pop("c", wait).await.unwrap().unwrap();
        assert_eq!(second.record.id, "call_2", "and does not block the next");
        queue.ack(&second.id).await.unwrap();
        assert_eq!(queue.pending_entries().await.unwrap(), 0);
        assert!(queue.reclaim("c", Duration::ZERO).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_unreadable_entry_taken_by_a_dead_consumer_is_set_aside_on_reclaim() {
        let Some(url) = redis_url() else { return };
        let queue = RedisQueue::connect(&url, &unique_prefix()).await.unwrap();
        let mut conn = queue.conn.clone();
        let _: String = conn
            .xadd(&queue.stream, "*", &[("record", "[]")])
            .await
            .unwrap();
        queue.push(&record("call_1")).await.unwrap();
        // A consumer takes both and dies before reading them.
        let options = StreamReadOptions::default()
            .group(&queue.group, "dead")
            .count(10);
        let _: StreamReadReply = conn
            .xread_options(&[&queue.stream], &[">"], &options)
            .await
            .unwrap();
        // Idle for longer than the reclaim threshold (Redis counts whole milliseconds).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let reclaimed = queue
            .reclaim("alive", Duration::from_millis(5))
            .await
            .unwrap();
        assert_eq!(
            reclaimed
                .iter()
                .map(|q| q.record.id.as_str())
                .collect::<Vec<_>>(),
            ["call_1"]
        );
        assert_eq!(queue.dead_entries().await.unwrap(), 1);
    }
}
