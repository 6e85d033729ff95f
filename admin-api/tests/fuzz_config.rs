//! Property test over the bot-config parser the API runs on every `PUT /bots/{id}/config`:
//! thousands of damaged variants of the shipped bots (YAML and JSON; bits flipped, ranges cut,
//! repeated into nesting and alias bombs, spliced) each get a config or a list of problems — no
//! panic, no hang — and whatever is accepted survives a round trip through its JSON form
//! unchanged. Seeded, so a failure names the input that reproduces it.

use callfleet_core::config::{BotConfig, ConfigFormat};
use callfleet_testkit::fuzz::Mutator;
use std::time::Duration;

fn seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots");
    let mut seeds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let config = BotConfig::parse_any(&text).expect("a shipped bot is valid");
            seeds.push(text.into_bytes());
            seeds.push(serde_json::to_vec_pretty(&config).unwrap());
        }
    }
    assert!(seeds.len() >= 6, "the shipped bots are the seeds");
    seeds
}

#[test]
fn damaged_configs_get_an_answer_and_accepted_ones_round_trip() {
    let iterations: usize = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3_000);
    let seeds = seeds();
    let mut mutator = Mutator::new(0x5EED);
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..iterations {
        let bytes = mutator.mutant(&seeds, 256 << 10);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        let input = text.clone();
        std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(|| {
                let as_yaml = BotConfig::parse(&input, ConfigFormat::Yaml);
                let as_json = BotConfig::parse(&input, ConfigFormat::Json);
                (as_yaml, as_json)
            });
            let _ = tx.send(outcome);
        });
        let (as_yaml, as_json) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(both)) => both,
            Ok(Err(_)) => panic!("#{i}: the parser panicked on {text:?}"),
            Err(_) => panic!("#{i}: the parser did not answer within a minute"),
        };
        for parsed in [as_yaml, as_json] {
            match parsed {
                Ok(config) => {
                    accepted += 1;
                    let json = serde_json::to_string(&config).unwrap();
                    let again = BotConfig::parse(&json, ConfigFormat::Json)
                        .unwrap_or_else(|e| panic!("#{i}: accepted, but its JSON is not: {e}"));
                    assert_eq!(again, config, "#{i}: the round trip changed the config");
                }
                Err(e) => {
                    refused += 1;
                    assert!(!e.issues.is_empty(), "#{i}: a refusal says why");
                }
            }
        }
    }
    println!("configs accepted {accepted}, refused {refused}");
    assert!(
        accepted > 0 && refused > 0,
        "the mutants reach both outcomes"
    );
}
