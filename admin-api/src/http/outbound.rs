//! Outbound phone calls: `POST /calls` dials a number from one of the company's numbers (through
//! its outbound trunk) and puts the bot on the call, which speaks first once the callee answers.
//! The request returns when the call connected or failed: `answered`, `busy`, `no-answer` or
//! `failed`; the call is stored as `direction: outbound` when it ends.

use super::bots::visible_bot;
use super::Body;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::{ApiContext, Principal};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callfleet_core::phone::normalize_phone;
use callfleet_dispatcher::DialError;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new().routes(routes!(place_call))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlaceCall {
    bot_id: String,
    /// The number to call, E.164.
    to: String,
    /// One of the company's numbers with an outbound trunk (its provider host set), E.164.
    from_number: String,
    /// How long to let it ring (5-120 s, default 30).
    ringing_timeout_sec: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PlacedCall {
    call_id: String,
    room: String,
    /// `answered`, `busy`, `no-answer` or `failed`.
    status: &'static str,
    /// The SIP status a call that did not connect ended with.
    sip_status: Option<u16>,
}

fn number(field: &str, value: &str) -> ApiResult<String> {
    normalize_phone(value, None)
        .ok_or_else(|| ApiError::invalid(field, "not an E.164 phone number (+<country><number>)"))
}

/// Call a phone number with a bot.
#[utoipa::path(post, path = "/calls", tag = "calls", security(("bearer" = [])), request_body = PlaceCall,
    responses((status = 201, body = PlacedCall), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn place_call(
    State(ctx): State<ApiContext>,
    who: Principal,
    Body(body): Body<PlaceCall>,
) -> ApiResult<(StatusCode, Json<PlacedCall>)> {
    let bot = visible_bot(&ctx, &who, &body.bot_id).await?;
    let to = number("to", &body.to)?;
    let from = number("from_number", &body.from_number)?;
    let ringing = body.ringing_timeout_sec.unwrap_or(30);
    if !(5..=120).contains(&ringing) {
        return Err(ApiError::invalid(
            "ringing_timeout_sec",
            "between 5 and 120",
        ));
    }
    let (Some(sip), Some(calls)) = (&ctx.sip, &ctx.browser_calls) else {
        return Err(ApiError::Unavailable {
            code: "sip_not_configured",
            message:
                "outbound calls need LiveKit SIP (CALLFLEET_LIVEKIT_SIP) and the fleet (REDIS_URL)"
                    .into(),
        });
    };
    let dialed = sip
        .dial(
            &calls.dispatcher,
            &bot,
            &to,
            &from,
            Duration::from_secs(ringing),
        )
        .await
        .map_err(|e| match e {
            DialError::NoTrunk(_) => ApiError::invalid("from_number", e.to_string()),
            DialError::Place(e) => ApiError::Unavailable {
                code: "not_placed",
                message: e.to_string(),
            },
            DialError::Provision(e) => {
                tracing::error!(error = %e, "outbound call failed");
                ApiError::Unavailable {
                    code: "sip_unavailable",
                    message: "LiveKit SIP could not place the call".into(),
                }
            }
        })?;
    Ok((
        StatusCode::CREATED,
        Json(PlacedCall {
            call_id: dialed.call_id,
            room: dialed.room,
            status: dialed.outcome.as_str(),
            sip_status: dialed.sip_status,
        }),
    ))
}
