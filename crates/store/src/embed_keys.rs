//! Embed keys (`cfe_…`): what a public web page (the talk page, a company's own site) holds to
//! start browser calls with the bots the key names, from the origins it names, and nothing else.
//! Unlike an API key it reads nothing, so it may be shown to every visitor. Stored like API keys:
//! only the SHA-256 of the key.

use crate::api_keys::{hash_api_key, new_secret};
use crate::{now_ms, Result, Store, StoreError};
use callfleet_core::ids::{new_id, IdKind};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

/// The prefix every embed key starts with, so it is never mistaken for an API key.
pub const EMBED_KEY_PREFIX: &str = "cfe_";

/// A key as listed: never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbedKey {
    pub id: String,
    pub company_id: String,
    pub name: String,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    /// The bots it may start sessions with.
    pub bot_ids: Vec<String>,
    /// Page origins (`https://example.com`) it may be used from; empty: any.
    pub allowed_origins: Vec<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A key just created: the only time the key is available from the API.
pub struct NewEmbedKey {
    pub key: EmbedKey,
    pub secret: String,
}

impl std::fmt::Debug for NewEmbedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEmbedKey")
            .field("key", &self.key)
            .field("secret", &"[redacted]")
            .finish()
    }
}

const COLUMNS: &str =
    "id, company_id, name, prefix, bot_ids, allowed_origins, created_at, revoked_at";

fn json_list(row: &AnyRow, column: &str) -> Result<Vec<String>> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("embed_keys.{column}: {e}")))
}

fn key_from_row(row: &AnyRow) -> Result<EmbedKey> {
    Ok(EmbedKey {
        id: row.try_get("id")?,
        company_id: row.try_get("company_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        bot_ids: json_list(row, "bot_ids")?,
        allowed_origins: json_list(row, "allowed_origins")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl Store {
    /// Issues a key of `company_id` for `bot_ids` (the caller checks they are the company's).
    pub async fn create_embed_key(
        &self,
        company_id: &str,
        name: &str,
        bot_ids: &[String],
        allowed_origins: &[String],
    ) -> Result<NewEmbedKey> {
        let secret = new_secret(EMBED_KEY_PREFIX);
        let key = EmbedKey {
            id: new_id(IdKind::EmbedKey),
            company_id: company_id.to_string(),
            name: name.to_string(),
            prefix: secret[..10].to_string(),
            bot_ids: bot_ids.to_vec(),
            allowed_origins: allowed_origins.to_vec(),
            created_at: now_ms(),
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO embed_keys (id, company_id, name, prefix, key_hash, bot_ids, allowed_origins, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.id)
        .bind(&key.company_id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(hash_api_key(&secret))
        .bind(serde_json::to_string(&key.bot_ids).expect("strings serialise"))
        .bind(serde_json::to_string(&key.allowed_origins).expect("strings serialise"))
        .bind(key.created_at)
        .execute(self.pool())
        .await?;
        Ok(NewEmbedKey { key, secret })
    }

    pub async fn list_embed_keys(&self, company_id: &str) -> Result<Vec<EmbedKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM embed_keys WHERE company_id = $1 ORDER BY created_at, id"
        ))
        .bind(company_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes a key of `company_id`; revoking twice is not an error.
    pub async fn revoke_embed_key(&self, company_id: &str, key_id: &str) -> Result<()> {
        self.revoke_key_in("embed_keys", company_id, key_id).await
    }

    /// The key presented, if it exists and is not revoked.
    pub async fn find_embed_key(&self, secret: &str) -> Result<Option<EmbedKey>> {
        if !secret.starts_with(EMBED_KEY_PREFIX) {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM embed_keys WHERE key_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(hash_api_key(secret))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }
}
