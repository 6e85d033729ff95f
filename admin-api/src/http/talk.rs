//! The talk page: a small browser client (LiveKit's JS SDK, embedded at build time) that starts a
//! session with a bot, sends the microphone, plays the agent, and shows the live transcript.
//! The page itself holds no secret; it is given an embed key (`#key=cfe_…`), which can start
//! calls with the bots it names and read nothing, so the link can be shared with anyone.

use crate::ApiContext;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const TALK_PAGE: &str = include_str!("../../ui/talk.html");
const LIVEKIT_CLIENT: &str = include_str!(concat!(env!("OUT_DIR"), "/livekit-client.umd.js"));

pub(super) fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(talk_page))
        .routes(routes!(livekit_client))
}

/// The browser page to talk to a bot (`#key=<embed key>&autostart=1` to start at once).
#[utoipa::path(get, path = "/talk/{bot_id}", tag = "calls",
    params(("bot_id" = String, Path, description = "Bot id")),
    responses((status = 200, content_type = "text/html", body = String)))]
async fn talk_page() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/html; charset=utf-8")], TALK_PAGE)
}

/// LiveKit's browser SDK, as the talk page loads it.
#[utoipa::path(get, path = "/ui/livekit-client.js", tag = "system",
    responses((status = 200, content_type = "text/javascript", body = String)))]
async fn livekit_client() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=86400"),
        ],
        LIVEKIT_CLIENT,
    )
}
