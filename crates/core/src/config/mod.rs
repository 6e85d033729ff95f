//! The bot configuration: what a company writes (YAML or JSON, one schema) to describe its bot.
//!
//! Parsing is in three steps so that a user sees *every* problem at once, each with its path
//! (`scenarios[1].collect_fields[0].name: required`):
//! 1. the text becomes a JSON value (YAML and JSON both);
//! 2. the value is checked against [`SCHEMA`], a table of the allowed keys and their types;
//! 3. the typed [`BotConfig`] is built and checked for meaning (unique names, references that
//!    resolve, a known timezone, known providers).
//!
//! `types` holds the typed config (serde), `schema` the shape table and its check, `checks` the
//! meaning checks; YAML is read by [`crate::yaml`] within [`yaml::Limits::CONFIG`], so a hostile
//! document (alias expansion, deep nesting, huge scalars) costs bounded memory and time.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

use crate::yaml;

mod checks;
mod schema;
mod types;

pub use schema::{Key, Shape, SCHEMA};
pub use types::*;

use checks::Issues;
use schema::check_shape;

/// One problem in a config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigIssue {
    /// `scenarios[1].collect_fields[0].name`; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A config that cannot be used, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid bot config: {}", .issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

/// The format a config text is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    Yaml,
    Json,
}

impl ConfigFormat {
    /// Picks the format from a media type (`application/json`, `application/yaml`, `text/yaml`, …);
    /// `None` for anything else.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        let essence = media_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Some(Self::Json),
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
                Some(Self::Yaml)
            }
            _ => None,
        }
    }
}

impl BotConfig {
    /// Parses and validates a config written in `format`.
    pub fn parse(text: &str, format: ConfigFormat) -> Result<BotConfig, ConfigError> {
        let value = match format {
            ConfigFormat::Json => {
                let max = yaml::Limits::CONFIG.max_bytes;
                if text.len() > max {
                    return Err(single_issue(format!(
                        "the document is {} bytes; at most {max} are accepted",
                        text.len()
                    )));
                }
                // serde_json bounds nesting itself (128 levels).
                serde_json::from_str::<Value>(text)
                    .map_err(|e| single_issue(format!("not valid JSON: {e}")))?
            }
            ConfigFormat::Yaml => yaml::to_json(text, &yaml::Limits::CONFIG)
                .map_err(|e| single_issue(format!("not valid YAML: {e}")))?,
        };
        Self::from_value(&value)
    }

    /// Parses a config whose format is not known: JSON if it starts like JSON, else YAML
    /// (which also accepts most JSON).
    pub fn parse_any(text: &str) -> Result<BotConfig, ConfigError> {
        let format = if text.trim_start().starts_with('{') {
            ConfigFormat::Json
        } else {
            ConfigFormat::Yaml
        };
        Self::parse(text, format)
    }

    /// Validates an already-parsed document.
    pub fn from_value(value: &Value) -> Result<BotConfig, ConfigError> {
        let mut issues = Issues::default();
        check_shape(value, &Shape::Obj(SCHEMA), "", &mut issues);
        if !issues.0.is_empty() {
            return Err(ConfigError { issues: issues.0 });
        }
        let config: BotConfig = serde_json::from_value(value.clone())
            .map_err(|e| single_issue(format!("does not match the schema: {e}")))?;
        config.check_meaning(&mut issues);
        if issues.0.is_empty() {
            Ok(config.with_inferred_types())
        } else {
            Err(ConfigError { issues: issues.0 })
        }
    }

    fn with_inferred_types(mut self) -> Self {
        for scenario in &mut self.scenarios {
            for field in &mut scenario.collect_fields {
                field.kind = Some(field.kind());
            }
        }
        self
    }

    /// The config as canonical JSON (types inferred, defaults filled in).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a BotConfig always serialises")
    }

    /// Every field name any scenario collects, with its spec (first occurrence wins).
    pub fn fields(&self) -> BTreeMap<&str, &FieldSpec> {
        let mut out = BTreeMap::new();
        for scenario in &self.scenarios {
            for field in &scenario.collect_fields {
                out.entry(field.name.as_str()).or_insert(field);
            }
        }
        out
    }
}

fn single_issue(message: String) -> ConfigError {
    ConfigError {
        issues: vec![ConfigIssue {
            path: String::new(),
            message,
        }],
    }
}

#[cfg(test)]
mod tests;
