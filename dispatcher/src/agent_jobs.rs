//! `POST /livekit/agent-jobs`: a worker that LiveKit's agent dispatch gave a room
//! (`callfleet agent --dispatch livekit`) asks the dispatcher to admit it as a call — the bot
//! must exist and be active, its company under its limit — which is then queued for that worker
//! with the bot's config, exactly like a call the dispatcher placed itself. Resumed dispatches
//! (failover) move the call from its dead worker.
//!
//! The worker authenticates with a LiveKit access token signed by the API secret the dispatcher
//! verifies webhooks with, carrying the `agent` grant (what a worker registers with).

use crate::dispatcher::{Dispatcher, LiveKitJobRequest, PlaceError};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use livekit_api::access_token::TokenVerifier;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The request body (the worker's side is `callfleet-agent`'s LiveKit dispatch).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentJobRequest {
    pub worker_id: String,
    pub call_id: String,
    pub room: String,
    pub bot_id: String,
    pub agent_name: String,
    #[serde(default)]
    pub resume: bool,
}

/// The answer: the call as placed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentJobPlaced {
    pub call_id: String,
    pub attempt: u32,
}

#[derive(Clone)]
pub(crate) struct AgentJobsState {
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) verifier: Arc<TokenVerifier>,
}

pub(crate) fn router(state: AgentJobsState) -> Router {
    Router::new()
        .route("/livekit/agent-jobs", post(place))
        .with_state(state)
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The status a refusal is answered with; the worker ends the LiveKit job with the message.
fn status_of(e: &PlaceError) -> StatusCode {
    match e {
        PlaceError::AlreadyPlaced(_) => StatusCode::CONFLICT,
        PlaceError::BotNotFound(_) | PlaceError::CallGone(_) => StatusCode::NOT_FOUND,
        PlaceError::BotDisabled(_) => StatusCode::FORBIDDEN,
        PlaceError::CompanyLimit { .. } => StatusCode::TOO_MANY_REQUESTS,
        PlaceError::NoCapacity
        | PlaceError::Contended(_)
        | PlaceError::Store(_)
        | PlaceError::Fleet(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn place(
    State(state): State<AgentJobsState>,
    headers: HeaderMap,
    Json(body): Json<AgentJobRequest>,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match state.verifier.verify(token) {
        Ok(claims) if claims.video.agent => {}
        Ok(_) => return refuse(StatusCode::FORBIDDEN, "the token has no agent grant".into()),
        Err(e) => {
            tracing::warn!(error = %e, "refused an agent job request: bad token");
            return refuse(StatusCode::UNAUTHORIZED, "invalid token".into());
        }
    }
    let request = LiveKitJobRequest {
        worker_id: body.worker_id,
        call_id: body.call_id,
        room: body.room,
        bot_id: body.bot_id,
        agent_name: body.agent_name,
        resume: body.resume,
    };
    match state.dispatcher.place_livekit(&request).await {
        Ok(placement) => (
            StatusCode::CREATED,
            Json(AgentJobPlaced {
                call_id: placement.job.call_id,
                attempt: placement.job.attempt,
            }),
        )
            .into_response(),
        Err(e) => {
            let status = status_of(&e);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::error!(room = %request.room, error = %e, "could not place a LiveKit-dispatched room");
            } else {
                tracing::warn!(room = %request.room, reason = %e, "LiveKit-dispatched room refused");
            }
            refuse(status, e.to_string())
        }
    }
}
