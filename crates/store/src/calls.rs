//! Calls: written once by post-call processing, read by the admin API with filters and
//! keyset pagination (newest first; the cursor is the last row's `(started_at, id)`).

use crate::sql::{json_column, text_enum, Arg, Sql};
use crate::{now_ms, Result, Store, StoreError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use callfleet_core::domain::{CallDirection, CallRecord, CallStatus, Outcome};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

/// Filters of `GET /calls`; every one given must hold.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub company_id: Option<String>,
    pub bot_id: Option<String>,
    pub status: Option<String>,
    pub outcome: Option<String>,
    pub direction: Option<String>,
    /// Matches either end of the call.
    pub phone: Option<String>,
    /// Unix ms, inclusive.
    pub started_from: Option<i64>,
    /// Unix ms, exclusive.
    pub started_to: Option<i64>,
    /// Calls that lasted at least this long.
    pub min_duration_sec: Option<i64>,
    /// Calls that lasted at most this long.
    pub max_duration_sec: Option<i64>,
    /// Calls with at least this many turns (analysed calls only).
    pub min_turns: Option<i64>,
    /// `Some(true)`: the caller interrupted the bot at least once; `Some(false)`: never.
    pub interrupted: Option<bool>,
    /// Calls whose reply latency p95 was at least this (analysed calls only).
    pub min_latency_p95_ms: Option<i64>,
}

/// What post-call analysis found in a call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallAnalytics {
    pub duration_sec: Option<i64>,
    pub turns: i64,
    pub caller_turns: i64,
    pub bot_turns: i64,
    /// Estimated: each turn's words at a speaking pace, bounded by when the next turn began.
    pub caller_talk_ms: i64,
    pub bot_talk_ms: i64,
    /// Bot turns the caller cut short.
    pub interruptions: i64,
    /// Voice-to-voice latency of the bot's replies (nearest rank), over `latency_turns` replies.
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
    pub latency_turns: i64,
}

/// A call as listed (no transcript).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallSummary {
    pub id: String,
    pub company_id: String,
    pub bot_id: String,
    pub bot_config_version: i64,
    pub direction: CallDirection,
    pub status: CallStatus,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub duration_sec: Option<i64>,
    pub outcome: Option<String>,
    pub language: Option<String>,
    pub summary: Option<String>,
    /// How the summary was made: `llm`, `extractive` or `given`; `None` until analysed.
    pub summary_kind: Option<String>,
    /// `None` until the call is analysed.
    pub turns: Option<i64>,
    pub interruptions: Option<i64>,
    pub latency_p95_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallPage {
    pub calls: Vec<CallSummary>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

const SUMMARY_COLUMNS: &str =
    "id, company_id, bot_id, bot_config_version, direction, status, from_number, \
     to_number, started_at, ended_at, duration_sec, outcome, language, summary, summary_kind, \
     turns, interruptions, latency_p95_ms";

fn summary_from_row(row: &AnyRow) -> Result<CallSummary> {
    Ok(CallSummary {
        id: row.try_get("id")?,
        company_id: row.try_get("company_id")?,
        bot_id: row.try_get("bot_id")?,
        bot_config_version: row.try_get("bot_config_version")?,
        direction: text_enum(row, "direction", CallDirection::parse)?,
        status: text_enum(row, "status", CallStatus::parse)?,
        from_number: row.try_get("from_number")?,
        to_number: row.try_get("to_number")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        duration_sec: row.try_get("duration_sec")?,
        outcome: row.try_get("outcome")?,
        language: row.try_get("language")?,
        summary: row.try_get("summary")?,
        summary_kind: row.try_get("summary_kind")?,
        turns: row.try_get("turns")?,
        interruptions: row.try_get("interruptions")?,
        latency_p95_ms: row.try_get("latency_p95_ms")?,
    })
}

fn record_from_row(row: &AnyRow) -> Result<CallRecord> {
    let outcome: Option<String> = row.try_get("outcome")?;
    let evidence: serde_json::Value = json_column(row, "outcome_evidence")?;
    Ok(CallRecord {
        id: row.try_get("id")?,
        company_id: row.try_get("company_id")?,
        bot_id: row.try_get("bot_id")?,
        bot_config_version: row.try_get("bot_config_version")?,
        direction: text_enum(row, "direction", CallDirection::parse)?,
        status: text_enum(row, "status", CallStatus::parse)?,
        from_number: row.try_get("from_number")?,
        to_number: row.try_get("to_number")?,
        room: row.try_get("room")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        language: row.try_get("language")?,
        transcript: json_column(row, "transcript")?,
        fields: json_column(row, "fields")?,
        outcome: outcome
            .map(|kind| {
                serde_json::from_value::<Outcome>(
                    serde_json::json!({"kind": kind, "evidence": evidence}),
                )
                .map_err(|e| StoreError::Corrupt(format!("column outcome_evidence: {e}")))
            })
            .transpose()?,
        summary: row.try_get("summary")?,
        metrics: json_column(row, "metrics")?,
    })
}

fn encode_cursor(started_at: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{started_at}:{id}"))
}

/// `None` when the cursor was not made by [`encode_cursor`].
fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (started, id) = text.split_once(':')?;
    Some((started.parse().ok()?, id.to_string()))
}

/// A cursor that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("invalid cursor")]
pub struct InvalidCursor;

impl Store {
    /// Stores a call; storing the same call again replaces it (post-call retries are harmless).
    pub async fn upsert_call(&self, call: &CallRecord) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM calls WHERE id = $1")
            .bind(&call.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO calls (id, company_id, bot_id, bot_config_version, direction, status, from_number, to_number,
                room, started_at, ended_at, duration_sec, language, outcome, outcome_evidence, summary, transcript,
                fields, metrics, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
        )
        .bind(&call.id)
        .bind(&call.company_id)
        .bind(&call.bot_id)
        .bind(call.bot_config_version)
        .bind(call.direction.as_str())
        .bind(call.status.as_str())
        .bind(&call.from_number)
        .bind(&call.to_number)
        .bind(&call.room)
        .bind(call.started_at)
        .bind(call.ended_at)
        .bind(call.duration_sec())
        .bind(&call.language)
        .bind(call.outcome.as_ref().map(|o| o.kind.clone()))
        .bind(json(&call.outcome.as_ref().map(|o| o.evidence.clone()).unwrap_or_default()))
        .bind(&call.summary)
        .bind(json(&call.transcript))
        .bind(json(&call.fields))
        .bind(json(&call.metrics))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves a call still under way (queued, ringing or in progress) to `status`; a call
    /// already over is left as it ended. Whether it moved.
    pub async fn set_open_call_status(&self, id: &str, status: CallStatus) -> Result<bool> {
        let open = [
            CallStatus::Queued,
            CallStatus::Ringing,
            CallStatus::InProgress,
        ];
        let done =
            sqlx::query("UPDATE calls SET status = $2 WHERE id = $1 AND status IN ($3, $4, $5)")
                .bind(id)
                .bind(status.as_str())
                .bind(open[0].as_str())
                .bind(open[1].as_str())
                .bind(open[2].as_str())
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends a call with `status` and `outcome` at `ended_at`, leaving the rest of its record
    /// (transcript, summary) as stored. Whether there was such a call.
    pub async fn end_call(
        &self,
        id: &str,
        status: CallStatus,
        outcome: &Outcome,
        ended_at: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE calls SET status = $2, outcome = $3, outcome_evidence = $4,
                ended_at = $5, duration_sec = ($5 - started_at) / 1000 WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(&outcome.kind)
        .bind(json(&outcome.evidence))
        .bind(ended_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records what analysis found in a stored call (its summary and how it was made, if given,
    /// too).
    pub async fn save_call_analysis(
        &self,
        id: &str,
        analytics: &CallAnalytics,
        summary: Option<(&str, &str)>,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE calls SET analytics = $2, turns = $3, interruptions = $4, latency_p95_ms = $5,
                summary = COALESCE($6, summary), summary_kind = COALESCE($7, summary_kind)
             WHERE id = $1",
        )
        .bind(id)
        .bind(json(analytics))
        .bind(analytics.turns)
        .bind(analytics.interruptions)
        .bind(analytics.latency_p95_ms)
        .bind(summary.map(|(text, _)| text))
        .bind(summary.map(|(_, kind)| kind))
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// What analysis found in a call; `None` for a call not analysed (yet).
    pub async fn get_call_analysis(&self, id: &str) -> Result<Option<CallAnalytics>> {
        let row = sqlx::query("SELECT analytics FROM calls WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        let text: Option<String> = row.try_get("analytics")?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| StoreError::Corrupt(format!("column analytics: {e}")))
        })
        .transpose()
    }

    /// A stored call's summary and how it was made, once both are recorded (post-call processing
    /// run again on a call keeps the summary it made the first time, the one its webhooks carry).
    pub async fn get_call_summary(&self, id: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT summary, summary_kind FROM calls WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let summary: Option<String> = row.try_get("summary")?;
        let kind: Option<String> = row.try_get("summary_kind")?;
        Ok(summary.zip(kind))
    }

    pub async fn get_call(&self, id: &str) -> Result<CallRecord> {
        let row = sqlx::query("SELECT * FROM calls WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        record_from_row(&row)
    }

    /// One page of calls, newest first.
    pub async fn list_calls(
        &self,
        filter: &CallFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Result<CallPage, InvalidCursor>> {
        let mut sql = Sql::new(&format!("SELECT {SUMMARY_COLUMNS} FROM calls WHERE 1 = 1"));
        let text_filters = [
            ("company_id", &filter.company_id),
            ("bot_id", &filter.bot_id),
            ("status", &filter.status),
            ("outcome", &filter.outcome),
            ("direction", &filter.direction),
        ];
        for (column, value) in text_filters {
            if let Some(value) = value {
                sql.push(&format!(" AND {column} = "))
                    .arg(Arg::Text(value.clone()));
            }
        }
        if let Some(phone) = &filter.phone {
            sql.push(" AND (from_number = ")
                .arg(Arg::Text(phone.clone()));
            sql.push(" OR to_number = ")
                .arg(Arg::Text(phone.clone()))
                .push(")");
        }
        if let Some(from) = filter.started_from {
            sql.push(" AND started_at >= ").arg(Arg::Int(from));
        }
        if let Some(to) = filter.started_to {
            sql.push(" AND started_at < ").arg(Arg::Int(to));
        }
        let at_least = [
            ("duration_sec", filter.min_duration_sec),
            ("turns", filter.min_turns),
            ("latency_p95_ms", filter.min_latency_p95_ms),
        ];
        for (column, value) in at_least {
            if let Some(value) = value {
                sql.push(&format!(" AND {column} >= ")).arg(Arg::Int(value));
            }
        }
        if let Some(max) = filter.max_duration_sec {
            sql.push(" AND duration_sec <= ").arg(Arg::Int(max));
        }
        match filter.interrupted {
            Some(true) => {
                sql.push(" AND interruptions > 0");
            }
            Some(false) => {
                sql.push(" AND interruptions = 0");
            }
            None => {}
        }
        if let Some(cursor) = cursor {
            let Some((started, id)) = decode_cursor(cursor) else {
                return Ok(Err(InvalidCursor));
            };
            // (started_at, id) < (cursor) written out, which both engines plan as an index range.
            sql.push(" AND (started_at < ").arg(Arg::Int(started));
            sql.push(" OR (started_at = ").arg(Arg::Int(started));
            sql.push(" AND id < ").arg(Arg::Text(id)).push("))");
        }
        let limit = limit.clamp(1, 500);
        sql.push(" ORDER BY started_at DESC, id DESC LIMIT ")
            .arg(Arg::Int(i64::from(limit) + 1));
        tracing::trace!(sql = sql.text(), "list calls");
        let rows = sql.query().fetch_all(self.pool()).await?;
        let mut calls = rows
            .iter()
            .map(summary_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = if calls.len() > limit as usize {
            calls.truncate(limit as usize);
            calls.last().map(|c| encode_cursor(c.started_at, &c.id))
        } else {
            None
        };
        Ok(Ok(CallPage { calls, next_cursor }))
    }
}

/// The call's JSON columns are plain data and always serialise.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("call columns are plain data")
}
