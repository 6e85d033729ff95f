//! Minting participant access tokens (HS256 JWTs via `livekit-api`).

use crate::error::RoomError;
use livekit_api::access_token::{AccessToken, VideoGrants};

/// A token that lets `identity` join `room`, publish, subscribe and send data, valid for
/// six hours. Signed with the API key's secret.
pub fn participant_token(
    api_key: &str,
    api_secret: &str,
    room: &str,
    identity: &str,
) -> Result<String, RoomError> {
    AccessToken::with_api_key(api_key, api_secret)
        .with_identity(identity)
        .with_name(identity)
        .with_grants(room_grants(room))
        .to_jwt()
        .map_err(|e| RoomError::Token(e.to_string()))
}

/// A token for an agent: what [`participant_token`] allows, and LiveKit labels the participant
/// AGENT (the `video.agent` grant and kind `agent`), so LiveKit's clients and front-end
/// components treat it as the room's agent. It may set its own attributes, and joins with
/// `attributes` already set (`lk.agent.state: initializing`, say).
pub fn agent_token(
    api_key: &str,
    api_secret: &str,
    room: &str,
    identity: &str,
    attributes: &[(&str, &str)],
) -> Result<String, RoomError> {
    AccessToken::with_api_key(api_key, api_secret)
        .with_identity(identity)
        .with_name(identity)
        .with_kind("agent")
        .with_attributes(attributes.iter().copied())
        .with_grants(VideoGrants {
            agent: true,
            can_update_own_metadata: Some(true),
            ..room_grants(room)
        })
        .to_jwt()
        .map_err(|e| RoomError::Token(e.to_string()))
}

fn room_grants(room: &str) -> VideoGrants {
    VideoGrants {
        room_join: true,
        room: room.to_string(),
        can_publish: Some(true),
        can_subscribe: Some(true),
        can_publish_data: Some(true),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_api::access_token::TokenVerifier;

    #[test]
    fn an_agent_token_carries_the_agent_grant_kind_and_attributes() {
        let token = agent_token(
            "key",
            "secret",
            "room-1",
            "agent-1",
            &[("lk.agent.state", "initializing")],
        )
        .unwrap();
        let claims = TokenVerifier::with_api_key("key", "secret")
            .verify(&token)
            .unwrap();
        assert!(claims.video.agent);
        assert!(claims.video.can_update_own_metadata());
        assert_eq!(claims.kind, "agent");
        assert_eq!(claims.video.room, "room-1");
        assert_eq!(
            claims.attributes.get("lk.agent.state").map(String::as_str),
            Some("initializing")
        );

        let plain = participant_token("key", "secret", "room-1", "caller").unwrap();
        let claims = TokenVerifier::with_api_key("key", "secret")
            .verify(&plain)
            .unwrap();
        assert!(!claims.video.agent);
    }
}
