//! Placement and failover.

use crate::placement::choose_worker;
use callfleet_core::domain::CallDirection;
use callfleet_core::ids::{new_id, IdKind};
use callfleet_fleet::{FleetBus, FleetError, Job, WorkerStatus, MESSAGE_VERSION};
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
}

impl Dispatcher {
    pub fn new(bus: Arc<dyn FleetBus>, store: Store, config: DispatcherConfig) -> Dispatcher {
        Dispatcher { bus, store, config }
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
        let placed = self.place_claimed(&request).await;
        if placed.is_err() {
            // Nothing was placed: let a retry (or another dispatcher) try again.
            self.bus.release(&claim, &self.config.id).await?;
        }
        placed
    }

    async fn place_claimed(&self, request: &PlacementRequest) -> Result<Placement, PlaceError> {
        let bot = match self.store.get_bot(&request.bot_id).await {
            Err(StoreError::NotFound) => {
                return Err(PlaceError::BotNotFound(request.bot_id.clone()))
            }
            other => other?,
        };
        if bot.status != "active" {
            return Err(PlaceError::BotDisabled(bot.id));
        }
        let company = self.store.get_company(&bot.company_id).await?;
        // Counting the company's calls and assigning the new one is one step per company, or
        // racing placements would each see room under the limit and all be placed.
        let lock = format!("company:{}", company.id);
        let owner = format!("{}:{}", self.config.id, uuid::Uuid::new_v4().simple());
        self.lock(&lock, &owner, &company.id).await?;
        let placed = self.place_for_company(request, bot, company).await;
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
    ) -> Result<Placement, PlaceError> {
        if self.active_calls_of(&company.id).await? >= company.max_concurrent_calls {
            return Err(PlaceError::CompanyLimit {
                company_id: company.id,
                limit: company.max_concurrent_calls,
            });
        }
        let workers = self.bus.live_workers().await?;
        let worker = choose_worker(&workers, &[]).ok_or(PlaceError::NoCapacity)?;
        let version = self
            .store
            .get_bot_version(&bot.id, Some(bot.current_version))
            .await?;
        let job = Job {
            v: MESSAGE_VERSION,
            call_id: new_id(IdKind::Call),
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
        };
        self.bus.assign(&worker.worker_id, &job).await?;
        tracing::info!(call_id = %job.call_id, room = %job.room, worker = %worker.worker_id, "call placed");
        Ok(Placement {
            worker_id: worker.worker_id.clone(),
            job,
        })
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
