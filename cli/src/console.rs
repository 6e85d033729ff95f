//! `callfleet console --bot FILE`: talk to a bot in a terminal, without LiveKit or any provider.
//! One caller utterance per stdin line; the greeting and every reply are printed as
//! `bot: <text>`; at end of input (or when the bot hangs up) the call ends, and with `--json`
//! the call result is printed as one JSON object on the last line.

use anyhow::Context;
use callfleet_core::scenario::{block_on, CallContext, InMemoryKnowledge, ScenarioEngine};
use callfleet_core::BotConfig;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the console needs beyond the bot file.
#[derive(Debug, Clone, Default)]
pub struct ConsoleOptions {
    /// Print the call result as JSON on the last line.
    pub json: bool,
    /// Documents the bot answers questions from; default `<bot dir>/docs/<bot file stem>/`.
    pub docs: Option<PathBuf>,
    /// The call's start, RFC 3339 (`2025-03-12T10:00:00+03:00`); default now. Makes "tomorrow"
    /// reproducible in tests.
    pub now: Option<String>,
}

/// Runs a text conversation on stdin/stdout.
pub fn run(bot: &Path, options: &ConsoleOptions) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    run_with(bot, options, stdin.lock(), stdout.lock())
}

/// [`run`] over any input and output, for tests.
pub fn run_with(
    bot: &Path,
    options: &ConsoleOptions,
    input: impl BufRead,
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
    let mut engine = ScenarioEngine::new(Arc::new(config), context);
    let docs_dir = options.docs.clone().or_else(|| default_docs_dir(bot));
    if let Some(dir) = docs_dir {
        let knowledge = load_documents(&dir)?;
        engine = engine.with_knowledge(Arc::new(knowledge));
    }

    let greeting = engine.start_call();
    writeln!(output, "bot: {}", greeting.reply)?;
    output.flush()?;
    for line in input.lines() {
        let line = line.context("reading stdin")?;
        // The engine is pure and its knowledge in memory, so nothing here waits on I/O.
        let reply = block_on(engine.process_turn(&line));
        writeln!(output, "bot: {}", reply.reply)?;
        output.flush()?;
        if reply.ends_call() {
            break;
        }
    }
    let result = engine.end_call();
    if options.json {
        let transcript: Vec<serde_json::Value> = result
            .transcript
            .iter()
            .map(|t| serde_json::json!({"speaker": t.speaker, "text": t.text}))
            .collect();
        let summary = serde_json::json!({
            "outcome": result.outcome.kind,
            "evidence": result.outcome.evidence,
            "fields": result.fields,
            "language": result.language,
            "turns": result.turns,
            "transcript": transcript,
        });
        writeln!(output, "{}", serde_json::to_string(&summary)?)?;
    }
    Ok(())
}

fn default_docs_dir(bot: &Path) -> Option<PathBuf> {
    let dir = bot.parent()?.join("docs").join(bot.file_stem()?);
    dir.is_dir().then_some(dir)
}

/// Every `.md` and `.txt` file of a directory, named by its file name.
pub fn load_documents(dir: &Path) -> anyhow::Result<InMemoryKnowledge> {
    let mut knowledge = InMemoryKnowledge::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading documents in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("md" | "txt")))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let source = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("document");
        knowledge.add_document(source, &text);
    }
    Ok(knowledge)
}
