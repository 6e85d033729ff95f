//! Step 3: what a config means — names that are identifiers and unique, references that
//! resolve, a known timezone and known providers.

use std::collections::HashSet;

use super::{BotConfig, ConfigIssue, FieldKind, OutcomeCondition, ProviderChoice};
use super::{LLM_PROVIDERS, STT_PROVIDERS, TTS_PROVIDERS};

#[derive(Default)]
pub(super) struct Issues(pub(super) Vec<ConfigIssue>);

impl Issues {
    pub(super) fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.to_string(),
            message: message.into(),
        });
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_language_code(s: &str) -> bool {
    let (lang, region) = match s.split_once('-') {
        Some((l, r)) => (l, Some(r)),
        None => (s, None),
    };
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_lowercase())
        && region.is_none_or(|r| r.len() == 2 && r.chars().all(|c| c.is_ascii_uppercase()))
}

fn is_outcome_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn check_provider(choice: &ProviderChoice, known: &[&str], path: &str, issues: &mut Issues) {
    if !known.contains(&choice.provider.as_str()) {
        issues.push(
            &join(path, "provider"),
            format!("unknown provider (known: {})", known.join(", ")),
        );
    }
    if let Some(t) = choice.temperature {
        if !(0.0..=2.0).contains(&t) {
            issues.push(&join(path, "temperature"), "must be from 0 to 2");
        }
    }
    for (i, fb) in choice.fallback.iter().enumerate() {
        check_provider(fb, known, &format!("{path}.fallback[{i}]"), issues);
    }
}

impl BotConfig {
    pub(super) fn check_meaning(&self, issues: &mut Issues) {
        if let Some(id) = &self.bot_id {
            if !is_identifier(id) {
                issues.push(
                    "bot_id",
                    "must be lowercase letters, digits, '-' or '_', starting with a letter",
                );
            }
        }
        if !is_language_code(&self.language) {
            issues.push(
                "language",
                "must be a language code such as \"ru\", \"en\" or \"en-US\"",
            );
        }
        for (i, lang) in self.languages.iter().enumerate() {
            if !is_language_code(lang) {
                issues.push(
                    &format!("languages[{i}]"),
                    "must be a language code such as \"ru\" or \"en\"",
                );
            }
        }
        if let Some(tz) = &self.timezone {
            if tz.parse::<chrono_tz::Tz>().is_err() {
                issues.push(
                    "timezone",
                    "unknown timezone (use an IANA name such as \"Europe/Moscow\")",
                );
            }
        }

        let mut scenario_names = HashSet::new();
        let mut all_fields = HashSet::new();
        let mut events = HashSet::new();
        for (si, scenario) in self.scenarios.iter().enumerate() {
            let sp = format!("scenarios[{si}]");
            if !is_identifier(&scenario.name) {
                issues.push(
                    &join(&sp, "name"),
                    "must be lowercase letters, digits, '-' or '_', starting with a letter",
                );
            }
            if !scenario_names.insert(scenario.name.as_str()) {
                issues.push(
                    &join(&sp, "name"),
                    format!("duplicate scenario name {:?}", scenario.name),
                );
            }
            if scenario.trigger_keywords.is_empty() && self.providers.llm.is_none() {
                issues.push(
                    &join(&sp, "trigger_keywords"),
                    "required when no LLM is configured (nothing else could select this scenario)",
                );
            }
            if scenario.transfer && self.transfer_to.is_none() {
                issues.push(
                    &join(&sp, "transfer"),
                    "needs the bot's transfer_to (the number the caller is put through to)",
                );
            }
            if let Some(event) = &scenario.on_complete {
                events.insert(event.as_str());
                if scenario.collect_fields.is_empty() {
                    issues.push(
                        &join(&sp, "on_complete"),
                        "needs collect_fields (it fires when they are all collected)",
                    );
                }
            }
            let mut field_names = HashSet::new();
            for (fi, field) in scenario.collect_fields.iter().enumerate() {
                let fp = format!("{sp}.collect_fields[{fi}]");
                if !is_identifier(&field.name) {
                    issues.push(
                        &join(&fp, "name"),
                        "must be lowercase letters, digits, '-' or '_', starting with a letter",
                    );
                }
                if !field_names.insert(field.name.as_str()) {
                    issues.push(
                        &join(&fp, "name"),
                        format!("duplicate field name {:?} in this scenario", field.name),
                    );
                }
                all_fields.insert(field.name.as_str());
                let kind = field.kind();
                if kind == FieldKind::Enum && field.options.is_empty() {
                    issues.push(&join(&fp, "options"), "required for an enum field");
                }
                if kind != FieldKind::Enum && !field.options.is_empty() {
                    issues.push(&join(&fp, "options"), "only an enum field takes options");
                }
                if (field.min.is_some() || field.max.is_some()) && kind != FieldKind::Number {
                    issues.push(&fp, "min and max apply to number fields only");
                }
                if let (Some(min), Some(max)) = (field.min, field.max) {
                    if min > max {
                        issues.push(&join(&fp, "min"), "must not be greater than max");
                    }
                }
            }
        }

        if let Some(stt) = &self.providers.stt {
            check_provider(stt, STT_PROVIDERS, "providers.stt", issues);
        }
        if let Some(llm) = &self.providers.llm {
            check_provider(llm, LLM_PROVIDERS, "providers.llm", issues);
        }
        if let Some(tts) = &self.providers.tts {
            check_provider(tts, TTS_PROVIDERS, "providers.tts", issues);
        }

        for (ri, rule) in self.outcome_rules.iter().enumerate() {
            let rp = format!("outcome_rules[{ri}]");
            if !is_outcome_name(&rule.outcome) {
                issues.push(
                    &join(&rp, "outcome"),
                    "must be UPPER_SNAKE_CASE, e.g. BOOKING or LEAD",
                );
            }
            let when = &rule.when;
            if *when == OutcomeCondition::default() {
                issues.push(&join(&rp, "when"), "needs at least one condition");
            }
            for (key, name) in [
                ("scenario_completed", &when.scenario_completed),
                ("scenario_entered", &when.scenario_entered),
            ] {
                if let Some(name) = name {
                    if !scenario_names.contains(name.as_str()) {
                        issues.push(
                            &format!("{rp}.when.{key}"),
                            format!("no scenario named {name:?}"),
                        );
                    }
                }
            }
            if let Some(event) = &when.event {
                if !events.contains(event.as_str()) {
                    issues.push(
                        &format!("{rp}.when.event"),
                        format!("no scenario raises {event:?} (on_complete)"),
                    );
                }
            }
            for (fi, field) in when.fields_collected.iter().enumerate() {
                if !all_fields.contains(field.as_str()) {
                    issues.push(
                        &format!("{rp}.when.fields_collected[{fi}]"),
                        format!("no scenario collects {field:?}"),
                    );
                }
            }
        }
        if let Some(outcome) = &self.default_outcome {
            if !is_outcome_name(outcome) {
                issues.push(
                    "default_outcome",
                    "must be UPPER_SNAKE_CASE, e.g. INFO_ONLY",
                );
            }
        }
    }
}
