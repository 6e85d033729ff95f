//! Wiring of the fleet services: `callfleet agent`, `callfleet dispatcher`, and the fleet half of
//! `callfleet dev` (in-process bus, one worker, post-call consumer on a file queue).

use crate::{ApiArgs, GlobalArgs};
use anyhow::Context;
use callfleet_agent::{
    BotRouting, CallRunner, LiveKitDispatch, LiveKitDispatchConfig, LiveKitSettings, RoomGrants,
    VoiceSession, Worker, WorkerConfig,
};
use callfleet_core::secret::{Secret, SecretUrl};
use callfleet_dispatcher::{
    http_router, metrics_router, Dispatcher, DispatcherConfig, SipProvisioner, WebhookState,
};
use callfleet_fleet::{FileQueue, FleetBus, MemoryBus, PostCallQueue, RedisBus, RedisQueue};
use callfleet_livekit_admin::LiveKitApi;
use callfleet_pipeline::PipelineMetrics;
use callfleet_postcall::{PostCallWorker, Summarizer};
use callfleet_providers::ProviderEnv;
use clap::Args;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug, Clone)]
pub(crate) struct LiveKitArgs {
    /// The LiveKit server agents join (ws:// or wss://).
    #[arg(long, env = "LIVEKIT_URL", default_value = "ws://127.0.0.1:7880")]
    pub livekit_url: String,
    /// The LiveKit URL handed to browsers, when it differs from --livekit-url.
    #[arg(long, env = "LIVEKIT_PUBLIC_URL")]
    pub livekit_public_url: Option<String>,
    /// LiveKit API key (tokens, webhook signatures).
    #[arg(long, env = "LIVEKIT_API_KEY", default_value = "devkey")]
    pub livekit_api_key: String,
    /// LiveKit API secret.
    #[arg(
        long,
        env = "LIVEKIT_API_SECRET",
        default_value = "secret",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub livekit_api_secret: Secret,
    /// Accept the development secret (`secret`) outside `callfleet dev`: only for a development
    /// LiveKit (`livekit-server --dev`) that nothing else can reach.
    #[arg(long, env = "CALLFLEET_ALLOW_DEV_SECRET", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_dev_secret: bool,
    /// LiveKit has SIP (livekit-sip beside it): routing a phone number provisions its inbound
    /// trunk and dispatch rule (and an outbound trunk with a provider host), and the dispatcher
    /// reconciles them with the database at start.
    #[arg(long, env = "CALLFLEET_LIVEKIT_SIP", value_parser = clap::builder::BoolishValueParser::new())]
    pub livekit_sip: bool,
}

/// livekit-server's development secret (`--dev`), the default here for `callfleet dev`.
const DEV_SECRET: &str = "secret";

impl LiveKitArgs {
    /// Outside `dev` the development secret is refused: with it anyone can mint room tokens and
    /// forge the webhooks the dispatcher acts on.
    pub(crate) fn refuse_dev_secret(&self, command: &str) -> anyhow::Result<()> {
        if self.livekit_api_secret.is_empty() {
            anyhow::bail!("LIVEKIT_API_SECRET is empty; set it to the secret livekit-server has for LIVEKIT_API_KEY");
        }
        if self.livekit_api_secret.expose() == DEV_SECRET && !self.allow_dev_secret {
            anyhow::bail!(
                "LIVEKIT_API_SECRET is the development default `{DEV_SECRET}`, which `callfleet {command}` refuses: \
                 anyone could mint LiveKit tokens and forge webhooks. Set LIVEKIT_API_SECRET (in .env for docker compose) \
                 to the secret livekit-server has for LIVEKIT_API_KEY, e.g. one made with `openssl rand -hex 32`. \
                 Only `callfleet dev` takes the default; against a development livekit-server (--dev) set CALLFLEET_ALLOW_DEV_SECRET=1."
            );
        }
        Ok(())
    }

    /// The SIP provisioner, when `--livekit-sip` is on.
    pub(crate) fn sip_provisioner(
        &self,
        store: &callfleet_store::Store,
    ) -> anyhow::Result<Option<Arc<SipProvisioner>>> {
        if !self.livekit_sip {
            return Ok(None);
        }
        let api = LiveKitApi::new(
            &self.livekit_url,
            &self.livekit_api_key,
            self.livekit_api_secret.clone(),
        )
        .context("LIVEKIT_URL for LiveKit's server API")?;
        Ok(Some(Arc::new(SipProvisioner::new(
            api,
            store.clone(),
            self.livekit_api_secret.clone(),
        ))))
    }

    fn settings(&self) -> LiveKitSettings {
        LiveKitSettings {
            url: self.livekit_url.clone(),
            api_key: self.livekit_api_key.clone(),
            api_secret: self.livekit_api_secret.clone(),
            grants: Default::default(),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub(crate) struct WorkerArgs {
    /// This worker's id in the fleet (default: host name and process id).
    #[arg(long, env = "CALLFLEET_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Calls this worker runs at once.
    #[arg(long, env = "CALLFLEET_WORKER_CAPACITY", default_value_t = 100)]
    pub capacity: u32,
    /// The most memory (MiB) this worker may use: it takes a new call only while its RSS plus
    /// one call's budget (8 MiB) fits. Unset: capacity alone decides.
    #[arg(long, env = "CALLFLEET_WORKER_MAX_MEMORY_MB")]
    pub max_memory_mb: Option<u64>,
}

impl WorkerArgs {
    pub(crate) fn config(&self, worker_id: &str) -> WorkerConfig {
        let mut config = WorkerConfig::new(worker_id, self.capacity);
        config.memory_limit = self.max_memory_mb.map(|mb| mb << 20);
        config
    }
}

#[derive(Args, Debug, Clone)]
pub(crate) struct AgentArgs {
    /// Redis, where the fleet meets (`redis://host:6379`).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: SecretUrl,
    /// Key prefix on Redis, to run several fleets on one server.
    #[arg(long, env = "CALLFLEET_REDIS_PREFIX", default_value = "cf:")]
    pub redis_prefix: String,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub livekit: LiveKitArgs,
    /// Address of `GET /metrics` (Prometheus: the calls' per-turn latencies by bot). Unset: not
    /// served.
    #[arg(long, env = "CALLFLEET_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub dispatch: LiveKitDispatchArgs,
}

/// Where an agent's calls come from, and with `livekit` how it meets LiveKit's agent dispatch.
#[derive(Args, Debug, Clone)]
pub(crate) struct LiveKitDispatchArgs {
    /// Where calls come from: `callfleet` (the dispatcher's queue) or `livekit` (LiveKit's own
    /// agent dispatch over its `/agent` protocol, admitted by the dispatcher at
    /// --dispatcher-url; the dispatcher's queue is still served).
    #[arg(
        long,
        env = "CALLFLEET_DISPATCH",
        value_enum,
        default_value = "callfleet"
    )]
    pub mode: DispatchMode,
    /// The agent name this worker registers under with LiveKit (`--dispatch livekit`): what
    /// `roomConfig.agents[].agentName` and `CreateDispatch` ask for.
    #[arg(long, env = "CALLFLEET_AGENT_NAME", default_value = "callfleet")]
    pub agent_name: String,
    /// The bots the agent name serves, comma-separated; the first is the default for jobs whose
    /// dispatch and room metadata name no `bot_id`. Empty: any bot the metadata names.
    #[arg(long, env = "CALLFLEET_AGENT_BOTS", value_delimiter = ',')]
    pub agent_bots: Vec<String>,
    /// The dispatcher's HTTP address, which admits the rooms LiveKit dispatches here.
    #[arg(
        long,
        env = "CALLFLEET_DISPATCHER_URL",
        default_value = "http://127.0.0.1:8090"
    )]
    pub dispatcher_url: String,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq)]
pub(crate) enum DispatchMode {
    Callfleet,
    Livekit,
}

impl LiveKitDispatchArgs {
    /// With `--dispatch livekit`, LiveKit's agent dispatch around `session` (calls joining with
    /// `grants`), admitted by the dispatcher at `dispatcher_url`.
    fn dispatch(
        &self,
        livekit: &LiveKitArgs,
        session: Arc<dyn CallRunner>,
        grants: RoomGrants,
        dispatcher_url: &str,
    ) -> Option<Arc<LiveKitDispatch>> {
        if self.mode != DispatchMode::Livekit {
            return None;
        }
        println!(
            "LiveKit agent dispatch: agent name {:?}, bots {:?}, dispatcher {dispatcher_url}",
            self.agent_name, self.agent_bots
        );
        Some(LiveKitDispatch::new(
            LiveKitDispatchConfig {
                url: livekit.livekit_url.clone(),
                api_key: livekit.livekit_api_key.clone(),
                api_secret: livekit.livekit_api_secret.clone(),
                agent_name: self.agent_name.clone(),
                routing: BotRouting {
                    bots: self
                        .agent_bots
                        .iter()
                        .filter(|b| !b.is_empty())
                        .cloned()
                        .collect(),
                },
                dispatcher_url: dispatcher_url.to_string(),
                report_interval: Duration::from_secs(1),
            },
            session,
            grants,
        ))
    }
}

/// Runs `worker` until drained, registered with LiveKit's agent dispatch meanwhile when
/// `livekit` is set (it leaves LiveKit once the worker has finished its calls).
async fn run_worker(
    worker: Arc<Worker>,
    livekit: Option<Arc<LiveKitDispatch>>,
    drain: CancellationToken,
    force: CancellationToken,
) -> Result<(), callfleet_fleet::FleetError> {
    let stopped = CancellationToken::new();
    let registered = livekit
        .map(|dispatch| tokio::spawn(dispatch.run(worker.clone(), drain.clone(), stopped.clone())));
    let ran = worker.run(drain, force).await;
    stopped.cancel();
    if let Some(registered) = registered {
        registered.await.ok();
    }
    ran
}

#[derive(Args, Debug, Clone)]
pub(crate) struct DispatcherArgs {
    /// Redis, where the fleet meets (`redis://host:6379`).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: SecretUrl,
    #[arg(long, env = "CALLFLEET_REDIS_PREFIX", default_value = "cf:")]
    pub redis_prefix: String,
    /// Address for LiveKit webhooks (`POST /livekit/webhook`) and `GET /metrics`. In a container
    /// set it to `0.0.0.0:8090` so LiveKit can reach it.
    #[arg(
        long,
        env = "CALLFLEET_DISPATCHER_ADDR",
        default_value = "127.0.0.1:8090"
    )]
    pub http_addr: SocketAddr,
    /// Seconds a finished call taken by a post-call process may stay unacknowledged before
    /// another takes it over (its process died). Longer than one record takes to process: a
    /// model summary may take up to 20 s.
    #[arg(long, env = "CALLFLEET_POSTCALL_RECLAIM_SEC", default_value_t = 60)]
    pub postcall_reclaim_sec: u64,
    #[command(flatten)]
    pub livekit: LiveKitArgs,
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// Cancels `drain` on the first Ctrl-C/SIGTERM and `force` on the second.
fn watch_signals(drain: CancellationToken, force: CancellationToken) {
    tokio::spawn(async move {
        crate::serve::shutdown_signal().await;
        tracing::info!("draining: finishing running calls (signal again to force)");
        drain.cancel();
        crate::serve::shutdown_signal().await;
        tracing::warn!("forced stop: ending running calls");
        force.cancel();
    });
}

/// Calls with the environment's cloud keys and the local engines (which serve what the cloud
/// cannot when no key is set); says at start which engines calls will run on.
fn voice_session(livekit: LiveKitSettings) -> VoiceSession {
    let env = ProviderEnv::from_env();
    let engines = crate::models::local_engines();
    crate::models::describe_engines(&env, &engines);
    let mut session = VoiceSession::new(livekit, env).with_local_engines(engines.clone());
    let (turn_models, said) = crate::models::turn_models(&engines);
    println!("{said}");
    if let Some(turn_models) = turn_models {
        session = session.with_turn_models(turn_models);
    }
    session
}

/// Serves `GET /metrics` over `registry` on `addr` until the process ends.
async fn serve_metrics(addr: SocketAddr, registry: prometheus::Registry) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} for metrics (CALLFLEET_METRICS_ADDR)"))?;
    println!("metrics: http://{}/metrics", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, metrics_router(registry)).await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });
    Ok(())
}

pub(crate) async fn agent(global: &GlobalArgs, args: AgentArgs) -> anyhow::Result<()> {
    args.livekit.refuse_dev_secret("agent")?;
    let bus: Arc<dyn FleetBus> = Arc::new(
        RedisBus::connect(args.redis_url.expose(), &args.redis_prefix)
            .await
            .context("connecting to Redis")?,
    );
    let queue: Arc<dyn PostCallQueue> = Arc::new(
        RedisQueue::connect(args.redis_url.expose(), &args.redis_prefix)
            .await
            .context("opening the post-call stream")?,
    );
    let worker_id = args
        .worker
        .worker_id
        .clone()
        .unwrap_or_else(default_worker_id);
    let registry = prometheus::Registry::new();
    let settings = args.livekit.settings();
    let grants = settings.grants.clone();
    let mut session = voice_session(settings)
        .with_metrics(
            PipelineMetrics::register(&registry).context("registering the pipeline's metrics")?,
        )
        .with_recordings(crate::serve::open_recordings(global)?);
    match crate::serve::open_search().await? {
        Some(searcher) => session = session.with_knowledge(searcher),
        None => println!(
            "knowledge: QDRANT_URL is not set, so bots with use_knowledge_base find no documents \
             (the agent searches the Qdrant collection the admin API writes)"
        ),
    }
    if let Some(addr) = args.metrics_addr {
        serve_metrics(addr, registry).await?;
    }
    let session: Arc<dyn CallRunner> = Arc::new(session);
    let livekit = args.dispatch.dispatch(
        &args.livekit,
        session.clone(),
        grants,
        &args.dispatch.dispatcher_url,
    );
    let runner: Arc<dyn CallRunner> = match &livekit {
        Some(dispatch) => dispatch.clone(),
        None => session,
    };
    let worker = Worker::new(bus, queue, runner, args.worker.config(&worker_id));
    println!(
        "agent worker {worker_id}: capacity {}, LiveKit {}",
        args.worker.capacity, args.livekit.livekit_url
    );
    let (drain, force) = (CancellationToken::new(), CancellationToken::new());
    watch_signals(drain.clone(), force.clone());
    run_worker(worker, livekit, drain, force)
        .await
        .context("worker")
}

pub(crate) async fn dispatcher(global: &GlobalArgs, args: DispatcherArgs) -> anyhow::Result<()> {
    args.livekit.refuse_dev_secret("dispatcher")?;
    let store = crate::serve::open_store(global).await?;
    let bus: Arc<dyn FleetBus> = Arc::new(
        RedisBus::connect(args.redis_url.expose(), &args.redis_prefix)
            .await
            .context("connecting to Redis")?,
    );
    let queue: Arc<dyn PostCallQueue> = Arc::new(
        RedisQueue::connect(args.redis_url.expose(), &args.redis_prefix)
            .await
            .context("opening the post-call stream")?,
    );
    // A dead worker's rooms that LiveKit dispatched are dispatched again through LiveKit.
    let livekit_api = LiveKitApi::new(
        &args.livekit.livekit_url,
        &args.livekit.livekit_api_key,
        args.livekit.livekit_api_secret.clone(),
    )
    .context("LIVEKIT_URL for LiveKit's server API")?;
    let dispatcher = Arc::new(
        Dispatcher::new(bus, store.clone(), DispatcherConfig::default())
            .with_livekit_dispatch(livekit_api),
    );
    let shutdown = CancellationToken::new();
    let sip = args.livekit.sip_provisioner(&store)?;
    let failover = tokio::spawn(dispatcher.clone().run_failover(shutdown.clone()));
    let reconcile = tokio::spawn(reconcile_sip(sip, shutdown.clone()));
    let postcall = tokio::spawn(
        PostCallWorker::new(
            queue,
            store.clone(),
            &format!("postcall-{}", std::process::id()),
        )
        .with_summarizer(Summarizer::for_bots(store, ProviderEnv::from_env()))
        .with_reclaim_after(Duration::from_secs(args.postcall_reclaim_sec.max(1)))
        .with_recordings(crate::serve::open_recordings(global)?)
        .run(shutdown.clone()),
    );
    let state = WebhookState::new(
        dispatcher,
        &args.livekit.livekit_api_key,
        args.livekit.livekit_api_secret.expose(),
    );
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| {
            format!(
                "listening on {} (CALLFLEET_DISPATCHER_ADDR)",
                args.http_addr
            )
        })?;
    let addr = listener.local_addr()?;
    println!("dispatcher: LiveKit webhooks at http://{addr}/livekit/webhook, metrics at http://{addr}/metrics");
    let router = http_router(state, prometheus::Registry::new())
        .context("registering the dispatcher's metrics")?;
    axum::serve(listener, router)
        .with_graceful_shutdown(crate::serve::shutdown_signal())
        .await?;
    shutdown.cancel();
    failover.await.ok();
    postcall.await.ok();
    reconcile.await.ok();
    Ok(())
}

/// Brings LiveKit's SIP trunks and dispatch rules in line with the phone numbers in the database,
/// retrying (1 s doubling to a minute) until LiveKit answers.
async fn reconcile_sip(sip: Option<Arc<SipProvisioner>>, shutdown: CancellationToken) {
    let Some(sip) = sip else { return };
    let mut wait = Duration::from_secs(1);
    loop {
        match sip.reconcile().await {
            Ok(report) => {
                tracing::info!(
                    provisioned = ?report.provisioned,
                    removed = ?report.removed,
                    unchanged = report.unchanged,
                    "LiveKit SIP reconciled with the phone numbers"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?wait, "LiveKit SIP reconciliation failed")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}

/// Browser calls for `callfleet api`: placements go through the Redis fleet.
pub(crate) async fn browser_calls(
    global: &GlobalArgs,
    redis_url: &str,
    prefix: &str,
    livekit: &LiveKitArgs,
) -> anyhow::Result<callfleet_admin_api::BrowserCalls> {
    let store = crate::serve::open_store(global).await?;
    let bus: Arc<dyn FleetBus> = Arc::new(
        RedisBus::connect(redis_url, prefix)
            .await
            .context("connecting to Redis")?,
    );
    Ok(callfleet_admin_api::BrowserCalls {
        dispatcher: Arc::new(Dispatcher::new(bus, store, DispatcherConfig::default())),
        livekit_url: livekit
            .livekit_public_url
            .clone()
            .unwrap_or_else(|| livekit.livekit_url.clone()),
        api_key: livekit.livekit_api_key.clone(),
        api_secret: livekit.livekit_api_secret.clone(),
    })
}

/// Whether something accepts connections where the LiveKit URL points.
async fn livekit_answers(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let target = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:80")
    };
    matches!(
        tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(&target)
        )
        .await,
        Ok(Ok(_))
    )
}

pub(crate) async fn dev(
    global: &GlobalArgs,
    api: ApiArgs,
    livekit: LiveKitArgs,
    worker: WorkerArgs,
    dispatch: LiveKitDispatchArgs,
) -> anyhow::Result<()> {
    let store = crate::serve::open_store(global).await?;
    let bus: Arc<dyn FleetBus> = Arc::new(MemoryBus::new());
    let queue: Arc<dyn PostCallQueue> = Arc::new(
        FileQueue::open(&global.data_dir.join("queue"))
            .context("opening the post-call queue under the data dir")?,
    );
    let dispatcher = Arc::new(Dispatcher::new(
        bus.clone(),
        store.clone(),
        DispatcherConfig::default(),
    ));
    let knowledge = crate::serve::open_knowledge(global, &store).await?;
    // The queue and the index were just created under the data dir, with the process's umask.
    crate::private::keep_private(&global.data_dir);
    let shutdown = CancellationToken::new();
    let (drain, force) = (CancellationToken::new(), CancellationToken::new());
    let worker_id = worker
        .worker_id
        .clone()
        .unwrap_or_else(|| "dev-worker".into());
    let settings = livekit.settings();
    let grants = settings.grants.clone();
    let session: Arc<dyn CallRunner> = Arc::new(
        voice_session(settings)
            .with_knowledge(knowledge.searcher().clone())
            .with_recordings(crate::serve::open_recordings(global)?),
    );
    // With LiveKit's agent dispatch, the in-process dispatcher admits the rooms LiveKit hands
    // the worker over its own HTTP service, on a loopback port of its own.
    let lk_dispatch = if dispatch.mode == DispatchMode::Livekit {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("listening for the dispatcher's agent-jobs service")?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = WebhookState::new(
            dispatcher.clone(),
            &livekit.livekit_api_key,
            livekit.livekit_api_secret.expose(),
        );
        let router = http_router(state, prometheus::Registry::new())
            .context("registering the dispatcher's metrics")?;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the dispatcher's HTTP service stopped");
            }
        });
        dispatch.dispatch(&livekit, session.clone(), grants, &url)
    } else {
        None
    };
    let runner: Arc<dyn CallRunner> = match &lk_dispatch {
        Some(d) => d.clone(),
        None => session,
    };
    let agent = Worker::new(
        bus.clone(),
        queue.clone(),
        runner,
        worker.config(&worker_id),
    );
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(dispatcher.clone().run_failover(shutdown.clone()));
    tasks.spawn(
        PostCallWorker::new(queue, store.clone(), "dev")
            .with_summarizer(Summarizer::for_bots(store.clone(), ProviderEnv::from_env()))
            .with_recordings(crate::serve::open_recordings(global)?)
            .run(shutdown.clone()),
    );
    tasks.spawn({
        let (drain, force) = (drain.clone(), force.clone());
        async move {
            if let Err(e) = run_worker(agent, lk_dispatch, drain, force).await {
                tracing::error!(error = %e, "agent worker stopped");
            }
        }
    });
    if livekit_answers(&livekit.livekit_url).await {
        println!(
            "LiveKit: {} answers; browser calls go there (POST /bots/{{id}}/sessions)",
            livekit.livekit_url
        );
    } else {
        println!(
            "LiveKit: nothing answers at {} — browser calls will fail until one runs. Start one with \
             `scripts/start-livekit-server.sh /tmp/callfleet-livekit` (installs it through the Go module proxy), \
             or set LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET",
            livekit.livekit_url
        );
    }
    println!(
        "agent worker {worker_id}: capacity {}, in process",
        worker.capacity
    );
    let calls = callfleet_admin_api::BrowserCalls {
        dispatcher,
        livekit_url: livekit
            .livekit_public_url
            .clone()
            .unwrap_or_else(|| livekit.livekit_url.clone()),
        api_key: livekit.livekit_api_key.clone(),
        api_secret: livekit.livekit_api_secret.clone(),
    };
    let served = crate::serve::dev_api(global, &api, store, calls, knowledge).await;
    drain.cancel();
    shutdown.cancel();
    // Give running calls a moment to end cleanly; a second Ctrl-C is not needed in dev.
    if tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        force.cancel();
        while tasks.join_next().await.is_some() {}
    }
    served
}
