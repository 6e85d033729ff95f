//! Phone numbers (E.164). A number belongs to one company (given by the admin) and routes to one
//! of that company's bots, or to none; it carries its SIP trunk settings.

use crate::{now_ms, unique_violation, Result, Store, StoreError};
use callfleet_core::ids::{new_id, IdKind};
use callfleet_core::secret::Secret;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq)]
pub struct PhoneNumber {
    pub id: String,
    pub number: String,
    pub company_id: String,
    /// The bot calls to this number reach; `None` while the company has not routed it.
    pub bot_id: Option<String>,
    pub trunk: TrunkSettings,
    pub created_at: i64,
    pub updated_at: i64,
}

/// How the company's SIP provider reaches a number, and how calls are placed from it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrunkSettings {
    /// Source addresses or CIDRs the provider calls in from; empty accepts any.
    pub allowed_addresses: Vec<String>,
    /// Digest credentials the provider presents on calls in.
    pub auth_username: Option<String>,
    pub auth_password: Option<Secret>,
    /// The provider's SIP host for calls placed from this number (`host[:port]`).
    pub outbound_address: Option<String>,
    pub outbound_username: Option<String>,
    pub outbound_password: Option<Secret>,
}

const COLUMNS: &str = "id, number, company_id, bot_id, allowed_addresses, auth_username, \
    auth_password, outbound_address, outbound_username, outbound_password, created_at, updated_at";

fn number_from_row(row: &AnyRow) -> Result<PhoneNumber> {
    let allowed: String = row.try_get("allowed_addresses")?;
    let secret = |column: &str| -> Result<Option<Secret>> {
        Ok(row.try_get::<Option<String>, _>(column)?.map(Secret::new))
    };
    Ok(PhoneNumber {
        id: row.try_get("id")?,
        number: row.try_get("number")?,
        company_id: row.try_get("company_id")?,
        bot_id: row.try_get("bot_id")?,
        trunk: TrunkSettings {
            allowed_addresses: serde_json::from_str(&allowed).unwrap_or_default(),
            auth_username: row.try_get("auth_username")?,
            auth_password: secret("auth_password")?,
            outbound_address: row.try_get("outbound_address")?,
            outbound_username: row.try_get("outbound_username")?,
            outbound_password: secret("outbound_password")?,
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn taken(number: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| {
        if unique_violation(&e) {
            StoreError::Conflict(format!("phone number {number} is already taken"))
        } else {
            e.into()
        }
    }
}

impl Store {
    /// Gives an (already normalised) number to a company, routed to no bot; `Conflict` if any
    /// company has it.
    pub async fn add_company_number(&self, company_id: &str, number: &str) -> Result<PhoneNumber> {
        self.insert_number(company_id, None, number).await
    }

    /// Gives a number to a company and routes it to `bot_id` at once; `Conflict` if taken.
    pub async fn add_phone_number(
        &self,
        company_id: &str,
        bot_id: &str,
        number: &str,
    ) -> Result<PhoneNumber> {
        self.insert_number(company_id, Some(bot_id), number).await
    }

    async fn insert_number(
        &self,
        company_id: &str,
        bot_id: Option<&str>,
        number: &str,
    ) -> Result<PhoneNumber> {
        let now = now_ms();
        let phone = PhoneNumber {
            id: new_id(IdKind::PhoneNumber),
            number: number.to_string(),
            company_id: company_id.to_string(),
            bot_id: bot_id.map(str::to_string),
            trunk: TrunkSettings::default(),
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO phone_numbers (id, number, company_id, bot_id, allowed_addresses, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, '[]', $5, $5)",
        )
        .bind(&phone.id)
        .bind(&phone.number)
        .bind(&phone.company_id)
        .bind(&phone.bot_id)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(taken(number))?;
        Ok(phone)
    }

    /// A company's number; `NotFound` when it is not this company's.
    pub async fn company_number(&self, company_id: &str, number: &str) -> Result<PhoneNumber> {
        let sql =
            format!("SELECT {COLUMNS} FROM phone_numbers WHERE company_id = $1 AND number = $2");
        let row = sqlx::query(&sql)
            .bind(company_id)
            .bind(number)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        number_from_row(&row)
    }

    /// Routes a company's own number to one of its bots. `NotFound` when the number is not the
    /// company's; `Conflict` when another bot has it (unassign it there first). Assigning it to
    /// the bot that has it is done.
    pub async fn assign_phone_number(
        &self,
        company_id: &str,
        bot_id: &str,
        number: &str,
    ) -> Result<PhoneNumber> {
        let done = sqlx::query(
            "UPDATE phone_numbers SET bot_id = $1, updated_at = $2 \
             WHERE company_id = $3 AND number = $4 AND (bot_id IS NULL OR bot_id = $1)",
        )
        .bind(bot_id)
        .bind(now_ms())
        .bind(company_id)
        .bind(number)
        .execute(self.pool())
        .await?;
        let phone = self.company_number(company_id, number).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "phone number {number} is routed to another bot"
            )));
        }
        Ok(phone)
    }

    /// The numbers routed to a bot.
    pub async fn list_phone_numbers(&self, bot_id: &str) -> Result<Vec<PhoneNumber>> {
        let sql = format!("SELECT {COLUMNS} FROM phone_numbers WHERE bot_id = $1 ORDER BY number");
        let rows = sqlx::query(&sql)
            .bind(bot_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(number_from_row).collect()
    }

    /// A company's numbers, routed or not.
    pub async fn list_company_numbers(&self, company_id: &str) -> Result<Vec<PhoneNumber>> {
        let sql =
            format!("SELECT {COLUMNS} FROM phone_numbers WHERE company_id = $1 ORDER BY number");
        let rows = sqlx::query(&sql)
            .bind(company_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(number_from_row).collect()
    }

    /// Every number of every company (the dispatcher reconciles LiveKit's trunks with them).
    pub async fn list_all_numbers(&self) -> Result<Vec<PhoneNumber>> {
        let sql = format!("SELECT {COLUMNS} FROM phone_numbers ORDER BY number");
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        rows.iter().map(number_from_row).collect()
    }

    /// Stops routing a number to a bot; the company keeps the number.
    pub async fn remove_phone_number(&self, bot_id: &str, number: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE phone_numbers SET bot_id = NULL, updated_at = $1 WHERE bot_id = $2 AND number = $3",
        )
        .bind(now_ms())
        .bind(bot_id)
        .bind(number)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Takes a number back from a company.
    pub async fn remove_company_number(&self, company_id: &str, number: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM phone_numbers WHERE company_id = $1 AND number = $2")
            .bind(company_id)
            .bind(number)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Replaces a company's number's trunk settings.
    pub async fn set_trunk_settings(
        &self,
        company_id: &str,
        number: &str,
        trunk: &TrunkSettings,
    ) -> Result<PhoneNumber> {
        let allowed = serde_json::to_string(&trunk.allowed_addresses)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let done = sqlx::query(
            "UPDATE phone_numbers SET allowed_addresses = $1, auth_username = $2, auth_password = $3, \
             outbound_address = $4, outbound_username = $5, outbound_password = $6, updated_at = $7 \
             WHERE company_id = $8 AND number = $9",
        )
        .bind(allowed)
        .bind(&trunk.auth_username)
        .bind(trunk.auth_password.as_ref().map(|s| s.expose().to_string()))
        .bind(&trunk.outbound_address)
        .bind(&trunk.outbound_username)
        .bind(trunk.outbound_password.as_ref().map(|s| s.expose().to_string()))
        .bind(now_ms())
        .bind(company_id)
        .bind(number)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.company_number(company_id, number).await
    }

    /// The number's assignment: which company has it and which bot a call to it is for.
    pub async fn find_phone_number(&self, number: &str) -> Result<PhoneNumber> {
        let sql = format!("SELECT {COLUMNS} FROM phone_numbers WHERE number = $1");
        let row = sqlx::query(&sql)
            .bind(number)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        number_from_row(&row)
    }
}
