//! Bots and their config versions. Saving a config never overwrites: it adds version n+1 and moves
//! the bot's `current_version`, so a running call keeps the version it started with.

use crate::sql::{json_column, text_enum};
use crate::{now_ms, Result, Store, StoreError};
use callfleet_core::config::BotConfig;
use callfleet_core::domain::BotStatus;
use callfleet_core::ids::{new_id, IdKind};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bot {
    pub id: String,
    pub company_id: String,
    pub name: String,
    pub status: BotStatus,
    pub current_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BotVersion {
    pub bot_id: String,
    pub version: i64,
    /// Canonical JSON of the validated config.
    pub config: serde_json::Value,
    /// The text as the user sent it (YAML comments included).
    pub source_text: String,
    /// `yaml` or `json`.
    pub source_format: String,
    pub created_at: i64,
}

impl BotVersion {
    /// The typed config. Stored configs were validated on the way in.
    pub fn bot_config(&self) -> Result<BotConfig> {
        BotConfig::from_value(&self.config).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

pub struct NewBot<'a> {
    pub company_id: &'a str,
    pub name: &'a str,
    pub config: &'a BotConfig,
    pub source_text: &'a str,
    pub source_format: &'a str,
}

#[derive(Debug, Clone, Default)]
pub struct BotPatch {
    pub name: Option<String>,
    pub status: Option<BotStatus>,
}

const COLUMNS: &str = "id, company_id, name, status, current_version, created_at, updated_at";

fn bot_from_row(row: &AnyRow) -> Result<Bot> {
    Ok(Bot {
        id: row.try_get("id")?,
        company_id: row.try_get("company_id")?,
        name: row.try_get("name")?,
        status: text_enum(row, "status", BotStatus::parse)?,
        current_version: row.try_get("current_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn version_from_row(row: &AnyRow) -> Result<BotVersion> {
    Ok(BotVersion {
        bot_id: row.try_get("bot_id")?,
        version: row.try_get("version")?,
        config: json_column(row, "config_json")?,
        source_text: row.try_get("source_text")?,
        source_format: row.try_get("source_format")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    pub async fn create_bot(&self, new: NewBot<'_>) -> Result<(Bot, BotVersion)> {
        let now = now_ms();
        let bot = Bot {
            id: new_id(IdKind::Bot),
            company_id: new.company_id.to_string(),
            name: new.name.to_string(),
            status: BotStatus::Active,
            current_version: 1,
            created_at: now,
            updated_at: now,
        };
        let version = BotVersion {
            bot_id: bot.id.clone(),
            version: 1,
            config: new.config.to_json(),
            source_text: new.source_text.to_string(),
            source_format: new.source_format.to_string(),
            created_at: now,
        };
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO bots (id, company_id, name, status, current_version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&bot.id)
        .bind(&bot.company_id)
        .bind(&bot.name)
        .bind(bot.status.as_str())
        .bind(bot.current_version)
        .bind(bot.created_at)
        .bind(bot.updated_at)
        .execute(&mut *tx)
        .await?;
        insert_version(&mut tx, &version).await?;
        tx.commit().await?;
        Ok((bot, version))
    }

    /// A bot that has not been deleted.
    pub async fn get_bot(&self, id: &str) -> Result<Bot> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM bots WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        bot_from_row(&row)
    }

    pub async fn list_bots(&self, company_id: &str) -> Result<Vec<Bot>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM bots WHERE company_id = $1 AND deleted_at IS NULL ORDER BY created_at, id"
        ))
        .bind(company_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(bot_from_row).collect()
    }

    pub async fn update_bot(&self, id: &str, patch: BotPatch) -> Result<Bot> {
        let done = sqlx::query(
            "UPDATE bots SET name = COALESCE($2, name), status = COALESCE($3, status), updated_at = $4
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(patch.name)
        .bind(patch.status.map(BotStatus::as_str))
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_bot(id).await
    }

    /// Deletes a bot: its numbers are released at once; its calls stay for the record.
    pub async fn delete_bot(&self, id: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE bots SET deleted_at = $2, updated_at = $2 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        // The company keeps its numbers; they route nowhere until given to another bot.
        sqlx::query("UPDATE phone_numbers SET bot_id = NULL, updated_at = $2 WHERE bot_id = $1")
            .bind(id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Saves a new config version and makes it current.
    pub async fn put_bot_config(
        &self,
        bot_id: &str,
        config: &BotConfig,
        source_text: &str,
        source_format: &str,
    ) -> Result<BotVersion> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        // Bumping the counter first takes the row's write lock, so two saves cannot both get n+1.
        let row = sqlx::query(
            "UPDATE bots SET current_version = current_version + 1, updated_at = $2
             WHERE id = $1 AND deleted_at IS NULL RETURNING current_version",
        )
        .bind(bot_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let version = BotVersion {
            bot_id: bot_id.to_string(),
            version: row.try_get("current_version")?,
            config: config.to_json(),
            source_text: source_text.to_string(),
            source_format: source_format.to_string(),
            created_at: now,
        };
        insert_version(&mut tx, &version).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// One version of a bot's config; the current one when `version` is `None`.
    pub async fn get_bot_version(&self, bot_id: &str, version: Option<i64>) -> Result<BotVersion> {
        let row = sqlx::query(
            "SELECT v.bot_id, v.version, v.config_json, v.source_text, v.source_format, v.created_at
             FROM bot_config_versions v JOIN bots b ON b.id = v.bot_id
             WHERE v.bot_id = $1 AND b.deleted_at IS NULL AND v.version = COALESCE($2, b.current_version)",
        )
        .bind(bot_id)
        .bind(version)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        version_from_row(&row)
    }

    /// Every version, newest first.
    pub async fn list_bot_versions(&self, bot_id: &str) -> Result<Vec<BotVersion>> {
        let rows = sqlx::query(
            "SELECT bot_id, version, config_json, source_text, source_format, created_at
             FROM bot_config_versions WHERE bot_id = $1 ORDER BY version DESC",
        )
        .bind(bot_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(version_from_row).collect()
    }

    /// How many config versions a bot has saved (its quota counts them without reading them).
    pub async fn count_bot_versions(&self, bot_id: &str) -> Result<i64> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM bot_config_versions WHERE bot_id = $1")
                .bind(bot_id)
                .fetch_one(self.pool())
                .await?;
        Ok(count)
    }
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    version: &BotVersion,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO bot_config_versions (bot_id, version, config_json, source_text, source_format, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&version.bot_id)
    .bind(version.version)
    .bind(version.config.to_string())
    .bind(&version.source_text)
    .bind(&version.source_format)
    .bind(version.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
