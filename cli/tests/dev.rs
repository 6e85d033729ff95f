//! The README's run command: `callfleet dev` on a fresh data dir serves the API with SQLite.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn dev_starts_the_api_on_a_fresh_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_callfleet"))
        .args(["dev", "--http-addr", "127.0.0.1:0"])
        .env("CALLFLEET_DATA", &data)
        .env_remove("CALLFLEET_ADMIN_KEY")
        .env_remove("DATABASE_URL")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run callfleet dev");
    let stdout = child.stdout.take().unwrap();
    let url = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read stdout");
            if let Some(rest) = line.strip_prefix("admin API: ") {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
        panic!("callfleet dev exited without printing its address");
    })
    .await
    .unwrap();

    let admin_key =
        std::fs::read_to_string(data.join("admin.key")).expect("dev writes an admin key");
    let client = reqwest::Client::new();
    let health: serde_json::Value = client
        .get(format!("{url}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health,
        serde_json::json!({"status": "ok", "database": "sqlite"})
    );
    let created = client
        .post(format!("{url}/companies"))
        .bearer_auth(admin_key.trim())
        .json(&serde_json::json!({"name": "Salon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert!(
        data.join("callfleet.db").exists(),
        "the embedded database is created on first run"
    );
    let wrong = client
        .get(format!("{url}/companies"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    child.kill().ok();
    child.wait().ok();
}

#[test]
fn check_config_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bot.yaml");
    std::fs::write(&file, "language: ru\nscenarios:\n  - name: Booking\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callfleet"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("greeting: required"), "{stdout}");
    assert!(stdout.contains("fallback: required"), "{stdout}");
}
