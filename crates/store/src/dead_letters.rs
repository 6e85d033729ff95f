//! Post-call records that failed too many times, set aside with their last error so they never
//! block the others and a person can see (and fix) what went wrong.

use crate::sql::{json_column, Arg, Sql};
use crate::{now_ms, Result, Store};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The queue entry's id.
    pub id: String,
    pub call_id: String,
    pub company_id: String,
    /// The record as it was queued.
    pub record: serde_json::Value,
    pub attempts: i64,
    pub last_error: String,
    pub created_at: i64,
}

fn dead_letter_from_row(row: &AnyRow) -> Result<DeadLetter> {
    Ok(DeadLetter {
        id: row.try_get("id")?,
        call_id: row.try_get("call_id")?,
        company_id: row.try_get("company_id")?,
        record: json_column(row, "record")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Sets a record aside; doing it again for the same queue entry replaces it.
    pub async fn add_dead_letter(
        &self,
        id: &str,
        call_id: &str,
        company_id: &str,
        record: &serde_json::Value,
        attempts: i64,
        last_error: &str,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM postcall_dead_letters WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO postcall_dead_letters (id, call_id, company_id, record, attempts, last_error, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(call_id)
        .bind(company_id)
        .bind(record.to_string())
        .bind(attempts)
        .bind(last_error)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Dead letters, newest first; of one company when given.
    pub async fn list_dead_letters(
        &self,
        company_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>> {
        let mut sql = Sql::new("SELECT * FROM postcall_dead_letters");
        if let Some(company) = company_id {
            sql.push(" WHERE company_id = ")
                .arg(Arg::Text(company.to_string()));
        }
        sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .arg(Arg::Int(i64::from(limit.clamp(1, 500))));
        let rows = sql.query().fetch_all(self.pool()).await?;
        rows.iter().map(dead_letter_from_row).collect()
    }
}
