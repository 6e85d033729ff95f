//! Access tokens for callers joining a room from a browser.

use livekit_api::access_token::{AccessToken, AccessTokenError, VideoGrants};
use std::time::Duration;

/// A token that lets `identity` join `room`, talk and chat, for `ttl`.
pub fn caller_token(
    api_key: &str,
    api_secret: &str,
    room: &str,
    identity: &str,
    ttl: Duration,
) -> Result<String, AccessTokenError> {
    AccessToken::with_api_key(api_key, api_secret)
        .with_identity(identity)
        .with_name(identity)
        .with_ttl(ttl)
        .with_grants(VideoGrants {
            room_join: true,
            room: room.to_string(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            ..VideoGrants::default()
        })
        .to_jwt()
}
