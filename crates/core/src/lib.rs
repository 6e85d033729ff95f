//! The pure core of callfleet: domain types shared by every service (ids, calls, turns, outcomes),
//! the bot configuration schema with its validation, and text tools. Nothing here performs I/O or
//! knows a wire format, so everything is tested with plain data tables.

pub mod config;
pub mod domain;
pub mod ids;
pub mod phone;
pub mod secret;

pub use config::{BotConfig, ConfigError, ConfigIssue};
