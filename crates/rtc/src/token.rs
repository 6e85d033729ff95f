//! Minting participant access tokens (HS256 JWTs via `livekit-api`).

use crate::error::RoomError;

/// A token that lets `identity` join `room`, publish, subscribe and send data, valid for
/// six hours. Signed with the API key's secret.
pub fn participant_token(
    api_key: &str,
    api_secret: &str,
    room: &str,
    identity: &str,
) -> Result<String, RoomError> {
    livekit_api::access_token::AccessToken::with_api_key(api_key, api_secret)
        .with_identity(identity)
        .with_name(identity)
        .with_grants(livekit_api::access_token::VideoGrants {
            room_join: true,
            room: room.to_string(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            ..Default::default()
        })
        .to_jwt()
        .map_err(|e| RoomError::Token(e.to_string()))
}
