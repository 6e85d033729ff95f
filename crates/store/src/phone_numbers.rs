//! Phone numbers (E.164) and the bot each routes to. A number belongs to one bot at a time.

use crate::{now_ms, unique_violation, Result, Store, StoreError};
use callfleet_core::ids::{new_id, IdKind};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhoneNumber {
    pub id: String,
    pub number: String,
    pub bot_id: String,
    pub company_id: String,
    pub created_at: i64,
}

fn number_from_row(row: &AnyRow) -> Result<PhoneNumber> {
    Ok(PhoneNumber {
        id: row.try_get("id")?,
        number: row.try_get("number")?,
        bot_id: row.try_get("bot_id")?,
        company_id: row.try_get("company_id")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Assigns an (already normalised) number to a bot; `Conflict` if any bot has it.
    pub async fn add_phone_number(
        &self,
        company_id: &str,
        bot_id: &str,
        number: &str,
    ) -> Result<PhoneNumber> {
        let phone = PhoneNumber {
            id: new_id(IdKind::PhoneNumber),
            number: number.to_string(),
            bot_id: bot_id.to_string(),
            company_id: company_id.to_string(),
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO phone_numbers (id, number, bot_id, company_id, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&phone.id)
            .bind(&phone.number)
            .bind(&phone.bot_id)
            .bind(&phone.company_id)
            .bind(phone.created_at)
            .execute(self.pool())
            .await
            .map_err(|e| {
                if unique_violation(&e) {
                    StoreError::Conflict(format!("phone number {number} is already assigned to a bot"))
                } else {
                    e.into()
                }
            })?;
        Ok(phone)
    }

    pub async fn list_phone_numbers(&self, bot_id: &str) -> Result<Vec<PhoneNumber>> {
        let rows = sqlx::query(
            "SELECT id, number, bot_id, company_id, created_at FROM phone_numbers WHERE bot_id = $1 ORDER BY number",
        )
        .bind(bot_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(number_from_row).collect()
    }

    /// Releases a number from a bot.
    pub async fn remove_phone_number(&self, bot_id: &str, number: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM phone_numbers WHERE bot_id = $1 AND number = $2")
            .bind(bot_id)
            .bind(number)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The number's assignment: which bot a call to it is for.
    pub async fn find_phone_number(&self, number: &str) -> Result<PhoneNumber> {
        let row = sqlx::query("SELECT id, number, bot_id, company_id, created_at FROM phone_numbers WHERE number = $1")
            .bind(number)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        number_from_row(&row)
    }
}
