//! The understanding evaluation (issue #18) without a language model: every conversation under
//! `bots/eval/<bot>/` not marked `requires_llm` is played against its bot, and the figures must
//! meet the targets — field exact match >= 95 %, wrong values <= 1 %, no document answer with a
//! fact the documents lack. `callfleet test-calls bots/eval --report` prints the same figures;
//! the rows that need a model run in `cli/tests/evaluation_llm.rs` over a fake Ollama.

use callfleet_core::scenario::script::ScriptDocument;
use callfleet_core::scenario::{run_script, CallScript, ScriptScore};
use callfleet_core::BotConfig;
use std::fs;
use std::path::{Path, PathBuf};

fn documents(bot_path: &Path) -> Vec<ScriptDocument> {
    let (Some(dir), Some(stem)) = (bot_path.parent(), bot_path.file_stem()) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = fs::read_dir(dir.join("docs").join(stem))
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.sort();
    paths
        .into_iter()
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("md" | "txt")))
        .map(|p| ScriptDocument {
            source: p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("document")
                .to_string(),
            text: fs::read_to_string(&p).expect("document is readable"),
        })
        .collect()
}

#[test]
fn the_evaluation_without_a_model_meets_the_targets() {
    let eval = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bots/eval");
    let mut scripts: Vec<PathBuf> = Vec::new();
    for bot_dir in fs::read_dir(&eval).expect("bots/eval exists") {
        let bot_dir = bot_dir.expect("readable").path();
        for entry in fs::read_dir(&bot_dir).expect("readable") {
            let path = entry.expect("readable").path();
            if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
                scripts.push(path);
            }
        }
    }
    scripts.sort();
    let (mut played, mut with_model, mut languages) = (0, 0, std::collections::BTreeSet::new());
    let mut total = ScriptScore::default();
    let mut failures = String::new();
    for path in &scripts {
        let mut script = CallScript::parse(&fs::read_to_string(path).expect("readable"))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if script.requires_llm {
            with_model += 1;
            continue;
        }
        let bot_path = script.bot_path(path).expect("script has a bot");
        let config = BotConfig::parse_any(&fs::read_to_string(&bot_path).expect("bot readable"))
            .unwrap_or_else(|e| panic!("{}: {e}", bot_path.display()));
        languages.insert(config.language.clone());
        script.knowledge = documents(&bot_path);
        let report = run_script(&config, &script);
        total.add(&report.score);
        played += 1;
        if !report.passed {
            failures.push_str(&format!("{}:\n", path.display()));
            for f in &report.failures {
                failures.push_str(&format!("  - {f}\n"));
            }
        }
    }
    println!(
        "{played} conversations ({with_model} more need a model): exact match {:.1} % ({}/{}), wrong values {:.1} % ({}/{}), outcome accuracy {:.1} % ({}/{}), unsupported answers {}/{}",
        total.exact_match_rate() * 100.0,
        total.fields_exact,
        total.fields_expected,
        total.wrong_value_rate() * 100.0,
        total.values_wrong,
        total.values_stored,
        total.outcome_accuracy() * 100.0,
        total.outcomes_right,
        total.outcomes_expected,
        total.unsupported_answers,
        total.document_answers,
    );
    print!("{failures}");
    assert!(
        played + with_model >= 60,
        "the set holds {} conversations",
        played + with_model
    );
    assert_eq!(
        languages.len(),
        2,
        "Russian and English bots: {languages:?}"
    );
    assert!(
        total.exact_match_rate() >= 0.95,
        "exact match below 95 %\n{failures}"
    );
    assert!(
        total.wrong_value_rate() <= 0.01,
        "wrong values above 1 %\n{failures}"
    );
    assert_eq!(
        total.unsupported_answers, 0,
        "unsupported facts\n{failures}"
    );
    assert!(total.document_answers > 0, "the set asks the documents");
}
