//! Errors of the room API.

/// What can go wrong joining or using a room. Carries no token and no SDP.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error("invalid server URL: {0}")]
    InvalidUrl(String),
    #[error("could not mint a token: {0}")]
    Token(String),
    #[error("the access token cannot be sent as a header")]
    InvalidToken,
    #[error("the server refused to join (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("signalling failed: {0}")]
    Signal(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("media transport failed: {0}")]
    Transport(String),
    #[error("audio codec failed: {0}")]
    Codec(String),
    #[error("the server no longer has our session: {0}")]
    SessionGone(String),
    #[error("the room is closed")]
    Closed,
    #[error("the server did not publish the track: {0}")]
    Publish(String),
}
