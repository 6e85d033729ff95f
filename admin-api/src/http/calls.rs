//! Call records: a filtered, cursor-paginated list and one call with its transcript and outcome;
//! and the dead letters of post-call processing (records that kept failing, with their last error).

use super::{Id, Params};
use crate::error::{ApiError, ApiResult, ErrorBody, NotFoundAs};
use crate::{ApiContext, Principal};
use axum::extract::State;
use axum::Json;
use callfleet_core::domain::{CallDirection, CallRecord, CallStatus};
use callfleet_store::{CallAnalytics, CallFilter, CallSummary, DeadLetter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_calls))
        .routes(routes!(get_call, delete_call))
        .routes(routes!(get_recording))
        .routes(routes!(list_dead_letters))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListDeadLetters {
    /// Admin key only: limit to one company (all companies otherwise).
    company_id: Option<String>,
    /// 1–500, default 100.
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeadLetterOut {
    /// The queue entry's id.
    id: String,
    call_id: String,
    company_id: String,
    /// The call record as the agent queued it.
    #[schema(value_type = Object)]
    record: Value,
    attempts: i64,
    last_error: String,
    created_at: i64,
}

impl From<DeadLetter> for DeadLetterOut {
    fn from(d: DeadLetter) -> Self {
        DeadLetterOut {
            id: d.id,
            call_id: d.call_id,
            company_id: d.company_id,
            record: d.record,
            attempts: d.attempts,
            last_error: d.last_error,
            created_at: d.created_at,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListCalls {
    /// Admin key only: limit to one company.
    company_id: Option<String>,
    bot_id: Option<String>,
    /// `queued`, `ringing`, `in_progress`, `completed`, `failed`, `no_answer`.
    status: Option<String>,
    /// `BOOKING`, `LEAD`, …
    outcome: Option<String>,
    /// `inbound`, `outbound`, `web`.
    direction: Option<String>,
    /// Either end of the call, E.164.
    phone: Option<String>,
    /// Calls started at or after: RFC 3339 time or `YYYY-MM-DD` (UTC).
    from: Option<String>,
    /// Calls started before: RFC 3339 time or `YYYY-MM-DD` (UTC).
    to: Option<String>,
    /// Calls that lasted at least this many seconds.
    min_duration_sec: Option<i64>,
    /// Calls that lasted at most this many seconds.
    max_duration_sec: Option<i64>,
    /// Calls with at least this many turns.
    min_turns: Option<i64>,
    /// `true`: the caller interrupted the bot at least once; `false`: never.
    interrupted: Option<bool>,
    /// Calls whose reply latency p95 was at least this many milliseconds.
    min_latency_p95_ms: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1–500, default 50.
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CallOut {
    id: String,
    company_id: String,
    bot_id: String,
    bot_config_version: i64,
    #[schema(value_type = String)]
    direction: CallDirection,
    #[schema(value_type = String)]
    status: CallStatus,
    from_number: Option<String>,
    to_number: Option<String>,
    started_at: i64,
    ended_at: Option<i64>,
    duration_sec: Option<i64>,
    outcome: Option<String>,
    language: Option<String>,
    summary: Option<String>,
    /// How the summary was made: `llm` (the bot's language model, from the transcript),
    /// `extractive` (drawn from the record when no model could serve) or `given`.
    summary_kind: Option<String>,
    /// Absent until the call is analysed.
    turns: Option<i64>,
    interruptions: Option<i64>,
    latency_p95_ms: Option<i64>,
}

impl From<CallSummary> for CallOut {
    fn from(c: CallSummary) -> Self {
        CallOut {
            id: c.id,
            company_id: c.company_id,
            bot_id: c.bot_id,
            bot_config_version: c.bot_config_version,
            direction: c.direction,
            status: c.status,
            from_number: c.from_number,
            to_number: c.to_number,
            started_at: c.started_at,
            ended_at: c.ended_at,
            duration_sec: c.duration_sec,
            outcome: c.outcome,
            language: c.language,
            summary: c.summary,
            summary_kind: c.summary_kind,
            turns: c.turns,
            interruptions: c.interruptions,
            latency_p95_ms: c.latency_p95_ms,
        }
    }
}

/// What post-call analysis found in a call.
#[derive(Serialize, ToSchema)]
pub(crate) struct AnalyticsOut {
    duration_sec: Option<i64>,
    turns: i64,
    caller_turns: i64,
    bot_turns: i64,
    /// Estimated from each turn's words, bounded by when the next turn began.
    caller_talk_ms: i64,
    bot_talk_ms: i64,
    /// Bot turns the caller cut short.
    interruptions: i64,
    /// Voice-to-voice reply latency, nearest rank, over `latency_turns` replies.
    latency_p50_ms: Option<i64>,
    latency_p95_ms: Option<i64>,
    latency_turns: i64,
}

impl From<CallAnalytics> for AnalyticsOut {
    fn from(a: CallAnalytics) -> Self {
        AnalyticsOut {
            duration_sec: a.duration_sec,
            turns: a.turns,
            caller_turns: a.caller_turns,
            bot_turns: a.bot_turns,
            caller_talk_ms: a.caller_talk_ms,
            bot_talk_ms: a.bot_talk_ms,
            interruptions: a.interruptions,
            latency_p50_ms: a.latency_p50_ms,
            latency_p95_ms: a.latency_p95_ms,
            latency_turns: a.latency_turns,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CallPageOut {
    calls: Vec<CallOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CallDetail {
    /// The full record: transcript, collected fields, outcome with evidence, summary, per-turn metrics.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    record: Value,
    duration_sec: Option<i64>,
    /// How the summary was made: `llm`, `extractive` or `given`; absent before analysis.
    summary_kind: Option<String>,
    analytics: AnalyticsOut,
}

fn parse_time(name: &str, value: &str) -> ApiResult<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis());
    }
    Err(ApiError::invalid(
        name,
        "must be an RFC 3339 time or a YYYY-MM-DD date",
    ))
}

fn check_enum(name: &str, value: &Option<String>, allowed: &[&str]) -> ApiResult<()> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::invalid(
            name,
            format!("must be one of: {}", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

/// Calls, newest first, with filters and cursor pagination.
#[utoipa::path(get, path = "/calls", tag = "calls", security(("bearer" = [])), params(ListCalls),
    responses((status = 200, body = CallPageOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_calls(
    State(ctx): State<ApiContext>,
    who: Principal,
    Params(q): Params<ListCalls>,
) -> ApiResult<Json<CallPageOut>> {
    let statuses: Vec<&str> = CallStatus::ALL.iter().map(|s| s.as_str()).collect();
    let directions: Vec<&str> = CallDirection::ALL.iter().map(|d| d.as_str()).collect();
    check_enum("status", &q.status, &statuses)?;
    check_enum("direction", &q.direction, &directions)?;
    let phone = match &q.phone {
        Some(p) => Some(
            callfleet_core::phone::normalize_phone(p, None).ok_or_else(|| {
                ApiError::invalid("phone", "must be an E.164 number such as +79161234567")
            })?,
        ),
        None => None,
    };
    let filter = CallFilter {
        company_id: who.company_filter(q.company_id)?,
        bot_id: q.bot_id,
        status: q.status,
        outcome: q.outcome,
        direction: q.direction,
        phone,
        started_from: q
            .from
            .as_deref()
            .map(|v| parse_time("from", v))
            .transpose()?,
        started_to: q.to.as_deref().map(|v| parse_time("to", v)).transpose()?,
        min_duration_sec: q.min_duration_sec,
        max_duration_sec: q.max_duration_sec,
        min_turns: q.min_turns,
        interrupted: q.interrupted,
        min_latency_p95_ms: q.min_latency_p95_ms,
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be from 1 to 500"));
    }
    let page = ctx
        .store
        .list_calls(&filter, q.cursor.as_deref(), limit)
        .await?
        .map_err(|_| ApiError::invalid("cursor", "not a cursor this API returned"))?;
    Ok(Json(CallPageOut {
        calls: page.calls.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One call: details, transcript, collected fields, outcome with its evidence (which rule, field
/// or event decided it), summary, and analytics.
#[utoipa::path(get, path = "/calls/{id}", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path, description = "Call id")),
    responses((status = 200, body = CallDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_call(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<Json<CallDetail>> {
    let call: CallRecord = ctx.store.get_call(&id).await.not_found_as("call")?;
    who.can_access(&call.company_id, "call")?;
    let duration_sec = call.duration_sec();
    // A call stored before analysis existed is analysed on the way out.
    let analytics = match ctx.store.get_call_analysis(&id).await? {
        Some(stored) => stored,
        None => callfleet_postcall::analysis::analyze(&call),
    };
    let summary_kind = ctx.store.get_call_summary(&id).await?.map(|(_, kind)| kind);
    let record = serde_json::to_value(&call).map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(Json(CallDetail {
        record,
        duration_sec,
        summary_kind,
        analytics: analytics.into(),
    }))
}

/// A call's recording: a two-channel WAV (left the caller, right the bot), for the company that
/// owns the call; 404 when the call has none (its bot does not record, or it expired).
#[utoipa::path(get, path = "/calls/{id}/recording", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path, description = "Call id")),
    responses((status = 200, content_type = "audio/wav", body = Vec<u8>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_recording(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let call: CallRecord = ctx.store.get_call(&id).await.not_found_as("call")?;
    who.can_access(&call.company_id, "call")?;
    let (Some(recordings), Some(recording)) =
        (&ctx.recordings, ctx.store.get_recording(&id).await?)
    else {
        return Err(ApiError::NotFound("recording"));
    };
    if recording.company_id != call.company_id {
        return Err(ApiError::NotFound("recording"));
    }
    let bytes = recordings
        .get(&recording.storage_key)
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?
        .ok_or(ApiError::NotFound("recording"))?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "audio/wav".to_string()),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.wav\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Deletes a call with its analysis, its recording (the bytes too) and nothing else.
#[utoipa::path(delete, path = "/calls/{id}", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path, description = "Call id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_call(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<axum::http::StatusCode> {
    let call: CallRecord = ctx.store.get_call(&id).await.not_found_as("call")?;
    who.can_access(&call.company_id, "call")?;
    delete_recording_of(&ctx, &id).await?;
    ctx.store.delete_call(&id).await.not_found_as("call")?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Deletes a call's recording, bytes first: a row left behind is retried, bytes never orphaned.
pub(crate) async fn delete_recording_of(ctx: &ApiContext, call_id: &str) -> ApiResult<()> {
    let Some(recording) = ctx.store.get_recording_any(call_id).await? else {
        return Ok(());
    };
    if let Some(recordings) = &ctx.recordings {
        recordings
            .delete(&recording.storage_key)
            .await
            .map_err(|e| ApiError::Internal(Box::new(e)))?;
    }
    ctx.store.forget_recording(call_id).await?;
    Ok(())
}

/// Finished calls post-call processing set aside after failing repeatedly, newest first, with
/// the last error: they were not stored and sent no webhooks.
#[utoipa::path(get, path = "/dead-letters", tag = "calls", security(("bearer" = [])), params(ListDeadLetters),
    responses((status = 200, body = Vec<DeadLetterOut>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_dead_letters(
    State(ctx): State<ApiContext>,
    who: Principal,
    Params(q): Params<ListDeadLetters>,
) -> ApiResult<Json<Vec<DeadLetterOut>>> {
    let company = who.company_filter(q.company_id)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be from 1 to 500"));
    }
    Ok(Json(
        ctx.store
            .list_dead_letters(company.as_deref(), limit)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}
