//! `callfleet console --bot FILE --wav-in caller.wav --wav-out reply.wav`: the console's audio
//! mode. The caller's recording is played in real time through the same pipeline a LiveKit call
//! runs (VAD, streaming STT, turn-taking, the scenario engine, streaming TTS), assembled as an
//! agent assembles a call ([`CallPlan`]), with the providers the bot configures and the keys in
//! the environment, chosen as `callfleet dev` chooses them:
//! local engines (whisper, local-llm, piper, espeak) are built too, and with no cloud key they
//! serve whatever the cloud cannot — so it runs fully offline; Silero VAD and Smart Turn judge
//! the caller when their models are there. The bot's audio is written on the same
//! timeline as the caller's. Transcript lines print as they happen (`caller: …`, `bot: …`), and
//! `--json` adds the call result as one JSON object on the last line, as in text mode.

use crate::console::{load_documents, ConsoleOptions};
use anyhow::{bail, Context};
use callfleet_agent::{CallPlan, EngineStart};
use callfleet_audio::wav;
use callfleet_core::domain::Speaker;
use callfleet_core::scenario::CallContext;
use callfleet_core::BotConfig;
use callfleet_pipeline::{run_recorded_call, ScenarioResponder};
use callfleet_providers::{LocalEngines, ProviderEnv};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long the call goes on in silence after the recording ends, once the bot is quiet.
const TAIL: Duration = Duration::from_secs(3);

/// Runs an audio conversation from `wav_in` to `wav_out`; keys and endpoints from the
/// environment (`DEEPGRAM_API_KEY`, `CARTESIA_API_KEY`, …, see [`ProviderEnv::from_env`]).
pub fn run(
    bot: &Path,
    wav_in: &Path,
    wav_out: &Path,
    options: &ConsoleOptions,
) -> anyhow::Result<()> {
    let engines = crate::models::local_engines();
    let (turn_models, said) = crate::models::turn_models(&engines);
    tracing::info!("{said}");
    let local = LocalSelection {
        engines: Some(engines as Arc<dyn LocalEngines>),
        turn_models,
    };
    let fut = run_async(
        bot,
        wav_in,
        wav_out,
        options,
        ProviderEnv::from_env(),
        local,
        std::io::stdout(),
    );
    match tokio::runtime::Handle::try_current() {
        // Called from the binary's runtime: borrow this worker thread for the call.
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(fut)),
        Err(_) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?
            .block_on(fut),
    }
}

/// The local engines a console call may use.
#[derive(Default)]
pub struct LocalSelection {
    pub engines: Option<Arc<dyn LocalEngines>>,
    pub turn_models: Option<callfleet_agent::TurnModelFactory>,
}

/// [`run`] with explicit provider settings and output, for tests and async callers.
pub async fn run_async(
    bot: &Path,
    wav_in: &Path,
    wav_out: &Path,
    options: &ConsoleOptions,
    env: ProviderEnv,
    local: LocalSelection,
    mut output: impl Write,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(bot)
        .with_context(|| format!("reading bot config {}", bot.display()))?;
    let config =
        BotConfig::parse_any(&text).with_context(|| format!("bot config {}", bot.display()))?;
    let context = match &options.now {
        Some(now) => {
            let at = CallContext::parse_instant(now).with_context(|| {
                format!("--now {now:?}: expected RFC 3339, e.g. 2025-03-12T10:00:00+03:00")
            })?;
            CallContext::for_bot(&config, at)
        }
        None => CallContext::for_bot_now(&config),
    };
    let bot_id = config
        .bot_id
        .clone()
        .or_else(|| config.name.clone())
        .unwrap_or_else(|| "console".into());
    let started_at = context.now.timestamp_millis();
    let mut plan = CallPlan::new(bot_id, config, EngineStart::Fresh(context), started_at)
        .with_providers(&env, local.engines.as_deref());
    for skipped in &plan.skipped {
        tracing::warn!(provider = %skipped, "Provider left out.");
    }
    tracing::info!(chosen = ?plan.chosen, "Providers for this call.");
    let Some(speech) = plan.speech.take() else {
        let why = if plan.skipped.is_empty() {
            "none configured".to_string()
        } else {
            plan.skipped.join("; ")
        };
        bail!(
            "audio mode needs a speech-to-text and a text-to-speech provider: the bot's `providers:`, or local engines \
             when no cloud key is set ({why}); text mode needs none"
        );
    };

    let input = wav::read(wav_in).with_context(|| format!("reading {}", wav_in.display()))?;
    let rates = plan.pipeline_config();
    let caller = callfleet_audio::resample(&input.samples, input.sample_rate, rates.input_rate);
    let out_rate = rates.output_rate;
    if let Some(dir) = options.docs.clone().or_else(|| default_docs_dir(bot)) {
        plan = plan.with_knowledge(Arc::new(load_documents(&dir)?));
    }
    let pipeline = plan.pipeline(speech, local.turn_models.as_ref()).await;
    let mut lines = Vec::new();
    let call = run_recorded_call(
        pipeline,
        Box::new(ScenarioResponder::new(plan.engine)),
        &caller,
        TAIL,
        |turn| {
            let who = match (turn.speaker, turn.interrupted) {
                (Speaker::User, _) => "caller",
                (Speaker::Bot, false) => "bot",
                (Speaker::Bot, true) => "bot (interrupted)",
            };
            lines.push(format!("{who}: {}", turn.text));
        },
    )
    .await
    .context("running the call")?;
    for line in &lines {
        writeln!(output, "{line}")?;
    }
    wav::write(wav_out, &call.reply, out_rate)
        .with_context(|| format!("writing {}", wav_out.display()))?;

    if options.json {
        let transcript: Vec<serde_json::Value> = call
            .report
            .transcript
            .iter()
            .map(|t| serde_json::json!({"speaker": t.speaker, "text": t.text, "at_ms": t.at_ms, "interrupted": t.interrupted}))
            .collect();
        let result = call.report.result.as_ref();
        let summary = serde_json::json!({
            "outcome": result.map(|r| r.outcome.kind.clone()),
            "evidence": result.map(|r| r.outcome.evidence.clone()),
            "fields": result.map(|r| r.fields.clone()),
            "language": result.map(|r| r.language.clone()),
            "turns": result.map(|r| r.turns),
            "transcript": transcript,
            "metrics": call.report.metrics,
        });
        writeln!(output, "{}", serde_json::to_string(&summary)?)?;
    }
    output.flush()?;
    Ok(())
}

fn default_docs_dir(bot: &Path) -> Option<PathBuf> {
    let dir = bot.parent()?.join("docs").join(bot.file_stem()?);
    dir.is_dir().then_some(dir)
}
