//! Companies: the tenants. Everything else belongs to one.

use crate::{now_ms, Result, Store, StoreError};
use callfleet_core::ids::{new_id, IdKind};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Company {
    pub id: String,
    pub name: String,
    pub timezone: String,
    pub max_concurrent_calls: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewCompany {
    pub name: String,
    pub timezone: String,
    pub max_concurrent_calls: i64,
}

fn company_from_row(row: &AnyRow) -> Result<Company> {
    Ok(Company {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        timezone: row.try_get("timezone")?,
        max_concurrent_calls: row.try_get("max_concurrent_calls")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const COLUMNS: &str = "id, name, timezone, max_concurrent_calls, created_at, updated_at";

impl Store {
    pub async fn create_company(&self, new: NewCompany) -> Result<Company> {
        let now = now_ms();
        let company = Company {
            id: new_id(IdKind::Company),
            name: new.name,
            timezone: new.timezone,
            max_concurrent_calls: new.max_concurrent_calls,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO companies (id, name, timezone, max_concurrent_calls, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&company.id)
        .bind(&company.name)
        .bind(&company.timezone)
        .bind(company.max_concurrent_calls)
        .bind(company.created_at)
        .bind(company.updated_at)
        .execute(self.pool())
        .await?;
        Ok(company)
    }

    pub async fn get_company(&self, id: &str) -> Result<Company> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM companies WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        company_from_row(&row)
    }

    pub async fn list_companies(&self) -> Result<Vec<Company>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM companies ORDER BY created_at, id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(company_from_row).collect()
    }

    /// Deletes a company and, by cascade, everything it owns.
    pub async fn delete_company(&self, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM companies WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
