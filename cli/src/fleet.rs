//! Wiring of the fleet services: `callfleet agent`, `callfleet dispatcher`, and the fleet half of
//! `callfleet dev` (in-process bus, one worker, post-call consumer on a file queue).

use crate::{ApiArgs, GlobalArgs};
use anyhow::Context;
use callfleet_agent::{LiveKitSettings, VoiceSession, Worker, WorkerConfig};
use callfleet_core::secret::Secret;
use callfleet_dispatcher::{webhook_router, Dispatcher, DispatcherConfig, WebhookState};
use callfleet_fleet::{FileQueue, FleetBus, MemoryBus, PostCallQueue, RedisBus, RedisQueue};
use callfleet_postcall::PostCallWorker;
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
    pub livekit_api_secret: String,
}

impl LiveKitArgs {
    fn settings(&self) -> LiveKitSettings {
        LiveKitSettings {
            url: self.livekit_url.clone(),
            api_key: self.livekit_api_key.clone(),
            api_secret: Secret::new(self.livekit_api_secret.clone()),
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
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: String,
    /// Key prefix on Redis, to run several fleets on one server.
    #[arg(long, env = "CALLFLEET_REDIS_PREFIX", default_value = "cf:")]
    pub redis_prefix: String,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub livekit: LiveKitArgs,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct DispatcherArgs {
    /// Redis, where the fleet meets (`redis://host:6379`).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: String,
    #[arg(long, env = "CALLFLEET_REDIS_PREFIX", default_value = "cf:")]
    pub redis_prefix: String,
    /// Address for LiveKit webhooks (`POST /livekit/webhook`).
    #[arg(
        long,
        env = "CALLFLEET_DISPATCHER_ADDR",
        default_value = "127.0.0.1:8090"
    )]
    pub http_addr: SocketAddr,
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

pub(crate) async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let bus: Arc<dyn FleetBus> = Arc::new(
        RedisBus::connect(&args.redis_url, &args.redis_prefix)
            .await
            .context("connecting to Redis")?,
    );
    let queue: Arc<dyn PostCallQueue> = Arc::new(
        RedisQueue::connect(&args.redis_url, &args.redis_prefix)
            .await
            .context("opening the post-call stream")?,
    );
    let worker_id = args
        .worker
        .worker_id
        .clone()
        .unwrap_or_else(default_worker_id);
    let runner = Arc::new(voice_session(args.livekit.settings()));
    let worker = Worker::new(bus, queue, runner, args.worker.config(&worker_id));
    println!(
        "agent worker {worker_id}: capacity {}, LiveKit {}",
        args.worker.capacity, args.livekit.livekit_url
    );
    let (drain, force) = (CancellationToken::new(), CancellationToken::new());
    watch_signals(drain.clone(), force.clone());
    worker.run(drain, force).await.context("worker")
}

pub(crate) async fn dispatcher(global: &GlobalArgs, args: DispatcherArgs) -> anyhow::Result<()> {
    let store = crate::serve::open_store(global).await?;
    let bus: Arc<dyn FleetBus> = Arc::new(
        RedisBus::connect(&args.redis_url, &args.redis_prefix)
            .await
            .context("connecting to Redis")?,
    );
    let queue: Arc<dyn PostCallQueue> = Arc::new(
        RedisQueue::connect(&args.redis_url, &args.redis_prefix)
            .await
            .context("opening the post-call stream")?,
    );
    let dispatcher = Arc::new(Dispatcher::new(
        bus,
        store.clone(),
        DispatcherConfig::default(),
    ));
    let shutdown = CancellationToken::new();
    let failover = tokio::spawn(dispatcher.clone().run_failover(shutdown.clone()));
    let postcall = tokio::spawn(
        PostCallWorker::new(queue, store, &format!("postcall-{}", std::process::id()))
            .run(shutdown.clone()),
    );
    let state = WebhookState::new(
        dispatcher,
        &args.livekit.livekit_api_key,
        &args.livekit.livekit_api_secret,
    );
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("listening on {}", args.http_addr))?;
    println!(
        "dispatcher: LiveKit webhooks at http://{}/livekit/webhook",
        listener.local_addr()?
    );
    axum::serve(listener, webhook_router(state))
        .with_graceful_shutdown(crate::serve::shutdown_signal())
        .await?;
    shutdown.cancel();
    failover.await.ok();
    postcall.await.ok();
    Ok(())
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
        api_secret: Secret::new(livekit.livekit_api_secret.clone()),
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
    let shutdown = CancellationToken::new();
    let (drain, force) = (CancellationToken::new(), CancellationToken::new());
    let worker_id = worker
        .worker_id
        .clone()
        .unwrap_or_else(|| "dev-worker".into());
    let agent = Worker::new(
        bus.clone(),
        queue.clone(),
        Arc::new(voice_session(livekit.settings()).with_knowledge(knowledge.clone())),
        worker.config(&worker_id),
    );
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(dispatcher.clone().run_failover(shutdown.clone()));
    tasks.spawn(PostCallWorker::new(queue, store.clone(), "dev").run(shutdown.clone()));
    tasks.spawn({
        let (drain, force) = (drain.clone(), force.clone());
        async move {
            if let Err(e) = agent.run(drain, force).await {
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
        api_secret: Secret::new(livekit.livekit_api_secret.clone()),
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
