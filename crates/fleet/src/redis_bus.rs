//! The production transport on Redis.
//!
//! Keys (all under a prefix, `cf:` by default):
//! - `worker:{id}` — the latest heartbeat (JSON), expiring after the heartbeat TTL;
//! - `workers` — a set of every registered worker id, so a dead one (key expired) is still known;
//! - `worker:{id}:jobs` — hash call_id → job, what the worker holds until it finishes;
//! - `worker:{id}:queue` — list of jobs waiting to be taken (BRPOP);
//! - `claim:{key}` — `SET NX PX` claims that stop two dispatchers placing one room twice;
//! - `checkpoint:{call_id}` — the call's latest checkpoint, with a TTL;
//! - `postcall` — a stream with consumer group `postcall` for finished calls.

use crate::bus::{check_version, FleetBus, PostCallQueue, QueuedRecord, Result};
use crate::messages::{Checkpoint, Job, WorkerStatus};
use async_trait::async_trait;
use callfleet_core::domain::CallRecord;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Workers, jobs and checkpoints on Redis.
pub struct RedisBus {
    conn: ConnectionManager,
    blocking: Mutex<MultiplexedConnection>,
    prefix: String,
}

impl RedisBus {
    /// Connects to `redis://…`; keys go under `prefix` (e.g. `cf:`).
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisBus> {
        let (client, conn) = connections(url).await?;
        let blocking = Mutex::new(blocking_connection(&client).await?);
        Ok(RedisBus {
            conn,
            blocking,
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
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
        for body in bodies.into_iter().flatten() {
            let status: WorkerStatus = serde_json::from_str(&body)?;
            check_version(status.v)?;
            live.push(status);
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

    async fn forget_worker(&self, worker_id: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .srem(self.key("workers"), worker_id)
            .ignore()
            .del(&[
                self.key(&format!("worker:{worker_id}")),
                self.key(&format!("worker:{worker_id}:jobs")),
                self.key(&format!("worker:{worker_id}:queue")),
            ])
            .ignore()
            .exec_async(&mut conn)
            .await?;
        Ok(())
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
        let mut conn = self.blocking.lock().await;
        let secs = wait.as_secs_f64().max(0.01);
        let popped: Option<(String, String)> = conn
            .brpop(self.key(&format!("worker:{worker_id}:queue")), secs)
            .await?;
        match popped {
            Some((_, body)) => {
                let job: Job = serde_json::from_str(&body)?;
                check_version(job.v)?;
                Ok(Some(job))
            }
            None => Ok(None),
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
        let mut jobs = bodies
            .iter()
            .map(|b| serde_json::from_str::<Job>(b))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        jobs.sort_by(|a, b| a.call_id.cmp(&b.call_id));
        Ok(jobs)
    }

    async fn save_checkpoint(&self, checkpoint: &Checkpoint, ttl: Duration) -> Result<()> {
        let mut conn = self.conn.clone();
        let body = serde_json::to_string(checkpoint)?;
        let _: () = redis::cmd("SET")
            .arg(self.key(&format!("checkpoint:{}", checkpoint.call_id)))
            .arg(body)
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await?;
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
    blocking: Mutex<MultiplexedConnection>,
    stream: String,
    group: String,
}

impl RedisQueue {
    /// Connects and makes sure the stream and its consumer group exist.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisQueue> {
        let (client, mut conn) = connections(url).await?;
        let stream = format!("{prefix}postcall");
        let group = "postcall".to_string();
        let created: redis::RedisResult<()> =
            conn.xgroup_create_mkstream(&stream, &group, "0").await;
        if let Err(e) = created {
            // The group already existing is the normal case after the first start.
            if e.code() != Some("BUSYGROUP") {
                return Err(e.into());
            }
        }
        let blocking = Mutex::new(blocking_connection(&client).await?);
        Ok(RedisQueue {
            conn,
            blocking,
            stream,
            group,
        })
    }

    fn decode(id: &redis::streams::StreamId) -> Result<QueuedRecord> {
        let body: String = id.get("record").unwrap_or_default();
        Ok(QueuedRecord {
            id: id.id.clone(),
            record: serde_json::from_str(&body)?,
        })
    }
}

#[async_trait]
impl PostCallQueue for RedisQueue {
    async fn push(&self, record: &CallRecord) -> Result<String> {
        let mut conn = self.conn.clone();
        let body = serde_json::to_string(record)?;
        let id: String = conn.xadd(&self.stream, "*", &[("record", body)]).await?;
        Ok(id)
    }

    async fn pop(&self, consumer: &str, wait: Duration) -> Result<Option<QueuedRecord>> {
        let mut conn = self.blocking.lock().await;
        let options = StreamReadOptions::default()
            .group(&self.group, consumer)
            .count(1)
            .block(millis(wait) as usize);
        let reply: Option<StreamReadReply> = conn
            .xread_options(&[&self.stream], &[">"], &options)
            .await?;
        let Some(reply) = reply else { return Ok(None) };
        match reply.keys.first().and_then(|k| k.ids.first()) {
            Some(entry) => Ok(Some(Self::decode(entry)?)),
            None => Ok(None),
        }
    }

    async fn ack(&self, id: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.xack(&self.stream, &self.group, &[id]).await?;
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
        reply.claimed.iter().map(Self::decode).collect()
    }
}
