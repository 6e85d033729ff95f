//! `callfleet check-config FILE`: the same validation the admin API applies, offline.

use anyhow::Context;
use callfleet_core::config::{BotConfig, ConfigFormat};
use std::path::Path;

pub(crate) fn run(file: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let is_json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let parsed = if is_json {
        BotConfig::parse(&text, ConfigFormat::Json)
    } else {
        BotConfig::parse_any(&text)
    };
    match parsed {
        Ok(config) => {
            let fields: usize = config
                .scenarios
                .iter()
                .map(|s| s.collect_fields.len())
                .sum();
            println!(
                "{}: ok ({} scenarios, {fields} fields)",
                file.display(),
                config.scenarios.len()
            );
            Ok(())
        }
        Err(err) => {
            for issue in &err.issues {
                println!("{}: {issue}", file.display());
            }
            anyhow::bail!("{} problem(s) in {}", err.issues.len(), file.display())
        }
    }
}
