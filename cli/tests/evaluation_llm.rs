//! The understanding evaluation (issue #18) with a language model: `callfleet test-calls
//! bots/eval --targets --llm …` plays every conversation, the rows marked `requires_llm` too,
//! against a fake Ollama and a fake OpenAI speaking their real wire protocols. The model's
//! replies are the ones each script turn states (`llm: {route, extract, answer}`), among them
//! invented values and invented opening hours, so the run shows that those are never stored or
//! said; a request no turn scripts gets `none` (routing) or `{}` (extraction).

use callfleet_core::scenario::script::LLM_REQUEST_MARKERS;
use callfleet_core::scenario::CallScript;
use callfleet_testkit::{FakeOllama, FakeOpenAi, LlmReply};
use std::path::{Path, PathBuf};
use std::process::Command;

fn eval_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots/eval")
}

/// Every scripted model reply of the set, as (needles, reply): the request kind's marker and
/// the caller's words of that turn.
fn scripted_replies() -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let mut bots: Vec<PathBuf> = std::fs::read_dir(eval_dir())
        .expect("bots/eval exists")
        .map(|e| e.expect("readable").path())
        .collect();
    bots.sort();
    for bot in bots {
        let mut scripts: Vec<PathBuf> = std::fs::read_dir(&bot)
            .expect("readable")
            .map(|e| e.expect("readable").path())
            .collect();
        scripts.sort();
        for path in scripts {
            let script = CallScript::parse(&std::fs::read_to_string(&path).expect("readable"))
                .expect("valid script");
            for turn in &script.turns {
                for (kind, reply) in &turn.llm {
                    let (_, marker) = LLM_REQUEST_MARKERS
                        .iter()
                        .find(|(k, _)| k == kind)
                        .unwrap_or_else(|| panic!("{}: unknown llm kind {kind}", path.display()));
                    out.push((vec![marker.to_string(), turn.user.clone()], reply.clone()));
                }
            }
        }
    }
    out
}

macro_rules! script_the_model {
    ($fake:expr) => {{
        let replies = scripted_replies();
        assert!(replies.len() >= 10, "the set scripts the model");
        for (needles, reply) in &replies {
            let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
            $fake.reply_when(&needles, LlmReply::text(reply));
        }
        $fake.reply_when(&[LLM_REQUEST_MARKERS[0].1], LlmReply::text("none"));
        $fake.reply_when(&[LLM_REQUEST_MARKERS[1].1], LlmReply::text("{}"));
    }};
}

/// Runs the evaluation with `--targets` against a model server; returns its output.
async fn evaluate(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_callfleet"));
    command
        .arg("test-calls")
        .arg(eval_dir())
        .arg("--targets")
        .args(args)
        .env_remove("OPENAI_API_KEY");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the runner thread")
        .expect("callfleet runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{text}");
    assert!(output.status.success(), "targets missed:\n{text}");
    text
}

#[track_caller]
fn check_figures(text: &str) {
    assert!(text.contains("67 passed, 0 failed"), "{text}");
    assert!(
        text.contains("targets (exact >= 95 %, wrong <= 1 %, unsupported 0): met"),
        "{text}"
    );
    assert!(
        text.contains("document answers with an unsupported fact: 0.0 %"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evaluation_with_ollama_meets_the_targets() {
    let fake = FakeOllama::start().await;
    script_the_model!(fake);
    let url = fake.url();
    let text = evaluate(
        &["--llm", "ollama", "--llm-url", &url, "--llm-model", "eval"],
        &[],
    )
    .await;
    check_figures(&text);
    // The model was asked to extract with a JSON schema of the open fields.
    let asked = fake.requests();
    assert!(asked.iter().any(|r| {
        let system = r["messages"][0]["content"].as_str().unwrap_or("");
        system.contains("You extract form fields") && system.contains("\"properties\"")
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evaluation_with_openai_meets_the_targets() {
    let fake = FakeOpenAi::start().await;
    script_the_model!(fake);
    let url = fake.url();
    let text = evaluate(
        &["--llm", "openai", "--llm-url", &url, "--llm-model", "eval"],
        &[("OPENAI_API_KEY", callfleet_testkit::TEST_KEY)],
    )
    .await;
    check_figures(&text);
}
