//! LiveKit's server API as callfleet uses it: the SIP service (inbound and outbound trunks,
//! dispatch rules, placing and transferring phone calls) and the room service (removing a
//! participant, deleting a room), and the agent dispatch service (`CreateDispatch`, which the
//! dispatcher uses to hand a dead worker's room to another LiveKit-dispatched worker).
//!
//! It speaks twirp with JSON bodies over HTTP (`POST <url>/twirp/livekit.<Service>/<Method>`),
//! each request signed with a short-lived access token that carries only the grants its method
//! needs (`sip.admin` for trunks and rules, `sip.call` for calls, `roomAdmin`/`roomCreate` for
//! rooms). It is a crate of its own, apart from `rtc`, so that the dispatcher and the admin API
//! can drive LiveKit without linking Opus or WebRTC.
//!
//! Architecture invariant: LiveKit's wire types stay private to this crate (`wire`); callers see
//! our own types, and secrets (the API secret, trunk passwords) never reach a log or `Debug`.

mod wire;

use callfleet_core::secret::Secret;
use livekit_api::access_token::{AccessToken, SIPGrants, VideoGrants};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Why a server API request failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveKitApiError {
    #[error("LiveKit URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("signing the request: {0}")]
    Token(String),
    #[error("LiveKit {method}: {source}")]
    Transport {
        method: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// LiveKit answered with a twirp error (`code` is twirp's: `not_found`, `invalid_argument`,
    /// `unavailable`, …). Failed SIP calls carry the SIP status in `meta` (`sip_status_code`).
    #[error("LiveKit {method}: {code}: {message}")]
    Twirp {
        method: &'static str,
        status: u16,
        code: String,
        message: String,
        meta: BTreeMap<String, String>,
    },
    #[error("LiveKit {method}: unexpected answer: {reason}")]
    Decode {
        method: &'static str,
        reason: String,
    },
}

impl LiveKitApiError {
    /// The thing asked about does not exist (deleting it again is then done).
    pub fn is_not_found(&self) -> bool {
        matches!(self, LiveKitApiError::Twirp { code, .. } if code == "not_found")
    }

    /// The SIP final response a failed call ended with (486 busy, 480/408 no answer, …).
    pub fn sip_status_code(&self) -> Option<u16> {
        match self {
            LiveKitApiError::Twirp { meta, .. } => meta.get("sip_status_code")?.parse().ok(),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, LiveKitApiError>;

/// An agent dispatch: a request that a worker registered under `agent_name` joins `room`, with
/// `metadata` for the job.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDispatchInfo {
    pub id: String,
    pub agent_name: String,
    pub room: String,
    pub metadata: String,
}

impl From<wire::AgentDispatch> for AgentDispatchInfo {
    fn from(d: wire::AgentDispatch) -> AgentDispatchInfo {
        AgentDispatchInfo {
            id: d.id,
            agent_name: d.agent_name,
            room: d.room,
            metadata: d.metadata,
        }
    }
}

/// Credentials a SIP trunk checks (inbound) or presents (outbound), digest auth.
#[derive(Clone, PartialEq)]
pub struct SipAuth {
    pub username: String,
    pub password: Secret,
}

impl fmt::Debug for SipAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipAuth")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// A trunk that accepts calls to `numbers` (E.164).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InboundTrunk {
    pub name: String,
    pub metadata: String,
    pub numbers: Vec<String>,
    /// Source addresses or CIDRs calls may come from; empty accepts any.
    pub allowed_addresses: Vec<String>,
    pub auth: Option<SipAuth>,
}

/// An inbound trunk as LiveKit holds it (the password is never read back).
#[derive(Debug, Clone, PartialEq)]
pub struct InboundTrunkInfo {
    pub id: String,
    pub name: String,
    pub metadata: String,
    pub numbers: Vec<String>,
    pub allowed_addresses: Vec<String>,
    pub auth_username: String,
}

/// A trunk calls are placed through: the provider's SIP host and the numbers it lets us call from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboundTrunk {
    pub name: String,
    pub metadata: String,
    /// The provider's SIP host, `host[:port]`.
    pub address: String,
    pub numbers: Vec<String>,
    pub auth: Option<SipAuth>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboundTrunkInfo {
    pub id: String,
    pub name: String,
    pub metadata: String,
    pub address: String,
    pub numbers: Vec<String>,
}

/// A dispatch rule that puts each caller of `trunk_ids` in a new room of its own named
/// `<room_prefix>…` (LiveKit's "individual" rule).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DispatchRule {
    pub name: String,
    pub metadata: String,
    pub trunk_ids: Vec<String>,
    pub room_prefix: String,
    /// Attributes the SIP participant gets.
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DispatchRuleInfo {
    pub id: String,
    pub name: String,
    pub metadata: String,
    pub trunk_ids: Vec<String>,
    /// The individual rule's room prefix; `None` for other kinds of rule.
    pub room_prefix: Option<String>,
}

/// A phone call to place into a room (`CreateSIPParticipant`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboundCall {
    pub trunk_id: String,
    /// The number (or SIP user) to call.
    pub to: String,
    /// The caller number shown to the callee; the trunk's first number when empty.
    pub from_number: String,
    pub room: String,
    pub identity: String,
    pub name: String,
    pub attributes: BTreeMap<String, String>,
    /// Digits to send once the call is answered (`w` waits 0.5 s).
    pub dtmf: String,
    pub ringing_timeout: Option<Duration>,
    pub max_call_duration: Option<Duration>,
    /// Answer only once the callee picked up (or failed): the error then says why.
    pub wait_until_answered: bool,
}

/// The phone participant a call created.
#[derive(Debug, Clone, PartialEq)]
pub struct SipParticipant {
    pub participant_id: String,
    pub identity: String,
    pub room: String,
    pub sip_call_id: String,
}

/// A client of one LiveKit deployment's server API. Cheap to clone.
#[derive(Clone)]
pub struct LiveKitApi {
    http: reqwest::Client,
    base: String,
    api_key: String,
    api_secret: Secret,
}

impl fmt::Debug for LiveKitApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveKitApi")
            .field("base", &self.base)
            .field("api_key", &self.api_key)
            .field("api_secret", &self.api_secret)
            .finish()
    }
}

/// How long a plain request may take; placing a call waits for the ringing on top.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the signing token lives: a request, not a session.
const TOKEN_TTL: Duration = Duration::from_secs(600);

enum Grants<'a> {
    SipAdmin,
    SipCall { room: &'a str },
    RoomAdmin { room: &'a str },
    RoomCreate,
    RoomList,
}

impl LiveKitApi {
    /// `url` is the server's URL as agents use it (`ws://`, `wss://`) or its HTTP form.
    pub fn new(url: &str, api_key: &str, api_secret: Secret) -> Result<LiveKitApi> {
        let parsed = url::Url::parse(url).map_err(|e| LiveKitApiError::Url {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let scheme = match parsed.scheme() {
            "ws" | "http" => "http",
            "wss" | "https" => "https",
            other => {
                return Err(LiveKitApiError::Url {
                    url: url.to_string(),
                    reason: format!("scheme {other} is not ws, wss, http or https"),
                })
            }
        };
        let host = parsed.host_str().ok_or_else(|| LiveKitApiError::Url {
            url: url.to_string(),
            reason: "no host".into(),
        })?;
        let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
        let path = parsed.path().trim_end_matches('/');
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| LiveKitApiError::Transport {
                method: "client",
                source: e,
            })?;
        Ok(LiveKitApi {
            http,
            base: format!("{scheme}://{host}{port}{path}"),
            api_key: api_key.to_string(),
            api_secret,
        })
    }

    fn token(&self, grants: Grants<'_>) -> Result<String> {
        let token =
            AccessToken::with_api_key(&self.api_key, self.api_secret.expose()).with_ttl(TOKEN_TTL);
        let token = match grants {
            Grants::SipAdmin => token.with_sip_grants(SIPGrants {
                admin: true,
                ..Default::default()
            }),
            Grants::SipCall { room } => token
                .with_sip_grants(SIPGrants {
                    call: true,
                    ..Default::default()
                })
                .with_grants(VideoGrants {
                    room_admin: true,
                    room: room.to_string(),
                    ..Default::default()
                }),
            Grants::RoomAdmin { room } => token.with_grants(VideoGrants {
                room_admin: true,
                room: room.to_string(),
                ..Default::default()
            }),
            Grants::RoomCreate => token.with_grants(VideoGrants {
                room_create: true,
                ..Default::default()
            }),
            Grants::RoomList => token.with_grants(VideoGrants {
                room_list: true,
                ..Default::default()
            }),
        };
        token
            .to_jwt()
            .map_err(|e| LiveKitApiError::Token(e.to_string()))
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        service: &str,
        method: &'static str,
        grants: Grants<'_>,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp> {
        let token = self.token(grants)?;
        let url = format!("{}/twirp/livekit.{service}/{method}", self.base);
        let transport = |source| LiveKitApiError::Transport { method, source };
        let response = self
            .http
            .post(url)
            .bearer_auth(token)
            .timeout(timeout)
            .json(request)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let error: wire::TwirpError =
                serde_json::from_slice(&body).unwrap_or_else(|_| wire::TwirpError {
                    code: wire::twirp_code(status.as_u16()).into(),
                    msg: String::from_utf8_lossy(&body).chars().take(200).collect(),
                    meta: BTreeMap::new(),
                });
            return Err(LiveKitApiError::Twirp {
                method,
                status: status.as_u16(),
                code: error.code,
                message: error.msg,
                meta: error.meta,
            });
        }
        serde_json::from_slice(&body).map_err(|e| LiveKitApiError::Decode {
            method,
            reason: e.to_string(),
        })
    }

    async fn sip<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &'static str,
        request: &Req,
    ) -> Result<Resp> {
        self.call("SIP", method, Grants::SipAdmin, request, REQUEST_TIMEOUT)
            .await
    }

    /// Creates an inbound trunk; returns its id.
    pub async fn create_inbound_trunk(&self, trunk: &InboundTrunk) -> Result<String> {
        let request = wire::CreateInboundTrunk {
            trunk: wire::InboundTrunk::from(trunk),
        };
        let created: wire::InboundTrunk = self.sip("CreateSIPInboundTrunk", &request).await?;
        Ok(created.sip_trunk_id)
    }

    pub async fn list_inbound_trunks(&self) -> Result<Vec<InboundTrunkInfo>> {
        let list: wire::List<wire::InboundTrunk> = self
            .sip("ListSIPInboundTrunk", &serde_json::json!({}))
            .await?;
        Ok(list.items.into_iter().map(Into::into).collect())
    }

    pub async fn create_outbound_trunk(&self, trunk: &OutboundTrunk) -> Result<String> {
        let request = wire::CreateOutboundTrunk {
            trunk: wire::OutboundTrunk::from(trunk),
        };
        let created: wire::OutboundTrunk = self.sip("CreateSIPOutboundTrunk", &request).await?;
        Ok(created.sip_trunk_id)
    }

    pub async fn list_outbound_trunks(&self) -> Result<Vec<OutboundTrunkInfo>> {
        let list: wire::List<wire::OutboundTrunk> = self
            .sip("ListSIPOutboundTrunk", &serde_json::json!({}))
            .await?;
        Ok(list.items.into_iter().map(Into::into).collect())
    }

    /// Deletes an inbound or outbound trunk. A trunk that is already gone is not an error.
    pub async fn delete_trunk(&self, trunk_id: &str) -> Result<()> {
        let request = serde_json::json!({ "sip_trunk_id": trunk_id });
        match self
            .sip::<_, serde_json::Value>("DeleteSIPTrunk", &request)
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// Creates a dispatch rule; returns its id.
    pub async fn create_dispatch_rule(&self, rule: &DispatchRule) -> Result<String> {
        let request = wire::CreateDispatchRule {
            dispatch_rule: wire::DispatchRule::from(rule),
        };
        let created: wire::DispatchRule = self.sip("CreateSIPDispatchRule", &request).await?;
        Ok(created.sip_dispatch_rule_id)
    }

    pub async fn list_dispatch_rules(&self) -> Result<Vec<DispatchRuleInfo>> {
        let list: wire::List<wire::DispatchRule> = self
            .sip("ListSIPDispatchRule", &serde_json::json!({}))
            .await?;
        Ok(list.items.into_iter().map(Into::into).collect())
    }

    /// Deletes a dispatch rule. A rule that is already gone is not an error.
    pub async fn delete_dispatch_rule(&self, rule_id: &str) -> Result<()> {
        let request = serde_json::json!({ "sip_dispatch_rule_id": rule_id });
        match self
            .sip::<_, serde_json::Value>("DeleteSIPDispatchRule", &request)
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// Places a phone call into a room. With `wait_until_answered` this returns once the callee
    /// answered, or fails with the SIP status that ended the call
    /// ([`LiveKitApiError::sip_status_code`]).
    pub async fn create_sip_participant(&self, call: &OutboundCall) -> Result<SipParticipant> {
        let request = wire::CreateSipParticipant::from(call);
        let ringing = call.ringing_timeout.unwrap_or(Duration::from_secs(30));
        let created: wire::SipParticipantInfo = self
            .call(
                "SIP",
                "CreateSIPParticipant",
                Grants::SipCall { room: &call.room },
                &request,
                REQUEST_TIMEOUT + ringing,
            )
            .await?;
        Ok(SipParticipant {
            participant_id: created.participant_id,
            identity: created.participant_identity,
            room: created.room_name,
            sip_call_id: created.sip_call_id,
        })
    }

    /// Transfers a phone participant to `transfer_to` (`tel:+…` or `sip:…`) with a SIP REFER;
    /// returns once the transfer was accepted or failed.
    pub async fn transfer_sip_participant(
        &self,
        room: &str,
        identity: &str,
        transfer_to: &str,
        ringing_timeout: Option<Duration>,
    ) -> Result<()> {
        let ringing = ringing_timeout.unwrap_or(Duration::from_secs(30));
        let request = wire::TransferSipParticipant {
            participant_identity: identity,
            room_name: room,
            transfer_to,
            ringing_timeout: ringing_timeout.map(wire::duration),
        };
        self.call::<_, serde_json::Value>(
            "SIP",
            "TransferSIPParticipant",
            Grants::SipCall { room },
            &request,
            REQUEST_TIMEOUT + ringing,
        )
        .await
        .map(drop)
    }

    /// Removes a participant from a room (for a phone participant: hangs the call up). One that is
    /// already gone is not an error.
    pub async fn remove_participant(&self, room: &str, identity: &str) -> Result<()> {
        let request = serde_json::json!({ "room": room, "identity": identity });
        match self
            .call::<_, serde_json::Value>(
                "RoomService",
                "RemoveParticipant",
                Grants::RoomAdmin { room },
                &request,
                REQUEST_TIMEOUT,
            )
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// Deletes a room, disconnecting everyone in it. A room that is already gone is not an error.
    pub async fn delete_room(&self, room: &str) -> Result<()> {
        let request = serde_json::json!({ "room": room });
        match self
            .call::<_, serde_json::Value>(
                "RoomService",
                "DeleteRoom",
                Grants::RoomCreate,
                &request,
                REQUEST_TIMEOUT,
            )
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// The names of the rooms that exist now.
    pub async fn list_rooms(&self) -> Result<Vec<String>> {
        let list: wire::RoomList = self
            .call(
                "RoomService",
                "ListRooms",
                Grants::RoomList,
                &serde_json::json!({}),
                REQUEST_TIMEOUT,
            )
            .await?;
        Ok(list.rooms.into_iter().map(|r| r.name).collect())
    }

    /// The identities of the participants in a room (empty when there is no such room).
    pub async fn list_participants(&self, room: &str) -> Result<Vec<String>> {
        let request = serde_json::json!({ "room": room });
        let list: wire::ParticipantList = match self
            .call(
                "RoomService",
                "ListParticipants",
                Grants::RoomAdmin { room },
                &request,
                REQUEST_TIMEOUT,
            )
            .await
        {
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            other => other?,
        };
        Ok(list.participants.into_iter().map(|p| p.identity).collect())
    }

    /// Asks LiveKit to hand `room` to a worker registered as `agent_name` (LiveKit's own agent
    /// dispatch; the room is created if it does not exist). Returns the dispatch.
    pub async fn create_dispatch(
        &self,
        room: &str,
        agent_name: &str,
        metadata: &str,
    ) -> Result<AgentDispatchInfo> {
        let request = serde_json::json!({
            "room": room, "agent_name": agent_name, "metadata": metadata,
        });
        let dispatch: wire::AgentDispatch = self
            .call(
                "AgentDispatchService",
                "CreateDispatch",
                Grants::RoomAdmin { room },
                &request,
                REQUEST_TIMEOUT,
            )
            .await?;
        Ok(dispatch.into())
    }

    /// The agent dispatches of `room`.
    pub async fn list_dispatches(&self, room: &str) -> Result<Vec<AgentDispatchInfo>> {
        let request = serde_json::json!({ "room": room });
        let list: wire::AgentDispatchList = self
            .call(
                "AgentDispatchService",
                "ListDispatch",
                Grants::RoomAdmin { room },
                &request,
                REQUEST_TIMEOUT,
            )
            .await?;
        Ok(list.agent_dispatches.into_iter().map(Into::into).collect())
    }
}
