//! The config's parse → shape → meaning steps, table-tested.

use super::*;

pub(crate) const SALON: &str = r#"
bot_id: "salon-bot-1"
language: "ru"
voice_id: "russian-female-1"
greeting: "Здравствуйте! Салон красоты Элегант. Чем могу помочь?"
scenarios:
  - name: "booking"
    trigger_keywords: ["записаться", "запись", "свободно"]
    collect_fields:
      - {name: "service", prompt: "На какую услугу хотите записаться?"}
      - {name: "date", prompt: "На какой день?"}
      - {name: "time", prompt: "В какое время?"}
      - {name: "phone", prompt: "Оставьте номер для подтверждения"}
    on_complete: "booking_created"
  - name: "support"
    trigger_keywords: ["вопрос", "узнать", "сколько стоит"]
    use_knowledge_base: true
fallback: "Извините, не совсем поняла. Вы хотите записаться или у вас вопрос?"
max_turns: 20
silence_timeout_sec: 10
"#;

fn issues_of(text: &str) -> Vec<String> {
    match BotConfig::parse_any(text) {
        Ok(_) => vec![],
        Err(e) => e.issues.iter().map(|i| i.to_string()).collect(),
    }
}

#[test]
fn the_seed_config_parses_with_inferred_field_types() {
    let config = BotConfig::parse(SALON, ConfigFormat::Yaml).expect("seed config is valid");
    assert_eq!(config.language, "ru");
    assert_eq!(config.scenarios.len(), 2);
    let kinds: Vec<FieldKind> = config.scenarios[0]
        .collect_fields
        .iter()
        .map(|f| f.kind())
        .collect();
    assert_eq!(
        kinds,
        [
            FieldKind::Text,
            FieldKind::Date,
            FieldKind::Time,
            FieldKind::Phone
        ]
    );
    assert!(config.scenarios[1].use_knowledge_base);
    assert_eq!(config.max_turns, 20);
}

#[test]
fn json_and_yaml_give_the_same_config() {
    let from_yaml = BotConfig::parse(SALON, ConfigFormat::Yaml).unwrap();
    let json = serde_json::to_string(&from_yaml.to_json()).unwrap();
    let from_json = BotConfig::parse(&json, ConfigFormat::Json).unwrap();
    assert_eq!(from_yaml, from_json);
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let text = r#"
language: "ru"
greeting: ""
scenarios:
  - name: "booking"
    trigger_keywords: ["записаться"]
    collect_fields:
      - {prompt: "На какую услугу?"}
      - {name: "when", prompt: "Когда?", type: "datetime"}
  - trigger_keywords: "вопрос"
max_turns: 0
colour: "blue"
"#;
    assert_eq!(
            issues_of(text),
            [
                "greeting: must not be empty",
                "scenarios[0].collect_fields[0].name: required",
                "scenarios[0].collect_fields[1].type: must be one of: text, phone, date, time, email, number, enum",
                "scenarios[1].name: required",
                "scenarios[1].trigger_keywords: must be a list, not a string",
                "fallback: required",
                "max_turns: must be a whole number from 1 to 500",
                "colour: unknown key (allowed: bot_id, name, language, languages, voice_id, timezone, greeting, system_prompt, scenarios, fallback, max_turns, silence_timeout_sec, transfer_to, providers, outcome_rules, default_outcome, knowledge, recording)",
            ]
        );
}

#[test]
fn meaning_is_checked_after_shape() {
    let text = r#"
language: "russian"
timezone: "Mars/Olympus"
greeting: "hi"
fallback: "sorry"
scenarios:
  - name: "booking"
    trigger_keywords: ["book"]
    collect_fields:
      - {name: "service", prompt: "Which?", type: enum}
      - {name: "service", prompt: "Again?"}
  - name: "booking"
    trigger_keywords: ["book"]
providers:
  llm: {provider: "gpt-magic"}
outcome_rules:
  - outcome: "booking"
    when: {scenario_completed: "sales", fields_collected: ["email"]}
"#;
    assert_eq!(
            issues_of(text),
            [
                "language: must be a language code such as \"ru\", \"en\" or \"en-US\"",
                "timezone: unknown timezone (use an IANA name such as \"Europe/Moscow\")",
                "scenarios[0].collect_fields[0].options: required for an enum field",
                "scenarios[0].collect_fields[1].name: duplicate field name \"service\" in this scenario",
                "scenarios[1].name: duplicate scenario name \"booking\"",
                "providers.llm.provider: unknown provider (known: ollama, openai, local-llm)",
                "outcome_rules[0].outcome: must be UPPER_SNAKE_CASE, e.g. BOOKING or LEAD",
                "outcome_rules[0].when.scenario_completed: no scenario named \"sales\"",
                "outcome_rules[0].when.fields_collected[0]: no scenario collects \"email\"",
            ]
        );
}

#[test]
fn syntax_errors_are_one_clear_issue() {
    let issues = issues_of("language: [ru\n");
    assert_eq!(issues.len(), 1);
    assert!(issues[0].starts_with("not valid YAML"), "{issues:?}");
    let issues = issues_of("{\"language\": ");
    assert!(issues[0].starts_with("not valid JSON"), "{issues:?}");
    assert_eq!(issues_of("- a\n- b\n"), ["must be an object, not a list"]);
}

#[test]
fn field_types_are_inferred_from_names() {
    for (name, kind) in [
        ("phone", FieldKind::Phone),
        ("contact_phone", FieldKind::Phone),
        ("email", FieldKind::Email),
        ("visit_date", FieldKind::Date),
        ("time", FieldKind::Time),
        ("service", FieldKind::Text),
        ("timeline", FieldKind::Text),
    ] {
        assert_eq!(FieldKind::infer_from_name(name), kind, "{name}");
    }
}

#[test]
fn media_types_pick_the_format() {
    assert_eq!(
        ConfigFormat::from_media_type("application/json; charset=utf-8"),
        Some(ConfigFormat::Json)
    );
    assert_eq!(
        ConfigFormat::from_media_type("application/yaml"),
        Some(ConfigFormat::Yaml)
    );
    assert_eq!(
        ConfigFormat::from_media_type("text/x-yaml"),
        Some(ConfigFormat::Yaml)
    );
    assert_eq!(ConfigFormat::from_media_type("text/plain"), None);
}

/// The README's example config (under "Bot configuration") is a valid config, so the documented
/// keys stay the parsed ones.
#[test]
fn the_readme_example_config_is_valid() {
    // Read at run time: an include would rebuild every crate on each README edit.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let section = &readme[readme
        .find("## Bot configuration")
        .expect("the README documents the config")..];
    let start = section.find("```yaml\n").expect("a YAML example") + "```yaml\n".len();
    let end = start + section[start..].find("```").expect("the example ends");
    let config = BotConfig::parse(&section[start..end], ConfigFormat::Yaml)
        .unwrap_or_else(|e| panic!("the README's example: {e}"));
    assert!(config.scenarios.iter().any(|s| s.transfer));
}
