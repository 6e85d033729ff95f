//! `callfleet agent --dispatch livekit`: the worker takes its calls from LiveKit's own agent
//! dispatch (automatic, `CreateDispatch`, a token's or SIP rule's `roomConfig.agents`) instead
//! of the dispatcher's queue.
//!
//! It registers under an agent name over LiveKit's `/agent` protocol (`callfleet_rtc::agent_worker`)
//! and answers each offer by its real load (capacity, memory headroom, draining). An accepted
//! job's bot is chosen from the dispatch's metadata, the room's metadata and the agent name's
//! bots ([`choose_bot`]); the dispatcher admits it (`POST /livekit/agent-jobs`: bot active,
//! company limit, the bot's config) and queues it for this worker like any call, so from there
//! the call is the same as a dispatcher-placed one — the same plan, voice session, checkpoints,
//! recording and post-call record — except that it joins with the token LiveKit gave. The
//! worker still heartbeats to the fleet, so when it dies the dispatcher asks LiveKit to dispatch
//! its rooms again and the next worker resumes them from their checkpoints.

use crate::plan::{RoomGrant, RoomGrants};
use crate::worker::{CallHandle, CallRunner, Worker};
use async_trait::async_trait;
use callfleet_core::domain::{CallRecord, CallStatus};
use callfleet_core::ids::{new_id, IdKind};
use callfleet_core::secret::Secret;
use callfleet_rtc::agent_worker::{
    worker_token, AgentWorker, Availability, JobEnd, JobGrant, JobOffer, WorkerEvent, WorkerLoad,
    WorkerOptions,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Which bots an agent name serves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BotRouting {
    /// The bots this agent name may run; the first is the default. Empty: any bot the
    /// metadata names (the dispatcher still checks that it exists and is active).
    pub bots: Vec<String>,
}

/// The bot a job runs, by precedence: the dispatch's metadata `{"bot_id": …}` (the most
/// specific: `roomConfig.agents[].metadata`, `CreateDispatch`), then the room's metadata
/// `{"bot_id": …}`, then the agent name's default bot. With a pool, a named bot outside it is
/// refused (a token's metadata cannot reach another tenant's bot through this agent name).
pub fn choose_bot(
    routing: &BotRouting,
    job_metadata: &str,
    room_metadata: &str,
) -> Result<String, String> {
    let named = |metadata: &str| -> Option<String> {
        let value: serde_json::Value = serde_json::from_str(metadata).ok()?;
        let id = value.get("bot_id")?.as_str()?.trim();
        (!id.is_empty()).then(|| id.to_string())
    };
    let chosen = named(job_metadata)
        .or_else(|| named(room_metadata))
        .or_else(|| routing.bots.first().cloned());
    match chosen {
        None => Err("no bot: the dispatch and room metadata name no bot_id and the agent name has no default bot".into()),
        Some(bot) if !routing.bots.is_empty() && !routing.bots.contains(&bot) => {
            Err(format!("bot {bot} is not one this agent name serves"))
        }
        Some(bot) => Ok(bot),
    }
}

/// The call a re-dispatch (after a worker died) resumes, from its metadata.
fn resumed_call(job_metadata: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(job_metadata).ok()?;
    Some(value.get("resume_call_id")?.as_str()?.to_string())
}

/// How the worker meets LiveKit and the dispatcher.
#[derive(Clone)]
pub struct LiveKitDispatchConfig {
    pub url: String,
    pub api_key: String,
    pub api_secret: Secret,
    pub agent_name: String,
    pub routing: BotRouting,
    /// The dispatcher's HTTP address (`http://host:8090`), which admits each job.
    pub dispatcher_url: String,
    /// How often the load is reported to LiveKit.
    pub report_interval: Duration,
}

/// An accepted offer whose assignment has not come yet.
struct Pending {
    call_id: String,
    bot_id: String,
    resume: bool,
    since: tokio::time::Instant,
}

#[derive(Default)]
struct Jobs {
    /// Offers accepted, by LiveKit job id: a slot is held for each.
    pending: HashMap<String, Pending>,
    /// LiveKit job id of each call admitted, by call id.
    running: HashMap<String, String>,
    /// Calls running now, by call id, to end one LiveKit terminates.
    cancel: HashMap<String, CancellationToken>,
}

/// How long an accepted offer holds a slot waiting for its assignment (the server waits 10 s
/// for the answer, then assigns at once).
const ASSIGNMENT_WAIT: Duration = Duration::from_secs(15);

/// The LiveKit side of a worker. It is also the worker's [`CallRunner`] (around the voice
/// session), to tell LiveKit when a call ends and to end calls LiveKit terminates.
pub struct LiveKitDispatch {
    config: LiveKitDispatchConfig,
    inner: Arc<dyn CallRunner>,
    grants: RoomGrants,
    jobs: Mutex<Jobs>,
    connection: Mutex<Option<Arc<AgentWorker>>>,
    http: reqwest::Client,
}

impl LiveKitDispatch {
    /// `inner` runs the calls; `grants` must be the ones its `LiveKitSettings` join with.
    pub fn new(
        config: LiveKitDispatchConfig,
        inner: Arc<dyn CallRunner>,
        grants: RoomGrants,
    ) -> Arc<LiveKitDispatch> {
        Arc::new(LiveKitDispatch {
            config,
            inner,
            grants,
            jobs: Mutex::new(Jobs::default()),
            connection: Mutex::new(None),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        })
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn connection(&self) -> Option<Arc<AgentWorker>> {
        self.connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Slots held by accepted offers; stale ones (no assignment came) are let go.
    fn reserved(&self) -> u32 {
        let mut jobs = self.jobs();
        jobs.pending
            .retain(|_, p| p.since.elapsed() < ASSIGNMENT_WAIT);
        jobs.pending.len() as u32
    }

    fn report(&self, worker: &Worker, draining: bool) {
        if let Some(connection) = self.connection() {
            let reserved = self.reserved();
            connection.report_load(WorkerLoad {
                load: if draining { 1.0 } else { worker.load(reserved) },
                jobs: worker.active_calls() + reserved,
                full: draining || !worker.has_room(reserved),
            });
        }
    }

    /// Registers with LiveKit (again after any disconnect) and serves its offers until `drain`;
    /// then reports itself full, declines everything, and closes once `stopped` (the worker
    /// has finished its calls).
    pub async fn run(
        self: Arc<Self>,
        worker: Arc<Worker>,
        drain: CancellationToken,
        stopped: CancellationToken,
    ) {
        let mut wait = Duration::from_millis(500);
        while !stopped.is_cancelled() {
            let options = WorkerOptions {
                url: self.config.url.clone(),
                api_key: self.config.api_key.clone(),
                api_secret: self.config.api_secret.expose().to_string(),
                agent_name: self.config.agent_name.clone(),
                version: format!("callfleet {}", env!("CARGO_PKG_VERSION")),
                ping_interval: Duration::from_secs(5),
            };
            let (connection, mut events) = match AgentWorker::register(options).await {
                Ok(registered) => registered,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?wait, "could not register with LiveKit's agent dispatch");
                    tokio::select! {
                        () = stopped.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            wait = Duration::from_millis(500);
            let connection = Arc::new(connection);
            tracing::info!(livekit_worker = %connection.id(), agent_name = %self.config.agent_name, "registered with LiveKit's agent dispatch");
            *self.connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(connection.clone());
            self.report(&worker, drain.is_cancelled());
            let mut tick = tokio::time::interval(self.config.report_interval);
            let reason = loop {
                tokio::select! {
                    () = stopped.cancelled() => break "the worker stopped".to_string(),
                    () = drain.cancelled(), if !drain.is_cancelled() => {
                        tracing::info!("draining: LiveKit sees this worker as full");
                        self.report(&worker, true);
                    }
                    _ = tick.tick() => self.report(&worker, drain.is_cancelled()),
                    // A slot freed or taken is reported at once, not at the next tick: LiveKit
                    // offers nothing to a worker it last heard was full.
                    () = worker.calls_changed() => self.report(&worker, drain.is_cancelled()),
                    event = events.recv() => match event {
                        Some(WorkerEvent::Offer(offer)) => {
                            let answer = self.answer(&worker, &offer, drain.is_cancelled());
                            connection.answer(&offer.job_id, answer);
                        }
                        Some(WorkerEvent::Assigned(grant)) => {
                            self.clone().assigned(worker.id().to_string(), grant, connection.clone());
                        }
                        Some(WorkerEvent::Terminated { job_id }) => self.terminated(&job_id),
                        Some(WorkerEvent::Closed(reason)) => break reason,
                        None => break "events ended".to_string(),
                    },
                }
            };
            connection.close();
            *self.connection.lock().unwrap_or_else(|e| e.into_inner()) = None;
            if !stopped.is_cancelled() {
                tracing::warn!(reason = %reason, "the connection to LiveKit's agent dispatch closed; registering again");
            }
        }
    }

    /// Accepts an offer when this worker has room and knows which bot to run, holding a slot
    /// for it until its assignment comes.
    fn answer(&self, worker: &Worker, offer: &JobOffer, draining: bool) -> Availability {
        if draining || !worker.has_room(self.reserved()) {
            tracing::info!(job = %offer.job_id, room = %offer.room, "declined a LiveKit job: full");
            return Availability::Decline;
        }
        let bot_id = match choose_bot(&self.config.routing, &offer.metadata, &offer.room_metadata) {
            Ok(bot) => bot,
            Err(why) => {
                tracing::warn!(job = %offer.job_id, room = %offer.room, reason = %why, "refused a LiveKit job");
                return Availability::Terminate;
            }
        };
        let resumed = resumed_call(&offer.metadata);
        let call_id = resumed.clone().unwrap_or_else(|| new_id(IdKind::Call));
        // A resumed call's dead agent may still be in the room under the call's identity.
        // Taking that identity over would make LiveKit end this job as the old participant
        // leaves (it keys an agent job by its participant's identity), so the new agent's is
        // its own.
        let identity = match &resumed {
            Some(_) => format!("agent-{call_id}-{}", offer.job_id),
            None => format!("agent-{call_id}"),
        };
        self.jobs().pending.insert(
            offer.job_id.clone(),
            Pending {
                call_id,
                bot_id,
                resume: resumed.is_some(),
                since: tokio::time::Instant::now(),
            },
        );
        let attributes = HashMap::from([("callfleet.worker".to_string(), worker.id().to_string())]);
        Availability::Accept {
            identity: identity.clone(),
            name: identity,
            attributes,
        }
    }

    /// An accepted job's assignment: the dispatcher admits it (it then arrives on the fleet
    /// queue) and the call will join with the server's token; a refusal ends the LiveKit job.
    fn assigned(self: Arc<Self>, worker_id: String, grant: JobGrant, connection: Arc<AgentWorker>) {
        let Some(pending) = self.jobs().pending.remove(&grant.offer.job_id) else {
            tracing::warn!(job = %grant.offer.job_id, "an assignment for a job this worker did not accept");
            connection.job_ended(
                &grant.offer.job_id,
                JobEnd::Failed("not accepted here".into()),
            );
            return;
        };
        let job_id = grant.offer.job_id.clone();
        self.grants.put(
            &pending.call_id,
            RoomGrant {
                url: grant.url.clone().unwrap_or_else(|| self.config.url.clone()),
                token: Secret::new(grant.token.clone()),
            },
        );
        self.jobs()
            .running
            .insert(pending.call_id.clone(), job_id.clone());
        tokio::spawn(async move {
            let admitted = self.admit(&worker_id, &grant.offer, &pending).await;
            if let Err(why) = admitted {
                tracing::warn!(job = %job_id, room = %grant.offer.room, call_id = %pending.call_id, reason = %why, "the dispatcher refused a LiveKit job");
                self.grants.take(&pending.call_id);
                self.jobs().running.remove(&pending.call_id);
                connection.job_ended(&job_id, JobEnd::Failed(why));
            } else {
                tracing::info!(job = %job_id, room = %grant.offer.room, call_id = %pending.call_id, bot_id = %pending.bot_id, resume = pending.resume, "LiveKit job admitted");
            }
        });
    }

    async fn admit(
        &self,
        worker_id: &str,
        offer: &JobOffer,
        pending: &Pending,
    ) -> Result<(), String> {
        let token = worker_token(&self.config.api_key, self.config.api_secret.expose())
            .map_err(|e| e.to_string())?;
        let body = serde_json::json!({
            "worker_id": worker_id,
            "call_id": pending.call_id,
            "room": offer.room,
            "bot_id": pending.bot_id,
            "agent_name": self.config.agent_name,
            "resume": pending.resume,
        });
        let url = format!(
            "{}/livekit/agent-jobs",
            self.config.dispatcher_url.trim_end_matches('/')
        );
        let response = self
            .http
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("the dispatcher did not answer: {e}"))?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        Err(format!(
            "{status}: {}",
            answer["error"].as_str().unwrap_or("refused")
        ))
    }

    fn terminated(&self, job_id: &str) {
        let jobs = self.jobs();
        let call = jobs
            .running
            .iter()
            .find(|(_, j)| j.as_str() == job_id)
            .map(|(c, _)| c.clone());
        match call.and_then(|c| jobs.cancel.get(&c).cloned().map(|t| (c, t))) {
            Some((call_id, cancel)) => {
                tracing::info!(job = %job_id, call_id = %call_id, "LiveKit terminated the job; ending the call");
                cancel.cancel();
            }
            None => {
                tracing::info!(job = %job_id, "LiveKit terminated a job that is not running here")
            }
        }
    }
}

#[async_trait]
impl CallRunner for LiveKitDispatch {
    async fn run(&self, call: CallHandle) -> CallRecord {
        let call_id = call.job.call_id.clone();
        self.jobs()
            .cancel
            .insert(call_id.clone(), call.cancel.clone());
        let lost = call.lost.clone();
        let record = self.inner.run(call).await;
        self.grants.take(&call_id);
        let job_id = {
            let mut jobs = self.jobs();
            jobs.cancel.remove(&call_id);
            jobs.running.remove(&call_id)
        };
        // A call another worker took over is still that job's; anything else has ended it.
        if let (Some(job_id), Some(connection), false) =
            (job_id, self.connection(), lost.is_cancelled())
        {
            let end = match record.status {
                CallStatus::Failed => JobEnd::Failed(
                    record
                        .outcome
                        .as_ref()
                        .and_then(|o| o.evidence.first())
                        .map(|e| format!("{e:?}"))
                        .unwrap_or_else(|| "the call failed".into()),
                ),
                _ => JobEnd::Success,
            };
            connection.job_ended(&job_id, end);
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bot_comes_from_the_dispatch_then_the_room_then_the_agent_name() {
        let pool = BotRouting {
            bots: vec!["bot_a".into(), "bot_b".into()],
        };
        let open = BotRouting::default();
        let check = |routing: &BotRouting, job: &str, room: &str, want: Result<&str, &str>| {
            let got = choose_bot(routing, job, room);
            match want {
                Ok(bot) => assert_eq!(got.as_deref(), Ok(bot), "{job} / {room}"),
                Err(part) => assert!(
                    got.as_ref().is_err_and(|e| e.contains(part)),
                    "{job} / {room}: {got:?}"
                ),
            }
        };
        check(
            &pool,
            r#"{"bot_id":"bot_b"}"#,
            r#"{"bot_id":"bot_a"}"#,
            Ok("bot_b"),
        );
        check(&pool, "", r#"{"bot_id":"bot_b"}"#, Ok("bot_b"));
        check(&pool, "not json", "", Ok("bot_a"));
        check(&pool, r#"{"bot_id":""}"#, "", Ok("bot_a"));
        check(
            &pool,
            r#"{"bot_id":"bot_x"}"#,
            "",
            Err("not one this agent name serves"),
        );
        check(&pool, "", r#"{"bot_id":"bot_x"}"#, Err("not one"));
        check(&open, r#"{"bot_id":"bot_x"}"#, "", Ok("bot_x"));
        check(
            &open,
            r#"{"other":1}"#,
            r#"{"bot_id":"bot_y"}"#,
            Ok("bot_y"),
        );
        check(&open, "", "", Err("no bot"));
    }

    #[test]
    fn a_redispatch_names_the_call_it_resumes() {
        assert_eq!(
            resumed_call(r#"{"bot_id":"b","resume_call_id":"call_1"}"#).as_deref(),
            Some("call_1")
        );
        assert_eq!(resumed_call(r#"{"bot_id":"b"}"#), None);
        assert_eq!(resumed_call(""), None);
    }
}
