//! Browser calls: `POST /bots/{id}/sessions` creates a room for the bot, has the dispatcher place
//! an agent in it at once (no waiting for a LiveKit webhook), and returns what a browser needs to
//! join: the LiveKit URL and a token for the caller.

use super::bots::visible_bot;
use super::Id;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::{ApiContext, Principal};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callfleet_core::domain::CallDirection;
use callfleet_dispatcher::{caller_token, PlaceError, PlacementRequest};
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new().routes(routes!(create_session))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionOut {
    /// The call this session is; `GET /calls/{call_id}` shows it once it has ended.
    call_id: String,
    room: String,
    /// The LiveKit server URL for the browser.
    url: String,
    /// The caller's access token (valid for an hour).
    token: String,
    /// The caller's identity in the room.
    identity: String,
}

/// Start a browser call with this bot: a room with an agent placed in it, and a token to join.
#[utoipa::path(post, path = "/bots/{id}/sessions", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 201, body = SessionOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn create_session(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<(StatusCode, Json<SessionOut>)> {
    let bot = visible_bot(&ctx, &who, &id).await?;
    let Some(calls) = ctx.browser_calls.clone() else {
        return Err(ApiError::Unavailable {
            code: "calls_unavailable",
            message: "browser calls need LiveKit and the fleet: run `callfleet dev`, or give the API LIVEKIT_URL and REDIS_URL".into(),
        });
    };
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let room = format!("web-{}", &suffix[..16]);
    let identity = format!("caller-{}", &suffix[16..24]);
    let request = PlacementRequest {
        room: room.clone(),
        bot_id: bot.id.clone(),
        direction: CallDirection::Web,
        caller_identity: Some(identity.clone()),
        from_number: None,
        to_number: None,
    };
    let placement = calls.dispatcher.place(request).await.map_err(|e| match e {
        PlaceError::NoCapacity => ApiError::Unavailable {
            code: "no_capacity",
            message: e.to_string(),
        },
        PlaceError::CompanyLimit { .. } => ApiError::RateLimited {
            retry_after_secs: 30,
        },
        PlaceError::BotDisabled(_) => ApiError::Conflict(e.to_string()),
        PlaceError::BotNotFound(_) => ApiError::NotFound("bot"),
        PlaceError::AlreadyPlaced(_) => ApiError::Conflict(e.to_string()),
        PlaceError::Store(inner) => inner.into(),
        PlaceError::Fleet(inner) => ApiError::Internal(Box::new(inner)),
    })?;
    let token = caller_token(
        &calls.api_key,
        calls.api_secret.expose(),
        &room,
        &identity,
        Duration::from_secs(3600),
    )
    .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok((
        StatusCode::CREATED,
        Json(SessionOut {
            call_id: placement.job.call_id,
            room,
            url: calls.livekit_url.clone(),
            token,
            identity,
        }),
    ))
}
