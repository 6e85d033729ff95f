//! API keys. A key is `cfk_` + 40 random base62-ish characters; only its SHA-256 is stored, so a
//! leaked database reveals no usable key. Keys are random enough that a plain hash is sufficient.

use crate::{now_ms, Result, Store, StoreError};
use callfleet_core::ids::{new_id, IdKind};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A key as listed: never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub company_id: String,
    pub name: String,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A key just created: the only time the secret is available.
pub struct NewApiKey {
    pub key: ApiKey,
    pub secret: String,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("key", &self.key)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Who a presented key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyOwner {
    pub key_id: String,
    pub company_id: String,
}

/// The stored form of a key.
pub fn hash_api_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new key: `prefix` + 40 random alphanumerics.
pub(crate) fn new_secret(prefix: &str) -> String {
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("{prefix}{random}")
}

fn key_from_row(row: &AnyRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        company_id: row.try_get("company_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl Store {
    pub async fn create_api_key(&self, company_id: &str, name: &str) -> Result<NewApiKey> {
        let secret = new_secret("cfk_");
        let key = ApiKey {
            id: new_id(IdKind::ApiKey),
            company_id: company_id.to_string(),
            name: name.to_string(),
            prefix: secret[..10].to_string(),
            created_at: now_ms(),
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, company_id, name, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.id)
        .bind(&key.company_id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(hash_api_key(&secret))
        .bind(key.created_at)
        .execute(self.pool())
        .await?;
        Ok(NewApiKey { key, secret })
    }

    pub async fn list_api_keys(&self, company_id: &str) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, company_id, name, prefix, created_at, revoked_at FROM api_keys
             WHERE company_id = $1 ORDER BY created_at, id",
        )
        .bind(company_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes a key of `company_id`; revoking twice is not an error.
    pub async fn revoke_api_key(&self, company_id: &str, key_id: &str) -> Result<()> {
        self.revoke_key_in("api_keys", company_id, key_id).await
    }

    /// Marks key `key_id` of `company_id` in `table` (`api_keys`, `embed_keys`) revoked.
    pub(crate) async fn revoke_key_in(
        &self,
        table: &'static str,
        company_id: &str,
        key_id: &str,
    ) -> Result<()> {
        let done = sqlx::query(&format!(
            "UPDATE {table} SET revoked_at = COALESCE(revoked_at, $3) WHERE id = $1 AND company_id = $2"
        ))
        .bind(key_id)
        .bind(company_id)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The owner of a presented key, if it exists and is not revoked.
    pub async fn find_api_key(&self, secret: &str) -> Result<Option<ApiKeyOwner>> {
        let row = sqlx::query(
            "SELECT id, company_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash_api_key(secret))
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(ApiKeyOwner {
                key_id: row.try_get("id")?,
                company_id: row.try_get("company_id")?,
            })
        })
        .transpose()
    }
}
