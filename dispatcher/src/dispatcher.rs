//! Placement and failover.

use crate::placement::choose_worker;
use callfleet_core::domain::{BotStatus, CallDirection};
use callfleet_core::ids::{new_id, IdKind};
use callfleet_fleet::{FleetBus, FleetError, Job, WorkerStatus, MESSAGE_VERSION};
use callfleet_livekit_admin::LiveKitApi;
use callfleet_store::{now_ms, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Names this dispatcher in claims (so only the owner releases them).
    pub id: String,
    /// How long a room stays claimed by its placement: longer than any call.
    pub room_claim_ttl: Duration,
    /// How often dead workers are looked for. With the 800 ms heartbeat TTL, 100 ms keeps
    /// detection under a second.
    pub scan_interval: Duration,
    /// How long a placement waits for another placement of the same company (here or in
    /// another dispatcher) to finish counting its calls; then it gives up as contended.
    pub company_lock_wait: Duration,
    /// How long failover scans pause after the bus failed, for the workers' heartbeats to
    /// come back (several heartbeat TTLs).
    pub outage_grace: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            id: new_id(IdKind::Call).replace("call_", "dsp_"),
            room_claim_ttl: Duration::from_secs(6 * 3600),
            scan_interval: Duration::from_millis(100),
            company_lock_wait: Duration::from_secs(2),
            outage_grace: Duration::from_secs(3),
        }
    }
}

/// A room that needs an agent.
#[derive(Debug, Clone)]
pub struct PlacementRequest {
    pub room: String,
    pub bot_id: String,
    pub direction: CallDirection,
    pub caller_identity: Option<String>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
}

/// A room LiveKit's own agent dispatch gave to a worker (`callfleet agent --dispatch livekit`):
/// the worker asks the dispatcher to admit it and make it a call of its own.
#[derive(Debug, Clone)]
pub struct LiveKitJobRequest {
    /// The worker LiveKit chose; the call is placed on it, not by least load.
    pub worker_id: String,
    /// The call's id, chosen by the worker (its participant identity is `agent-{call_id}`); for
    /// a resumed call, the id of the call to resume.
    pub call_id: String,
    pub room: String,
    pub bot_id: String,
    /// The agent name the worker registered under, kept on the job for failover.
    pub agent_name: String,
    /// LiveKit dispatched the room again after its worker died (failover): take the call over
    /// from its dead worker, with its checkpoint, instead of starting a new one.
    pub resume: bool,
}

/// Where a call was placed.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub worker_id: String,
    pub job: Job,
}

/// Why a room was not placed. Each is a clear outcome for the caller of `place`.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("room {0} already has an agent")]
    AlreadyPlaced(String),
    #[error("bot {0} not found")]
    BotNotFound(String),
    #[error("bot {0} is disabled")]
    BotDisabled(String),
    #[error("company {company_id} is at its limit of {limit} concurrent calls")]
    CompanyLimit { company_id: String, limit: i64 },
    #[error("no agent worker has room for another call")]
    NoCapacity,
    #[error("call {0} is not held by any worker")]
    CallGone(String),
    #[error("placements for company {0} are busy; try again")]
    Contended(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("fleet bus: {0}")]
    Fleet(#[from] FleetError),
}

pub struct Dispatcher {
    bus: Arc<dyn FleetBus>,
    store: Store,
    config: DispatcherConfig,
    /// LiveKit's agent dispatch API, to hand a dead LiveKit-dispatched worker's rooms to
    /// another worker. Without it such calls are re-placed like any other.
    livekit: Option<LiveKitApi>,
}

/// How long a re-dispatch through LiveKit waits for a worker to take the call over before the
/// failover scan asks LiveKit again. LiveKit answers `CreateDispatch` before it has found a
/// worker, and drops the job when none is available then (all reported full a moment ago), so
/// the wait is short; a second dispatch that finds the call already taken over is refused.
const REDISPATCH_WAIT: Duration = Duration::from_secs(3);

/// Where a placement goes: the least loaded live worker, or the one LiveKit chose.
enum Target<'a> {
    LeastLoaded,
    LiveKit(&'a LiveKitJobRequest),
}

impl Dispatcher {
    pub fn new(bus: Arc<dyn FleetBus>, store: Store, config: DispatcherConfig) -> Dispatcher {
        Dispatcher {
            bus,
            store,
            config,
            livekit: None,
        }
    }

    /// Re-dispatches the calls of dead LiveKit-dispatched workers through LiveKit's agent
    /// dispatch (`CreateDispatch`) on `api`.
    pub fn with_livekit_dispatch(mut self, api: LiveKitApi) -> Dispatcher {
        self.livekit = Some(api);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Calls now held by live or dead-but-unhandled workers for `company_id`.
    async fn active_calls_of(&self, company_id: &str) -> Result<i64, FleetError> {
        let mut count = 0;
        for worker in self.bus.known_workers().await? {
            count += self
                .bus
                .jobs_of(&worker)
                .await?
                .iter()
                .filter(|j| j.company_id == company_id)
                .count() as i64;
        }
        Ok(count)
    }

    /// Places `request`'s room on a worker, once: a second request for the same room (from this
    /// or another dispatcher) gets `AlreadyPlaced`.
    pub async fn place(&self, request: PlacementRequest) -> Result<Placement, PlaceError> {
        let claim = format!("room:{}", request.room);
        if !self
            .bus
            .claim(&claim, &self.config.id, self.config.room_claim_ttl)
            .await?
        {
            return Err(PlaceError::AlreadyPlaced(request.room));
        }
        let placed = self.place_claimed(&request, Target::LeastLoaded).await;
        if placed.is_err() {
            // Nothing was placed: let a retry (or another dispatcher) try again.
            self.bus.release(&claim, &self.config.id).await?;
        }
        placed
    }

    /// Admits a room LiveKit dispatched to `request.worker_id` and places it there as a call
    /// (once per room, like [`Dispatcher::place`]); or, for a resumed dispatch, moves the call
    /// from its dead worker to this one with `attempt` + 1, so the checkpoint follows.
    pub async fn place_livekit(
        &self,
        request: &LiveKitJobRequest,
    ) -> Result<Placement, PlaceError> {
        if request.resume {
            return self.resume_livekit(request).await;
        }
        let placement = PlacementRequest {
            room: request.room.clone(),
            bot_id: request.bot_id.clone(),
            direction: CallDirection::Web,
            caller_identity: None,
            from_number: None,
            to_number: None,
        };
        let claim = format!("room:{}", request.room);
        if !self
            .bus
            .claim(&claim, &self.config.id, self.config.room_claim_ttl)
            .await?
        {
            return Err(PlaceError::AlreadyPlaced(request.room.clone()));
        }
        let placed = self
            .place_claimed(&placement, Target::LiveKit(request))
            .await;
        if placed.is_err() {
            self.bus.release(&claim, &self.config.id).await?;
        }
        placed
    }

    async fn resume_livekit(&self, request: &LiveKitJobRequest) -> Result<Placement, PlaceError> {
        let claim = format!("resume:{}", request.call_id);
        if !self
            .bus
            .claim(&claim, &self.config.id, Duration::from_secs(10))
            .await?
        {
            return Err(PlaceError::AlreadyPlaced(request.room.clone()));
        }
        let moved = self.move_to(request).await;
        self.bus.release(&claim, &self.config.id).await?;
        moved
    }

    async fn move_to(&self, request: &LiveKitJobRequest) -> Result<Placement, PlaceError> {
        let live = self.bus.live_workers().await?;
        for holder in self.bus.known_workers().await? {
            let Some(mut job) = self
                .bus
                .jobs_of(&holder)
                .await?
                .into_iter()
                .find(|j| j.call_id == request.call_id && j.room == request.room)
            else {
                continue;
            };
            if holder == request.worker_id {
                return Ok(Placement {
                    worker_id: holder,
                    job,
                });
            }
            if live.iter().any(|w| w.worker_id == holder) {
                // Its worker is alive: a second dispatch of a call that is running.
                return Err(PlaceError::AlreadyPlaced(request.room.clone()));
            }
            job.attempt += 1;
            job.livekit_agent = Some(request.agent_name.clone());
            self.bus.assign(&request.worker_id, &job).await?;
            self.bus.finish_job(&holder, &job.call_id).await?;
            tracing::warn!(call_id = %job.call_id, dead_worker = %holder, worker = %request.worker_id, attempt = job.attempt, "call taken over through LiveKit's dispatch");
            return Ok(Placement {
                worker_id: request.worker_id.clone(),
                job,
            });
        }
        Err(PlaceError::CallGone(request.call_id.clone()))
    }

    async fn place_claimed(
        &self,
        request: &PlacementRequest,
        target: Target<'_>,
    ) -> Result<Placement, PlaceError> {
        let bot = match self.store.get_bot(&request.bot_id).await {
            Err(StoreError::NotFound) => {
                return Err(PlaceError::BotNotFound(request.bot_id.clone()))
            }
            other => other?,
        };
        if bot.status != BotStatus::Active {
            return Err(PlaceError::BotDisabled(bot.id));
        }
        let company = self.store.get_company(&bot.company_id).await?;
        // Counting the company's calls and assigning the new one is one step per company, or
        // racing placements would each see room under the limit and all be placed.
        let lock = format!("company:{}", company.id);
        let owner = format!("{}:{}", self.config.id, uuid::Uuid::new_v4().simple());
        self.lock(&lock, &owner, &company.id).await?;
        let placed = self.place_for_company(request, bot, company, target).await;
        if let Err(e) = self.bus.release(&lock, &owner).await {
            tracing::warn!(error = %e, "Could not release a company's placement lock; it expires on its own.");
        }
        placed
    }

    /// Takes `key` for `owner`, waiting up to `company_lock_wait` for its holder. The lock's TTL
    /// (5 s) frees it should its holder die.
    async fn lock(&self, key: &str, owner: &str, company_id: &str) -> Result<(), PlaceError> {
        let deadline = tokio::time::Instant::now() + self.config.company_lock_wait;
        loop {
            if self.bus.claim(key, owner, Duration::from_secs(5)).await? {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PlaceError::Contended(company_id.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn place_for_company(
        &self,
        request: &PlacementRequest,
        bot: callfleet_store::Bot,
        company: callfleet_store::Company,
        target: Target<'_>,
    ) -> Result<Placement, PlaceError> {
        if self.active_calls_of(&company.id).await? >= company.max_concurrent_calls {
            return Err(PlaceError::CompanyLimit {
                company_id: company.id,
                limit: company.max_concurrent_calls,
            });
        }
        let workers = self.bus.live_workers().await?;
        let (worker_id, call_id, livekit_agent) = match target {
            Target::LeastLoaded => {
                let worker = choose_worker(&workers, &[]).ok_or(PlaceError::NoCapacity)?;
                (worker.worker_id.clone(), new_id(IdKind::Call), None)
            }
            Target::LiveKit(lk) => (
                lk.worker_id.clone(),
                lk.call_id.clone(),
                Some(lk.agent_name.clone()),
            ),
        };
        let version = self
            .store
            .get_bot_version(&bot.id, Some(bot.current_version))
            .await?;
        let job = Job {
            v: MESSAGE_VERSION,
            call_id,
            room: request.room.clone(),
            company_id: company.id,
            bot_id: bot.id,
            config_version: version.version,
            config: version.config,
            direction: request.direction,
            caller_identity: request.caller_identity.clone(),
            from_number: request.from_number.clone(),
            to_number: request.to_number.clone(),
            created_at: now_ms(),
            attempt: 0,
            livekit_agent,
        };
        self.bus.assign(&worker_id, &job).await?;
        tracing::info!(call_id = %job.call_id, room = %job.room, worker = %worker_id, "call placed");
        Ok(Placement { worker_id, job })
    }

    /// Re-places the calls of every worker whose heartbeat has expired; returns the new
    /// placements. The new worker resumes each call from its checkpoint (keyed by call id).
    pub async fn failover_tick(&self) -> Result<Vec<Placement>, FleetError> {
        let mut live: Vec<WorkerStatus> = self.bus.live_workers().await?;
        let mut placed = Vec::new();
        for dead in self.bus.known_workers().await? {
            if live.iter().any(|w| w.worker_id == dead) {
                continue;
            }
            let claim = format!("failover:{dead}");
            if !self
                .bus
                .claim(&claim, &self.config.id, Duration::from_secs(10))
                .await?
            {
                continue;
            }
            let mut all_moved = true;
            for mut job in self.bus.jobs_of(&dead).await? {
                if let (Some(agent_name), Some(api)) = (&job.livekit_agent, &self.livekit) {
                    // LiveKit hands the room to one of its workers, which takes the call over
                    // from this dead one (`place_livekit` with `resume`); until then the job
                    // stays here and the worker is not forgotten.
                    all_moved = false;
                    self.redispatch(api, agent_name, &job, &dead).await?;
                    continue;
                }
                let Some(target) =
                    choose_worker(&live, &[dead.as_str()]).map(|w| w.worker_id.clone())
                else {
                    tracing::error!(call_id = %job.call_id, dead_worker = %dead, "no worker can take over the call");
                    all_moved = false;
                    continue;
                };
                job.attempt += 1;
                self.bus.assign(&target, &job).await?;
                self.bus.finish_job(&dead, &job.call_id).await?;
                // Count it now so the next call of the dead worker spreads to another worker.
                if let Some(w) = live.iter_mut().find(|w| w.worker_id == target) {
                    w.active_calls += 1;
                }
                tracing::warn!(call_id = %job.call_id, dead_worker = %dead, worker = %target, attempt = job.attempt, "call re-placed");
                placed.push(Placement {
                    worker_id: target,
                    job,
                });
            }
            if all_moved && !self.bus.forget_worker(&dead).await? {
                tracing::info!(dead_worker = %dead, "a call was placed on the dead worker meanwhile; it moves at the next scan");
            }
            self.bus.release(&claim, &self.config.id).await?;
        }
        Ok(placed)
    }

    /// Asks LiveKit to dispatch a dead worker's room again, at most once per `REDISPATCH_WAIT`.
    async fn redispatch(
        &self,
        api: &LiveKitApi,
        agent_name: &str,
        job: &Job,
        dead: &str,
    ) -> Result<(), FleetError> {
        let claim = format!("redispatch:{}:{}", job.call_id, job.attempt);
        if !self
            .bus
            .claim(&claim, &self.config.id, REDISPATCH_WAIT)
            .await?
        {
            return Ok(());
        }
        // The dead worker's agent stays in the room until LiveKit times it out (tens of
        // seconds), and while that ghost is there the next agent is slow to get the caller's
        // audio: take it out first. (Its identity is `agent-{call_id}`, with a suffix after a
        // takeover.)
        let ghost = format!("agent-{}", job.call_id);
        match api.list_participants(&job.room).await {
            Ok(identities) => {
                for identity in identities.iter().filter(|i| i.starts_with(&ghost)) {
                    if let Err(e) = api.remove_participant(&job.room, identity).await {
                        tracing::warn!(call_id = %job.call_id, error = %e, "could not remove the dead worker's agent from the room");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(call_id = %job.call_id, error = %e, "could not list the room's participants")
            }
        }
        let metadata = resume_metadata(job);
        match api.create_dispatch(&job.room, agent_name, &metadata).await {
            Ok(dispatch) => {
                tracing::warn!(call_id = %job.call_id, dead_worker = %dead, dispatch = %dispatch.id, agent_name, "call re-dispatched through LiveKit");
            }
            Err(e) => {
                tracing::error!(call_id = %job.call_id, error = %e, "LiveKit did not take the re-dispatch; retrying at the next scan");
                self.bus.release(&claim, &self.config.id).await?;
            }
        }
        Ok(())
    }

    /// Looks for dead workers every `scan_interval` until `shutdown`. After the bus fails (Redis
    /// down or restarted, which loses the heartbeats' keys), scans wait `outage_grace` so the
    /// workers — alive all along — can beat again before any is taken for dead.
    pub async fn run_failover(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.scan_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut quiet_until: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if quiet_until.is_some_and(|t| tokio::time::Instant::now() < t) {
                        continue;
                    }
                    if let Err(e) = self.failover_tick().await {
                        tracing::error!(error = %e, "failover scan failed; scans pause while the bus recovers");
                        quiet_until = Some(tokio::time::Instant::now() + self.config.outage_grace);
                    }
                }
            }
        }
    }
}

/// The dispatch metadata of a re-dispatched call: the bot, and the call to resume.
pub fn resume_metadata(job: &Job) -> String {
    serde_json::json!({ "bot_id": job.bot_id, "resume_call_id": job.call_id }).to_string()
}
