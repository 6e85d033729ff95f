//! Step 2: the shape table — every allowed key, its type and whether it is required — and the
//! check of a JSON value against it, which reports every problem with its path.

use serde_json::Value;

use super::checks::{join, Issues};
use super::FieldKind;

/// The type a key's value must have.
#[derive(Debug)]
pub enum Shape {
    Str,
    NonEmptyStr,
    Bool,
    UInt { min: u64, max: u64 },
    Num,
    List(&'static Shape),
    Obj(&'static [Key]),
    OneOf(&'static [&'static str]),
}

/// An allowed key of an object.
#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    pub required: bool,
    pub shape: Shape,
}

const fn req(name: &'static str, shape: Shape) -> Key {
    Key {
        name,
        required: true,
        shape,
    }
}

const fn opt(name: &'static str, shape: Shape) -> Key {
    Key {
        name,
        required: false,
        shape,
    }
}

const PROVIDER_KEYS: &[Key] = &[
    req("provider", Shape::NonEmptyStr),
    opt("model", Shape::Str),
    opt("voice", Shape::Str),
    opt("language", Shape::Str),
    opt("temperature", Shape::Num),
    opt(
        "max_tokens",
        Shape::UInt {
            min: 1,
            max: 32_768,
        },
    ),
    opt("fallback", Shape::List(&Shape::Obj(PROVIDER_FALLBACK_KEYS))),
];

const PROVIDER_FALLBACK_KEYS: &[Key] = &[
    req("provider", Shape::NonEmptyStr),
    opt("model", Shape::Str),
    opt("voice", Shape::Str),
    opt("language", Shape::Str),
    opt("temperature", Shape::Num),
    opt(
        "max_tokens",
        Shape::UInt {
            min: 1,
            max: 32_768,
        },
    ),
];

const FIELD_KEYS: &[Key] = &[
    req("name", Shape::NonEmptyStr),
    req("prompt", Shape::NonEmptyStr),
    opt("type", Shape::OneOf(FieldKind::NAMES)),
    opt("required", Shape::Bool),
    opt("options", Shape::List(&Shape::NonEmptyStr)),
    opt("min", Shape::Num),
    opt("max", Shape::Num),
    opt("retry_prompt", Shape::NonEmptyStr),
];

const SCENARIO_KEYS: &[Key] = &[
    req("name", Shape::NonEmptyStr),
    opt("description", Shape::Str),
    opt("trigger_keywords", Shape::List(&Shape::NonEmptyStr)),
    opt("collect_fields", Shape::List(&Shape::Obj(FIELD_KEYS))),
    opt("on_complete", Shape::NonEmptyStr),
    opt("use_knowledge_base", Shape::Bool),
    opt("confirm", Shape::Bool),
    opt("completion_message", Shape::NonEmptyStr),
    opt("transfer", Shape::Bool),
];

const CONDITION_KEYS: &[Key] = &[
    opt("scenario_completed", Shape::NonEmptyStr),
    opt("scenario_entered", Shape::NonEmptyStr),
    opt("event", Shape::NonEmptyStr),
    opt("fields_collected", Shape::List(&Shape::NonEmptyStr)),
    opt("transferred", Shape::Bool),
    opt("no_user_speech", Shape::Bool),
    opt("callback_requested", Shape::Bool),
    opt("min_user_turns", Shape::UInt { min: 0, max: 1000 }),
];

const RULE_KEYS: &[Key] = &[
    req("outcome", Shape::NonEmptyStr),
    req("when", Shape::Obj(CONDITION_KEYS)),
];

/// The whole config's allowed keys. Public so the admin UI and docs can show it.
pub const SCHEMA: &[Key] = &[
    opt("bot_id", Shape::NonEmptyStr),
    opt("name", Shape::Str),
    req("language", Shape::NonEmptyStr),
    opt("languages", Shape::List(&Shape::NonEmptyStr)),
    opt("voice_id", Shape::Str),
    opt("timezone", Shape::NonEmptyStr),
    req("greeting", Shape::NonEmptyStr),
    opt("system_prompt", Shape::Str),
    opt("scenarios", Shape::List(&Shape::Obj(SCENARIO_KEYS))),
    req("fallback", Shape::NonEmptyStr),
    opt("max_turns", Shape::UInt { min: 1, max: 500 }),
    opt("silence_timeout_sec", Shape::UInt { min: 1, max: 600 }),
    opt("transfer_to", Shape::NonEmptyStr),
    opt(
        "providers",
        Shape::Obj(&[
            opt("stt", Shape::Obj(PROVIDER_KEYS)),
            opt("llm", Shape::Obj(PROVIDER_KEYS)),
            opt("tts", Shape::Obj(PROVIDER_KEYS)),
        ]),
    ),
    opt("outcome_rules", Shape::List(&Shape::Obj(RULE_KEYS))),
    opt("default_outcome", Shape::NonEmptyStr),
    opt(
        "knowledge",
        Shape::Obj(&[
            opt("top_k", Shape::UInt { min: 1, max: 50 }),
            opt("min_score", Shape::Num),
        ]),
    ),
    opt(
        "recording",
        Shape::Obj(&[
            opt("enabled", Shape::Bool),
            opt("retention_days", Shape::UInt { min: 1, max: 3650 }),
        ]),
    ),
];

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub(super) fn check_shape(value: &Value, shape: &Shape, path: &str, issues: &mut Issues) {
    match (shape, value) {
        (Shape::Str, Value::String(_)) | (Shape::Bool, Value::Bool(_)) => {}
        (Shape::Num, Value::Number(_)) => {}
        (Shape::NonEmptyStr, Value::String(s)) => {
            if s.trim().is_empty() {
                issues.push(path, "must not be empty");
            }
        }
        (Shape::UInt { min, max }, Value::Number(n)) => match n.as_u64() {
            Some(v) if (*min..=*max).contains(&v) => {}
            _ => issues.push(path, format!("must be a whole number from {min} to {max}")),
        },
        (Shape::OneOf(allowed), Value::String(s)) => {
            if !allowed.contains(&s.as_str()) {
                issues.push(path, format!("must be one of: {}", allowed.join(", ")));
            }
        }
        (Shape::List(item), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                check_shape(v, item, &format!("{path}[{i}]"), issues);
            }
        }
        (Shape::Obj(keys), Value::Object(map)) => {
            for key in keys.iter() {
                match map.get(key.name) {
                    Some(Value::Null) | None if key.required => {
                        issues.push(&join(path, key.name), "required")
                    }
                    Some(Value::Null) | None => {}
                    Some(v) => check_shape(v, &key.shape, &join(path, key.name), issues),
                }
            }
            for name in map.keys() {
                if !keys.iter().any(|k| k.name == name) {
                    let known: Vec<&str> = keys.iter().map(|k| k.name).collect();
                    issues.push(
                        &join(path, name),
                        format!("unknown key (allowed: {})", known.join(", ")),
                    );
                }
            }
        }
        (expected, actual) => {
            let want = match expected {
                Shape::Str | Shape::NonEmptyStr | Shape::OneOf(_) => "a string",
                Shape::Bool => "a boolean (true or false)",
                Shape::UInt { .. } => "a whole number",
                Shape::Num => "a number",
                Shape::List(_) => "a list",
                Shape::Obj(_) => "an object",
            };
            issues.push(path, format!("must be {want}, not {}", type_name(actual)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BotConfig;
    use serde_json::{json, Map};

    /// A value of `shape` with every optional key present.
    fn full(shape: &Shape) -> Value {
        match shape {
            Shape::Str | Shape::NonEmptyStr => json!("x"),
            Shape::Bool => json!(true),
            Shape::UInt { min, .. } => json!((*min).max(1)),
            Shape::Num => json!(0.5),
            Shape::List(item) => json!([full(item)]),
            Shape::OneOf(allowed) => json!(allowed[0]),
            Shape::Obj(keys) => Value::Object(
                keys.iter()
                    .map(|k| (k.name.to_string(), full(&k.shape)))
                    .collect::<Map<_, _>>(),
            ),
        }
    }

    /// Every path to an object in the schema, with its keys, e.g. `scenarios[].collect_fields[]`.
    fn objects(shape: &'static Shape, path: String, out: &mut Vec<(String, &'static [Key])>) {
        match shape {
            Shape::Obj(keys) => {
                out.push((path.clone(), keys));
                for k in keys.iter() {
                    objects(&k.shape, join(&path, k.name), out);
                }
            }
            Shape::List(item) => objects(item, format!("{path}[]"), out),
            _ => {}
        }
    }

    fn at<'v>(value: &'v mut Value, path: &str) -> &'v mut Map<String, Value> {
        let mut v = value;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            let (name, list) = match part.strip_suffix("[]") {
                Some(n) => (n, true),
                None => (part, false),
            };
            v = &mut v[name];
            while list && v.is_array() {
                v = &mut v[0];
            }
        }
        v.as_object_mut().expect("an object")
    }

    static ROOT: Shape = Shape::Obj(SCHEMA);

    /// Fields the types share with another place that the table refuses here on purpose: a
    /// fallback provider has no fallbacks of its own.
    const NARROWED: &[(&str, &str)] = &[
        ("providers.stt.fallback[]", "fallback"),
        ("providers.llm.fallback[]", "fallback"),
        ("providers.tts.fallback[]", "fallback"),
    ];

    #[test]
    fn the_schema_table_and_the_serde_types_state_the_same_keys() {
        let example = full(&ROOT);
        // Every key the table allows is a field of the types (they deny unknown fields)…
        serde_json::from_value::<BotConfig>(example.clone())
            .unwrap_or_else(|e| panic!("the table allows a key the types lack: {e}"));
        // …and every field of the types is a key the table allows: an unknown key's error
        // names every field the type has.
        let mut objs = Vec::new();
        objects(&ROOT, String::new(), &mut objs);
        for (path, keys) in &objs {
            let mut probe = example.clone();
            at(&mut probe, path).insert("zz_probe".into(), json!(1));
            let error = serde_json::from_value::<BotConfig>(probe)
                .expect_err("the types deny unknown keys")
                .to_string();
            let listed = error
                .split_once("expected")
                .map(|(_, names)| names.split('`').skip(1).step_by(2).collect::<Vec<_>>())
                .unwrap_or_default();
            let mut fields: Vec<&str> = listed
                .into_iter()
                .filter(|f| !NARROWED.contains(&(path.as_str(), *f)))
                .collect();
            let mut table: Vec<&str> = keys.iter().map(|k| k.name).collect();
            fields.sort_unstable();
            table.sort_unstable();
            assert_eq!(
                fields, table,
                "{path:?}: the types' fields and the table's keys ({error})"
            );
        }
        // A key the table calls optional is optional in the types too.
        for (path, keys) in objs {
            for key in keys.iter().filter(|k| !k.required) {
                let mut without = example.clone();
                at(&mut without, &path).remove(key.name);
                if let Err(e) = serde_json::from_value::<BotConfig>(without) {
                    panic!(
                        "{}: optional in the table, required by the types: {e}",
                        join(&path, key.name)
                    );
                }
            }
            // And one the table requires is one the types cannot do without, or has a default
            // the table deliberately refuses to assume.
            for key in keys.iter().filter(|k| k.required) {
                let mut without = example.clone();
                at(&mut without, &path).remove(key.name);
                let mut issues = Issues::default();
                check_shape(&without, &ROOT, "", &mut issues);
                assert!(
                    issues.0.iter().any(|i| i.message == "required"),
                    "{}: the table does not report it missing",
                    join(&path, key.name)
                );
            }
        }
    }
}
