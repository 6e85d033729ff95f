//! LiveKit webhooks: `POST /livekit/webhook` with `Authorization: <JWT>` whose `sha256` claim is the
//! body's hash. Bad signatures are refused (401) and logged; good events that mean "a room needs
//! an agent" become placements:
//! - `participant_joined` of a SIP participant: the called number (`sip.trunkPhoneNumber`) routes
//!   to a bot;
//! - `room_started` whose metadata is JSON naming a `bot_id` (rooms created for browser calls).

use crate::dispatcher::{Dispatcher, PlaceError, PlacementRequest};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use callfleet_core::domain::CallDirection;
use callfleet_core::phone::normalize_phone;
use callfleet_store::StoreError;
use livekit_api::access_token::TokenVerifier;
use livekit_api::webhooks::WebhookReceiver;
use livekit_protocol::participant_info::Kind as ParticipantKind;
use livekit_protocol::WebhookEvent;
use std::sync::Arc;

#[derive(Clone)]
pub struct WebhookState {
    dispatcher: Arc<Dispatcher>,
    receiver: WebhookReceiver,
    /// Checks the tokens of workers asking to run a room LiveKit dispatched to them.
    verifier: Arc<TokenVerifier>,
}

impl WebhookState {
    pub fn new(dispatcher: Arc<Dispatcher>, api_key: &str, api_secret: &str) -> WebhookState {
        WebhookState {
            dispatcher,
            receiver: WebhookReceiver::new(TokenVerifier::with_api_key(api_key, api_secret)),
            verifier: Arc::new(TokenVerifier::with_api_key(api_key, api_secret)),
        }
    }

    pub(crate) fn agent_jobs(&self) -> crate::agent_jobs::AgentJobsState {
        crate::agent_jobs::AgentJobsState {
            dispatcher: self.dispatcher.clone(),
            verifier: self.verifier.clone(),
        }
    }
}

pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/livekit/webhook", post(receive))
        .with_state(state)
}

async fn receive(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let event = match state.receiver.receive(&body, auth) {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(error = %e, "rejected a LiveKit webhook");
            return StatusCode::UNAUTHORIZED;
        }
    };
    match handle(&state.dispatcher, &event).await {
        Ok(()) => StatusCode::OK,
        // LiveKit retries failed deliveries; only a failure of ours is worth a retry.
        Err(e) => {
            tracing::error!(error = %e, event = %event.event, "webhook handling failed");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// What an event asks of the dispatcher, if anything.
fn placement_for(event: &WebhookEvent) -> Option<(PlacementRequest, Option<String>)> {
    let room = event.room.as_ref()?;
    match event.event.as_str() {
        "participant_joined" => {
            let participant = event.participant.as_ref()?;
            if participant.kind != ParticipantKind::Sip as i32 {
                return None;
            }
            let called = participant.attributes.get("sip.trunkPhoneNumber")?;
            let request = PlacementRequest {
                room: room.name.clone(),
                bot_id: String::new(),
                direction: CallDirection::Inbound,
                caller_identity: Some(participant.identity.clone()),
                from_number: participant
                    .attributes
                    .get("sip.phoneNumber")
                    .and_then(|n| normalize_phone(n, None)),
                to_number: normalize_phone(called, None),
            };
            Some((request, Some(called.clone())))
        }
        "room_started" => {
            let metadata: serde_json::Value = serde_json::from_str(&room.metadata).ok()?;
            let bot_id = metadata.get("bot_id")?.as_str()?.to_string();
            let request = PlacementRequest {
                room: room.name.clone(),
                bot_id,
                direction: CallDirection::Web,
                caller_identity: None,
                from_number: None,
                to_number: None,
            };
            Some((request, None))
        }
        _ => None,
    }
}

async fn handle(dispatcher: &Dispatcher, event: &WebhookEvent) -> Result<(), PlaceError> {
    let Some((mut request, called)) = placement_for(event) else {
        return Ok(());
    };
    if let Some(called) = called {
        let Some(number) = request.to_number.clone() else {
            tracing::warn!(called = %called, "SIP call to a number that is not E.164; not routed");
            return Ok(());
        };
        match dispatcher.store().find_phone_number(&number).await {
            Ok(phone) if phone.bot_id.is_some() => {
                request.bot_id = phone.bot_id.unwrap_or_default();
            }
            Ok(_) | Err(StoreError::NotFound) => {
                tracing::warn!(number = %number, room = %request.room, "SIP call to a number no bot has");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    match dispatcher.place(request).await {
        Ok(_) | Err(PlaceError::AlreadyPlaced(_)) => Ok(()),
        Err(e @ (PlaceError::Store(_) | PlaceError::Fleet(_))) => Err(e),
        // A clear refusal (limit, no capacity, unknown bot) is logged, not retried by LiveKit.
        Err(refused) => {
            tracing::warn!(reason = %refused, "room not placed");
            Ok(())
        }
    }
}
