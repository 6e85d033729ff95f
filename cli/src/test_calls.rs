//! `callfleet test-calls DIR`: runs every scripted call (`*.yaml`) under a directory against
//! its bot, prints one line per script and `N passed, N failed`, and fails when any failed.
//! The script format is documented in `callfleet_core::scenario::script`.

use anyhow::Context;
use callfleet_core::scenario::script::ScriptDocument;
use callfleet_core::scenario::{run_script_with, CallScript, Llm, ScriptScore};
use callfleet_core::BotConfig;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The evaluation targets of `--targets` (issue #18).
pub const MIN_EXACT_MATCH: f64 = 0.95;
pub const MAX_WRONG_VALUES: f64 = 0.01;
pub const MAX_UNSUPPORTED: f64 = 0.0;

#[derive(Default)]
pub struct Options {
    pub report: bool,
    pub targets: bool,
    pub llm: Option<Arc<dyn Llm>>,
}

/// The bots' language model for `--llm NAME --llm-url URL --llm-model MODEL`; `local` is the
/// offline SmolLM2 (`callfleet models pull`).
pub fn model(
    name: Option<&str>,
    url: Option<&str>,
    model: &str,
) -> anyhow::Result<Option<Arc<dyn Llm>>> {
    use callfleet_providers::{ollama::Ollama, openai::OpenAi, EngineLlm, LanguageModel};
    let language_model: Arc<dyn LanguageModel> = match name {
        None => return Ok(None),
        Some("ollama") => Arc::new(Ollama::new(url.unwrap_or("http://127.0.0.1:11434"), model)),
        Some("openai") => Arc::new(OpenAi::new(
            url.unwrap_or("https://api.openai.com/v1"),
            std::env::var("OPENAI_API_KEY")
                .ok()
                .map(callfleet_core::secret::Secret::new),
            model,
        )),
        Some("local") => {
            use callfleet_providers::LocalEngines;
            let choice: callfleet_core::config::ProviderChoice =
                serde_json::from_value(serde_json::json!({"provider": "local-llm"}))
                    .context("the local-llm choice")?;
            crate::models::local_engines()
                .llm(&choice)
                .map_err(|why| anyhow::anyhow!("--llm local: {why}"))?
        }
        Some(other) => anyhow::bail!("--llm {other}: expected ollama, openai or local"),
    };
    Ok(Some(Arc::new(EngineLlm::new(language_model))))
}

/// Runs the scripts under `dir` (or the one script `dir` names) and reports on stdout.
pub async fn run(dir: &Path, options: Options) -> anyhow::Result<()> {
    // Line by line as the scripts run (a run with a local model takes minutes).
    let failed = run_with(dir, &options, std::io::stdout()).await?;
    if failed > 0 {
        anyhow::bail!("{failed} scripted call(s) failed");
    }
    Ok(())
}

/// [`run`] writing to any output; returns how many scripts failed (with `targets`: 1 when a
/// target is missed, else 0).
pub async fn run_with(
    dir: &Path,
    options: &Options,
    mut output: impl Write,
) -> anyhow::Result<usize> {
    let mut scripts = Vec::new();
    collect_scripts(dir, &mut scripts)?;
    scripts.sort();
    if scripts.is_empty() {
        anyhow::bail!("no scripted calls (*.yaml) under {}", dir.display());
    }
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    let mut total = ScriptScore::default();
    for path in &scripts {
        match run_one(path, options.llm.clone()).await {
            Ok(None) => skipped += 1,
            Ok(Some((failures, score))) => {
                total.add(&score);
                if failures.is_empty() {
                    passed += 1;
                    writeln!(output, "PASS {}", path.display())?;
                } else {
                    failed += 1;
                    writeln!(output, "FAIL {}", path.display())?;
                    for failure in failures {
                        writeln!(output, "    {failure}")?;
                    }
                }
            }
            Err(e) => {
                failed += 1;
                writeln!(output, "FAIL {}", path.display())?;
                writeln!(output, "    {e:#}")?;
            }
        }
    }
    write!(output, "{passed} passed, {failed} failed")?;
    if skipped > 0 {
        write!(output, ", {skipped} skipped (need an LLM: --llm)")?;
    }
    writeln!(output)?;
    if options.report || options.targets {
        let pct = |v: f64| format!("{:.1} %", v * 100.0);
        writeln!(
            output,
            "field exact match: {} ({}/{})",
            pct(total.exact_match_rate()),
            total.fields_exact,
            total.fields_expected
        )?;
        writeln!(
            output,
            "wrong values: {} ({}/{} stored)",
            pct(total.wrong_value_rate()),
            total.values_wrong,
            total.values_stored
        )?;
        writeln!(
            output,
            "outcome accuracy: {} ({}/{})",
            pct(total.outcome_accuracy()),
            total.outcomes_right,
            total.outcomes_expected
        )?;
        writeln!(
            output,
            "document answers with an unsupported fact: {} ({}/{})",
            pct(total.unsupported_share()),
            total.unsupported_answers,
            total.document_answers
        )?;
    }
    if options.targets {
        let met = total.exact_match_rate() >= MIN_EXACT_MATCH
            && total.wrong_value_rate() <= MAX_WRONG_VALUES
            && total.unsupported_share() <= MAX_UNSUPPORTED;
        writeln!(
            output,
            "targets (exact >= 95 %, wrong <= 1 %, unsupported 0): {}",
            if met { "met" } else { "MISSED" }
        )?;
        return Ok(usize::from(!met));
    }
    Ok(failed)
}

fn collect_scripts(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
        let entry = entry?.path();
        if entry.is_dir() {
            // Bot documents live beside the scripts' bots, not among the scripts.
            if entry.file_name().and_then(|n| n.to_str()) != Some("docs") {
                collect_scripts(&entry, out)?;
            }
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(entry);
        }
    }
    Ok(())
}

/// The script's failures and score; `None` when it needs a language model and there is none.
async fn run_one(
    path: &Path,
    llm: Option<Arc<dyn Llm>>,
) -> anyhow::Result<Option<(Vec<String>, ScriptScore)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut script = CallScript::parse(&text)?;
    if script.requires_llm && llm.is_none() {
        return Ok(None);
    }
    let bot_path = script
        .bot_path(path)
        .context("the script names no bot (add `bot: path/to/bot.yaml`)")?;
    let bot_text = std::fs::read_to_string(&bot_path)
        .with_context(|| format!("reading bot {}", bot_path.display()))?;
    let config =
        BotConfig::parse_any(&bot_text).with_context(|| format!("bot {}", bot_path.display()))?;
    if script.knowledge.is_empty() {
        script.knowledge = bot_documents(&bot_path)?;
    }
    let report = run_script_with(&config, &script, llm).await;
    Ok(Some((report.failures, report.score)))
}

/// The bot's documents, `<bot dir>/docs/<bot file stem>/*.md|txt`, when that folder exists.
fn bot_documents(bot_path: &Path) -> anyhow::Result<Vec<ScriptDocument>> {
    let (Some(dir), Some(stem)) = (bot_path.parent(), bot_path.file_stem()) else {
        return Ok(Vec::new());
    };
    let docs = dir.join("docs").join(stem);
    if !docs.is_dir() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&docs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("md" | "txt")))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let source = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("document")
                .to_string();
            Ok(ScriptDocument { source, text })
        })
        .collect()
}
