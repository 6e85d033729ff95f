//! The pure core of callfleet: domain types shared by every service (ids, calls, turns, outcomes),
//! the bot configuration schema with its validation, the scenario engine that runs a bot's
//! conversation, and the text tools it understands callers with. Nothing here performs I/O or
//! knows a wire format, so everything is tested with plain data tables.

pub mod config;
pub mod domain;
pub mod ids;
pub mod phone;
pub mod scenario;
pub mod secret;
pub mod text;
pub mod yaml;

pub use config::{BotConfig, ConfigError, ConfigIssue};
