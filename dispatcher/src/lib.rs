//! The dispatcher: knows the live workers and their load, places each room that needs an agent
//! on one (with admission control per company and per worker), re-places the calls of a worker
//! whose heartbeat stopped, and turns LiveKit webhooks (signature checked) into placements: a
//! room whose metadata names a bot, or a SIP caller whose called number routes to one. Rooms that
//! LiveKit's own agent dispatch gave to a worker (`--dispatch livekit`) are admitted here too
//! (`POST /livekit/agent-jobs`), and a dead worker's such rooms are dispatched again through
//! LiveKit (`CreateDispatch`) for another worker to resume.
//!
//! Several dispatchers (and the admin API, which places browser calls itself) may run at once:
//! every placement first claims its room on the fleet bus, so a room is placed once. Its HTTP
//! service ([`http_router`]) is the webhook endpoint plus `GET /metrics`.
//!
//! Architecture invariant: the dispatcher decides where a call runs; it never runs one, and the
//! only state it keeps is on the bus.

mod agent_jobs;
mod dispatcher;
mod metrics;
mod placement;
mod sip;
mod tokens;
mod webhook;

pub use agent_jobs::{AgentJobPlaced, AgentJobRequest};
pub use dispatcher::{
    resume_metadata, Dispatcher, DispatcherConfig, LiveKitJobRequest, PlaceError, Placement,
    PlacementRequest,
};
pub use metrics::{http_router, metrics_router};
pub use placement::choose_worker;
pub use sip::{
    DialError, DialOutcome, Dialed, ProvisionError, ReconcileReport, SipProvisioner,
    SIP_ROOM_PREFIX,
};
pub use tokens::caller_token;
pub use webhook::{router as webhook_router, WebhookState};
