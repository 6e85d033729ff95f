//! Browser calls: `POST /bots/{id}/sessions` creates a room for the bot, has the dispatcher place
//! an agent in it at once (no waiting for a LiveKit webhook), and returns what a browser needs to
//! join: the LiveKit URL and a token for the caller. A company API key or an embed key (for
//! public pages: only the bots it names, from the origins it names) may start one; browsers on
//! other origins get CORS headers for the origins an embed key allows.

use super::bots::visible_bot;
use super::Id;
use crate::error::{ApiError, ApiResult, ErrorBody, NotFoundAs};
use crate::{ApiContext, SessionCaller};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use callfleet_core::domain::CallDirection;
use callfleet_dispatcher::{caller_token, PlaceError, PlacementRequest};
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(create_session))
        .route("/bots/{id}/sessions", axum::routing::options(preflight))
}

/// CORS preflight of a page on another origin. It carries no key, so it is answered for any
/// origin; the POST itself is refused unless the key allows the page's origin.
async fn preflight(headers: HeaderMap) -> impl IntoResponse {
    let mut out = HeaderMap::new();
    if let Some(origin) = headers.get(header::ORIGIN) {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        out.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    (StatusCode::NO_CONTENT, out)
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
/// Takes a company API key, or an embed key (`cfe_…`) that names this bot.
#[utoipa::path(post, path = "/bots/{id}/sessions", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 201, body = SessionOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "An embed key used from an origin it does not allow"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn create_session(
    State(ctx): State<ApiContext>,
    who: SessionCaller,
    Id(id): Id<String>,
) -> ApiResult<(StatusCode, HeaderMap, Json<SessionOut>)> {
    let (bot, cors) = match &who {
        SessionCaller::Principal(principal) => (visible_bot(&ctx, principal, &id).await?, None),
        SessionCaller::Embed { key, origin } => {
            // A bot the key does not name is, for its holder, not there.
            if !key.bot_ids.iter().any(|b| b == &id) {
                return Err(ApiError::NotFound("bot"));
            }
            let bot = ctx.store.get_bot(&id).await.not_found_as("bot")?;
            if bot.company_id != key.company_id {
                return Err(ApiError::NotFound("bot"));
            }
            (
                bot,
                origin
                    .as_deref()
                    .and_then(|o| HeaderValue::from_str(o).ok()),
            )
        }
    };
    let mut headers = HeaderMap::new();
    if let Some(origin) = cors {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
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
        PlaceError::Contended(_) => ApiError::RateLimited {
            retry_after_secs: 1,
        },
        PlaceError::BotDisabled(_) => ApiError::Conflict(e.to_string()),
        PlaceError::BotNotFound(_) => ApiError::NotFound("bot"),
        PlaceError::AlreadyPlaced(_) | PlaceError::CallGone(_) => ApiError::Conflict(e.to_string()),
        PlaceError::Store(inner) => inner.into(),
        PlaceError::Fleet(inner) => {
            tracing::warn!(error = %inner, "the fleet bus failed while placing a browser call");
            ApiError::Unavailable {
                code: "fleet_unavailable",
                message: "the fleet cannot place calls right now; try again shortly".into(),
            }
        }
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
        headers,
        Json(SessionOut {
            call_id: placement.job.call_id,
            room,
            url: calls.livekit_url.clone(),
            token,
            identity,
        }),
    ))
}
