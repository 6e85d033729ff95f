//! `callfleet test-calls DIR`: runs every scripted call (`*.yaml`) under a directory against
//! its bot, prints one line per script and `N passed, N failed`, and fails when any failed.
//! The script format is documented in `callfleet_core::scenario::script`.

use anyhow::Context;
use callfleet_core::scenario::script::ScriptDocument;
use callfleet_core::scenario::{run_script, CallScript};
use callfleet_core::BotConfig;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Runs the scripts under `dir` (or the one script `dir` names) and reports on stdout.
pub fn run(dir: &Path) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let failed = run_with(dir, stdout.lock())?;
    if failed > 0 {
        anyhow::bail!("{failed} scripted call(s) failed");
    }
    Ok(())
}

/// [`run`] writing to any output; returns how many scripts failed.
pub fn run_with(dir: &Path, mut output: impl Write) -> anyhow::Result<usize> {
    let mut scripts = Vec::new();
    collect_scripts(dir, &mut scripts)?;
    scripts.sort();
    if scripts.is_empty() {
        anyhow::bail!("no scripted calls (*.yaml) under {}", dir.display());
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in &scripts {
        match run_one(path) {
            Ok(failures) if failures.is_empty() => {
                passed += 1;
                writeln!(output, "PASS {}", path.display())?;
            }
            Ok(failures) => {
                failed += 1;
                writeln!(output, "FAIL {}", path.display())?;
                for failure in failures {
                    writeln!(output, "    {failure}")?;
                }
            }
            Err(e) => {
                failed += 1;
                writeln!(output, "FAIL {}", path.display())?;
                writeln!(output, "    {e:#}")?;
            }
        }
    }
    writeln!(output, "{passed} passed, {failed} failed")?;
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

fn run_one(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut script = CallScript::parse(&text)?;
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
    let report = run_script(&config, &script);
    Ok(report.failures)
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
