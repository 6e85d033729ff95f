//! Which calls have a recording, where it is kept and until when. The bytes live in a
//! recording store (`callfleet-recording`); these rows are what the API checks before serving
//! one to the company that owns the call.

use crate::{now_ms, Result, Store};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecording {
    pub call_id: String,
    pub company_id: String,
    /// The key in the recording store.
    pub storage_key: String,
    pub bytes: i64,
    pub created_at: i64,
    /// Unix ms after which it is deleted.
    pub expires_at: i64,
}

fn recording_from_row(row: &AnyRow) -> Result<CallRecording> {
    Ok(CallRecording {
        call_id: row.try_get("call_id")?,
        company_id: row.try_get("company_id")?,
        storage_key: row.try_get("storage_key")?,
        bytes: row.try_get("bytes")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    /// Records that `call_id` has a recording under `storage_key`; doing it again replaces it.
    pub async fn save_recording(
        &self,
        call_id: &str,
        company_id: &str,
        storage_key: &str,
        bytes: i64,
        expires_at: i64,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM call_recordings WHERE call_id = $1")
            .bind(call_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO call_recordings (call_id, company_id, storage_key, bytes, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(call_id)
        .bind(company_id)
        .bind(storage_key)
        .bind(bytes)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A call's recording, unless it has none or it has expired.
    pub async fn get_recording(&self, call_id: &str) -> Result<Option<CallRecording>> {
        let row =
            sqlx::query("SELECT * FROM call_recordings WHERE call_id = $1 AND expires_at > $2")
                .bind(call_id)
                .bind(now_ms())
                .fetch_optional(self.pool())
                .await?;
        row.as_ref().map(recording_from_row).transpose()
    }

    /// A call's recording row, expired or not (to delete it).
    pub async fn get_recording_any(&self, call_id: &str) -> Result<Option<CallRecording>> {
        let row = sqlx::query("SELECT * FROM call_recordings WHERE call_id = $1")
            .bind(call_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(recording_from_row).transpose()
    }

    /// Recordings past their retention at `now`, oldest first.
    pub async fn expired_recordings(&self, now: i64, limit: u32) -> Result<Vec<CallRecording>> {
        let rows = sqlx::query(
            "SELECT * FROM call_recordings WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(recording_from_row).collect()
    }

    /// Every recording of a company (to delete their bytes before the company goes).
    pub async fn company_recordings(&self, company_id: &str) -> Result<Vec<CallRecording>> {
        let rows = sqlx::query("SELECT * FROM call_recordings WHERE company_id = $1")
            .bind(company_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(recording_from_row).collect()
    }

    /// Forgets a call's recording (once its bytes are deleted).
    pub async fn forget_recording(&self, call_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM call_recordings WHERE call_id = $1")
            .bind(call_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes a call (its analysis with it); `NotFound` when there is none. Its recording row
    /// is left for the caller to delete with the bytes ([`Store::forget_recording`]).
    pub async fn delete_call(&self, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM calls WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(crate::StoreError::NotFound);
        }
        Ok(())
    }
}
