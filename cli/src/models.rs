//! `callfleet models pull|list`, and the wiring of the local engines into the subcommands that
//! run calls (`dev`, `agent`, `console`): one process-wide [`LocalFactory`] on the models dir,
//! Silero VAD + Smart Turn per call when their models are there (the energy VAD otherwise).

use anyhow::Context;
use callfleet_agent::{CallTurnModels, TurnModelFactory};
use callfleet_local_engines::models::{catalog, pull as pull_models, select, Pip, Pulled};
use callfleet_local_engines::{models_dir, LocalFactory, PULL_HINT};
use callfleet_providers::ProviderEnv;
use std::path::PathBuf;
use std::sync::Arc;

/// `callfleet models pull`: fetches what is missing; prints the models dir on the last line.
pub(crate) fn pull(
    only: &[String],
    find_links: Option<PathBuf>,
    no_index: bool,
) -> anyhow::Result<()> {
    let dir = models_dir();
    let specs = select(catalog(), only)?;
    let pip = Pip {
        find_links,
        no_index,
    };
    let done = pull_models(&specs, &dir, &pip, |line| eprintln!("{line}"))
        .with_context(|| format!("pulling models into {}", dir.display()))?;
    let installed = done.iter().filter(|(_, p)| *p == Pulled::Installed).count();
    eprintln!(
        "models: {installed} installed, {} already present",
        done.len() - installed
    );
    println!("{}", dir.display());
    Ok(())
}

/// `callfleet models list`: each model and whether it is installed; each engine and whether it
/// can run.
pub(crate) fn list() -> anyhow::Result<()> {
    let dir = models_dir();
    println!("models dir: {}", dir.display());
    for spec in catalog() {
        let state = if spec.is_present(&dir) {
            "present"
        } else {
            "missing"
        };
        let packages: Vec<&str> = spec.wheels.iter().map(|w| w.package.as_str()).collect();
        println!("  {:<18} {state:<8} {}", spec.name, packages.join(" + "));
    }
    for status in LocalFactory::shared().status() {
        match status.ready {
            Ok(()) => println!("  engine {:<26} ready", status.engine),
            Err(why) => println!("  engine {:<26} unavailable: {why}", status.engine),
        }
    }
    Ok(())
}

/// The process's local engines.
pub(crate) fn local_engines() -> Arc<LocalFactory> {
    LocalFactory::shared()
}

/// Silero VAD (and Smart Turn when present) for each call, or `None` for the energy VAD, with a
/// line saying which. `CALLFLEET_VAD=energy` keeps the energy VAD even when Silero is there.
pub(crate) fn turn_models(engines: &Arc<LocalFactory>) -> (Option<TurnModelFactory>, String) {
    if std::env::var("CALLFLEET_VAD").is_ok_and(|v| v.eq_ignore_ascii_case("energy")) {
        return (
            None,
            "turn-taking: energy VAD (CALLFLEET_VAD=energy)".into(),
        );
    }
    let status = engines.status();
    let ready = |name: &str| {
        status
            .iter()
            .find(|s| s.engine == name)
            .map(|s| s.ready.clone())
            .unwrap_or_else(|| Err("unknown".into()))
    };
    if let Err(why) = ready("silero-vad") {
        return (
            None,
            format!("turn-taking: energy VAD (Silero VAD unavailable: {why})"),
        );
    }
    let smart_turn = ready("smart-turn");
    let said = match &smart_turn {
        Ok(()) => "turn-taking: Silero VAD + Smart Turn v3.2".to_string(),
        Err(why) => {
            format!("turn-taking: Silero VAD, no end-of-turn model (Smart Turn unavailable: {why})")
        }
    };
    let with_turn = smart_turn.is_ok();
    let engines = engines.clone();
    let factory: TurnModelFactory = Arc::new(move || {
        CallTurnModels {
        vad: engines.vad().map_err(|e| tracing::warn!(error = %e, "Silero VAD failed to open; this call uses the energy VAD.")).ok(),
        end_of_turn: if with_turn {
            engines.turn_model().map_err(|e| tracing::warn!(error = %e, "Smart Turn failed to open; this call goes without.")).ok()
        } else {
            None
        },
    }
    });
    (Some(factory), said)
}

/// Which engines calls will run on, and what is missing, for the start of `dev`/`agent`.
pub(crate) fn describe_engines(env: &ProviderEnv, engines: &LocalFactory) {
    let keys = env.cloud_keys();
    let status = engines.status();
    let ready: Vec<&str> = status
        .iter()
        .filter(|s| s.ready.is_ok())
        .map(|s| s.engine.as_str())
        .collect();
    let missing: Vec<&str> = status
        .iter()
        .filter(|s| s.ready.is_err())
        .map(|s| s.engine.as_str())
        .collect();
    if keys.is_empty() {
        println!(
            "engines: no cloud keys (DEEPGRAM_API_KEY, CARTESIA_API_KEY, …) — bots run on local engines: whisper (tiny.en for \
             English, base otherwise) + local-llm (SmolLM2-135M) + piper (English) / espeak (other languages), unless they name others"
        );
    } else {
        println!("engines: cloud keys for {}; local engines serve bots that name them (whisper, local-llm, piper, espeak)", keys.join(", "));
    }
    println!(
        "engines ready: {}",
        if ready.is_empty() {
            "none".to_string()
        } else {
            ready.join(", ")
        }
    );
    if !missing.is_empty() {
        println!(
            "engines unavailable: {} — models missing: {PULL_HINT} (models dir {})",
            missing.join(", "),
            engines.models_dir().display()
        );
    }
}
