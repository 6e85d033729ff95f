//! Wiring of the long-running subcommands: open the store, migrate, serve until Ctrl-C/SIGTERM.

use crate::{ApiArgs, GlobalArgs};
use anyhow::Context;
use callfleet_admin_api::{ApiConfig, ApiContext};
use callfleet_core::secret::Secret;
use callfleet_knowledge::{
    EdgeIndex, Embedder, HashingEmbedder, KnowledgeConfig, KnowledgeSearcher, KnowledgeService,
    MiniLmEmbedder, QdrantIndex, SearchConfig, VectorIndex,
};
use callfleet_store::Store;
use rand::distributions::Alphanumeric;
use rand::Rng;
use std::path::Path;
use std::sync::Arc;

/// Opens the database the flags name and brings its schema up to date.
pub(crate) async fn open_store(global: &GlobalArgs) -> anyhow::Result<Store> {
    let store = match &global.database_url {
        Some(url) => Store::connect(url.expose())
            .await
            .with_context(|| format!("connecting to {url}"))?,
        None => {
            let store = Store::open_data_dir(&global.data_dir)
                .await
                .with_context(|| {
                    format!(
                        "opening the embedded database under {}",
                        global.data_dir.display()
                    )
                })?;
            crate::private::keep_private(&global.data_dir);
            store
        }
    };
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

fn describe_store(global: &GlobalArgs) -> String {
    match &global.database_url {
        Some(url) => format!("PostgreSQL at {url}"),
        None => format!(
            "SQLite at {}",
            global.data_dir.join("callfleet.db").display()
        ),
    }
}

pub(crate) async fn migrate(global: &GlobalArgs) -> anyhow::Result<()> {
    open_store(global).await?;
    println!("migrations applied: {}", describe_store(global));
    Ok(())
}

/// The embedder of the knowledge base: the offline MiniLM (or, without its weights, the hashing
/// embedder, said once at start). The admin API and the agents must choose alike — they embed
/// documents and questions into the same index — so both find the models the same way.
fn knowledge_embedder() -> Arc<dyn Embedder> {
    match MiniLmEmbedder::load_default() {
        Ok(minilm) => Arc::new(minilm),
        Err(e) => {
            println!("knowledge: MiniLM weights not found ({e}); using the hashing embedder — run `callfleet models pull`");
            Arc::new(HashingEmbedder::new(384))
        }
    }
}

fn qdrant_url() -> Option<String> {
    std::env::var("QDRANT_URL").ok().filter(|u| !u.is_empty())
}

/// The Qdrant collection at QDRANT_URL (QDRANT_API_KEY) that the admin API writes and agents search.
async fn qdrant_index(url: &str, dimension: usize) -> anyhow::Result<Arc<dyn VectorIndex>> {
    let key = std::env::var("QDRANT_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .map(Secret::new);
    Ok(Arc::new(
        QdrantIndex::connect(url, key, "callfleet_knowledge", dimension)
            .await
            .with_context(|| format!("connecting to Qdrant at {url}"))?,
    ))
}

/// Search over the knowledge base for `callfleet agent`: the Qdrant collection at QDRANT_URL
/// (the one the admin API writes), no database. `None` without QDRANT_URL: an embedded index
/// belongs to the process that opened it.
pub(crate) async fn open_search() -> anyhow::Result<Option<KnowledgeSearcher>> {
    let Some(url) = qdrant_url() else {
        return Ok(None);
    };
    let embedder = knowledge_embedder();
    let index = qdrant_index(&url, embedder.dimension()).await?;
    println!(
        "knowledge: searching Qdrant at {url} with {}",
        embedder.model_id()
    );
    Ok(Some(
        KnowledgeSearcher::new(index, embedder, SearchConfig::default())
            .context("opening knowledge search")?,
    ))
}

/// The knowledge service — on Qdrant when QDRANT_URL is set, else on the embedded index under the
/// data dir — with [`knowledge_embedder`].
pub(crate) async fn open_knowledge(
    global: &GlobalArgs,
    store: &Store,
) -> anyhow::Result<KnowledgeService> {
    let embedder = knowledge_embedder();
    let index: Arc<dyn VectorIndex> = match qdrant_url() {
        Some(url) => qdrant_index(&url, embedder.dimension()).await?,
        None => {
            let dir =
                EdgeIndex::dir_in(&global.data_dir, embedder.model_id(), embedder.dimension());
            Arc::new(
                EdgeIndex::open(&dir, embedder.dimension())
                    .with_context(|| format!("opening the vector index in {}", dir.display()))?,
            )
        }
    };
    let knowledge =
        KnowledgeService::new(store.clone(), index, embedder, KnowledgeConfig::default())
            .context("starting the knowledge service")?;
    let recovered = knowledge
        .recover_interrupted()
        .await
        .context("cleaning up interrupted indexing")?;
    if recovered > 0 {
        println!("knowledge: {recovered} document(s) left half-indexed by an earlier run were marked failed");
    }
    Ok(knowledge)
}

/// The dev admin key: the configured one, else the one kept in `DATA/admin.key`, else a new one
/// written there (readable by the owner only).
fn dev_admin_key(
    configured: Option<Secret>,
    data_dir: &Path,
) -> anyhow::Result<(Secret, Option<String>)> {
    if let Some(key) = configured.filter(|k| !k.is_empty()) {
        return Ok((key, None));
    }
    let path = data_dir.join("admin.key");
    let key = match std::fs::read_to_string(&path) {
        Ok(existing) if !existing.trim().is_empty() => existing.trim().to_string(),
        _ => {
            let random: String = rand::thread_rng()
                .sample_iter(&Alphanumeric)
                .take(40)
                .map(char::from)
                .collect();
            let key = format!("cfa_{random}");
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            write_private(&path, &key).with_context(|| format!("writing {}", path.display()))?;
            key
        }
    };
    Ok((Secret::new(key), Some(path.display().to_string())))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

fn api_config(args: &ApiArgs, admin_key: Secret) -> ApiConfig {
    ApiConfig {
        admin_key,
        rate_limit_per_sec: args.rate_limit,
        rate_limit_burst: args.rate_burst,
        max_body_bytes: args.max_body_bytes,
        max_upload_bytes: args.max_upload_bytes,
        ..ApiConfig::default()
    }
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

async fn run_api_with(ctx: ApiContext, args: &ApiArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| {
            format!(
                "listening on {} (set --http-addr or CALLFLEET_HTTP_ADDR)",
                args.http_addr
            )
        })?;
    let addr = listener.local_addr().context("reading the bound address")?;
    println!("admin API: http://{addr}  (OpenAPI: http://{addr}/openapi.json)");
    tracing::info!(%addr, "admin API listening");
    callfleet_admin_api::serve(listener, ctx, shutdown_signal())
        .await
        .context("serving the admin API")
}

/// Where call recordings are kept: an S3-compatible bucket (`CALLFLEET_RECORDINGS_S3_*`), else
/// `recordings/` under the data dir.
pub(crate) fn open_recordings(
    global: &GlobalArgs,
) -> anyhow::Result<std::sync::Arc<dyn callfleet_recording::RecordingStore>> {
    callfleet_recording::from_env(|name| std::env::var(name).ok(), &global.data_dir)
        .context("opening the recording store")
}

/// The API half of `callfleet dev`: the embedded store, a dev admin key, browser calls enabled.
pub(crate) async fn dev_api(
    global: &GlobalArgs,
    args: &ApiArgs,
    store: Store,
    calls: callfleet_admin_api::BrowserCalls,
    knowledge: KnowledgeService,
) -> anyhow::Result<()> {
    let (admin_key, key_file) = dev_admin_key(args.admin_key.clone(), &global.data_dir)?;
    println!("callfleet dev: database {}", describe_store(global));
    match key_file {
        Some(path) => println!("admin key: in {path}  (export CALLFLEET_ADMIN_KEY=$(cat {path}))"),
        None => println!("admin key: from CALLFLEET_ADMIN_KEY"),
    }
    let ctx = ApiContext::new(api_config(args, admin_key), store)
        .with_browser_calls(calls)
        .with_knowledge(knowledge)
        .with_recordings(open_recordings(global)?);
    run_api_with(ctx, args).await
}

pub(crate) async fn api(
    global: &GlobalArgs,
    args: ApiArgs,
    calls: Option<callfleet_admin_api::BrowserCalls>,
    livekit: &crate::fleet::LiveKitArgs,
) -> anyhow::Result<()> {
    let admin_key = args
        .admin_key
        .clone()
        .filter(|k| !k.is_empty())
        .context("CALLFLEET_ADMIN_KEY (or --admin-key) is required for `callfleet api`")?;
    let store = open_store(global).await?;
    println!("callfleet api: database {}", describe_store(global));
    let knowledge = open_knowledge(global, &store).await?;
    let mut ctx = ApiContext::new(api_config(&args, admin_key), store)
        .with_knowledge(knowledge)
        .with_recordings(open_recordings(global)?);
    if let Some(calls) = calls {
        ctx = ctx.with_browser_calls(calls);
    }
    if let Some(sip) = livekit.sip_provisioner(&ctx.store)? {
        ctx = ctx.with_sip_provisioning(sip);
    }
    run_api_with(ctx, &args).await
}
