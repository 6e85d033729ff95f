//! LiveKit's protojson messages (livekit_sip.proto, livekit_room.proto), only the fields callfleet
//! reads or writes. Requests use the proto field names, which protojson accepts; answers are read
//! under either spelling (proto names, or lowerCamelCase when a server emits that), default fields
//! may be absent.

use crate::{DispatchRuleInfo, InboundTrunkInfo, OutboundCall, OutboundTrunkInfo, SipAuth};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A protobuf `Duration` in protojson: seconds with an `s`.
pub(crate) fn duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}.{:03}s", d.as_secs(), d.subsec_millis())
    }
}

/// The twirp error code an HTTP status stands for, when the body is not a twirp error (a proxy's
/// page, or livekit-server's plain-text refusal of a bad token).
pub(crate) fn twirp_code(status: u16) -> &'static str {
    match status {
        400 => "invalid_argument",
        401 => "unauthenticated",
        403 => "permission_denied",
        404 => "not_found",
        408 => "deadline_exceeded",
        409 => "already_exists",
        412 => "failed_precondition",
        429 => "resource_exhausted",
        501 => "unimplemented",
        503 => "unavailable",
        _ => "unknown",
    }
}

#[derive(Deserialize)]
pub(crate) struct TwirpError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

#[derive(Deserialize)]
pub(crate) struct List<T> {
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
}

fn credentials(auth: &Option<SipAuth>) -> (String, String) {
    match auth {
        Some(a) => (a.username.clone(), a.password.expose().to_string()),
        None => (String::new(), String::new()),
    }
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
pub(crate) struct InboundTrunk {
    #[serde(alias = "sipTrunkId", skip_serializing_if = "String::is_empty")]
    pub sip_trunk_id: String,
    pub name: String,
    pub metadata: String,
    pub numbers: Vec<String>,
    #[serde(alias = "allowedAddresses")]
    pub allowed_addresses: Vec<String>,
    #[serde(alias = "authUsername")]
    pub auth_username: String,
    #[serde(alias = "authPassword", skip_serializing_if = "String::is_empty")]
    pub auth_password: String,
}

impl From<&crate::InboundTrunk> for InboundTrunk {
    fn from(t: &crate::InboundTrunk) -> Self {
        let (auth_username, auth_password) = credentials(&t.auth);
        InboundTrunk {
            sip_trunk_id: String::new(),
            name: t.name.clone(),
            metadata: t.metadata.clone(),
            numbers: t.numbers.clone(),
            allowed_addresses: t.allowed_addresses.clone(),
            auth_username,
            auth_password,
        }
    }
}

impl From<InboundTrunk> for InboundTrunkInfo {
    fn from(t: InboundTrunk) -> Self {
        InboundTrunkInfo {
            id: t.sip_trunk_id,
            name: t.name,
            metadata: t.metadata,
            numbers: t.numbers,
            allowed_addresses: t.allowed_addresses,
            auth_username: t.auth_username,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct CreateInboundTrunk {
    pub trunk: InboundTrunk,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
pub(crate) struct OutboundTrunk {
    #[serde(alias = "sipTrunkId", skip_serializing_if = "String::is_empty")]
    pub sip_trunk_id: String,
    pub name: String,
    pub metadata: String,
    pub address: String,
    pub numbers: Vec<String>,
    #[serde(alias = "authUsername")]
    pub auth_username: String,
    #[serde(alias = "authPassword", skip_serializing_if = "String::is_empty")]
    pub auth_password: String,
}

impl From<&crate::OutboundTrunk> for OutboundTrunk {
    fn from(t: &crate::OutboundTrunk) -> Self {
        let (auth_username, auth_password) = credentials(&t.auth);
        OutboundTrunk {
            sip_trunk_id: String::new(),
            name: t.name.clone(),
            metadata: t.metadata.clone(),
            address: t.address.clone(),
            numbers: t.numbers.clone(),
            auth_username,
            auth_password,
        }
    }
}

impl From<OutboundTrunk> for OutboundTrunkInfo {
    fn from(t: OutboundTrunk) -> Self {
        OutboundTrunkInfo {
            id: t.sip_trunk_id,
            name: t.name,
            metadata: t.metadata,
            address: t.address,
            numbers: t.numbers,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct CreateOutboundTrunk {
    pub trunk: OutboundTrunk,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Individual {
    #[serde(alias = "roomPrefix")]
    pub room_prefix: String,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Rule {
    #[serde(
        alias = "dispatchRuleIndividual",
        skip_serializing_if = "Option::is_none"
    )]
    pub dispatch_rule_individual: Option<Individual>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
pub(crate) struct DispatchRule {
    #[serde(alias = "sipDispatchRuleId", skip_serializing_if = "String::is_empty")]
    pub sip_dispatch_rule_id: String,
    pub rule: Option<Rule>,
    #[serde(alias = "trunkIds")]
    pub trunk_ids: Vec<String>,
    pub name: String,
    pub metadata: String,
    pub attributes: BTreeMap<String, String>,
}

impl From<&crate::DispatchRule> for DispatchRule {
    fn from(r: &crate::DispatchRule) -> Self {
        DispatchRule {
            sip_dispatch_rule_id: String::new(),
            rule: Some(Rule {
                dispatch_rule_individual: Some(Individual {
                    room_prefix: r.room_prefix.clone(),
                }),
            }),
            trunk_ids: r.trunk_ids.clone(),
            name: r.name.clone(),
            metadata: r.metadata.clone(),
            attributes: r.attributes.clone(),
        }
    }
}

impl From<DispatchRule> for DispatchRuleInfo {
    fn from(r: DispatchRule) -> Self {
        DispatchRuleInfo {
            id: r.sip_dispatch_rule_id,
            name: r.name,
            metadata: r.metadata,
            trunk_ids: r.trunk_ids,
            room_prefix: r
                .rule
                .and_then(|rule| rule.dispatch_rule_individual)
                .map(|i| i.room_prefix),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct CreateDispatchRule {
    pub dispatch_rule: DispatchRule,
}

#[derive(Serialize)]
pub(crate) struct CreateSipParticipant {
    sip_trunk_id: String,
    sip_call_to: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    sip_number: String,
    room_name: String,
    participant_identity: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    participant_name: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    participant_attributes: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    dtmf: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ringing_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_call_duration: Option<String>,
    wait_until_answered: bool,
}

impl From<&OutboundCall> for CreateSipParticipant {
    fn from(c: &OutboundCall) -> Self {
        CreateSipParticipant {
            sip_trunk_id: c.trunk_id.clone(),
            sip_call_to: c.to.clone(),
            sip_number: c.from_number.clone(),
            room_name: c.room.clone(),
            participant_identity: c.identity.clone(),
            participant_name: c.name.clone(),
            participant_attributes: c.attributes.clone(),
            dtmf: c.dtmf.clone(),
            ringing_timeout: c.ringing_timeout.map(duration),
            max_call_duration: c.max_call_duration.map(duration),
            wait_until_answered: c.wait_until_answered,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SipParticipantInfo {
    #[serde(alias = "participantId")]
    pub participant_id: String,
    #[serde(alias = "participantIdentity")]
    pub participant_identity: String,
    #[serde(alias = "roomName")]
    pub room_name: String,
    #[serde(alias = "sipCallId")]
    pub sip_call_id: String,
}

#[derive(Serialize)]
pub(crate) struct TransferSipParticipant<'a> {
    pub participant_identity: &'a str,
    pub room_name: &'a str,
    pub transfer_to: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ringing_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct Participant {
    pub identity: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct Room {
    pub name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct RoomList {
    pub rooms: Vec<Room>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ParticipantList {
    pub participants: Vec<Participant>,
}

/// `AgentDispatch` (livekit_agent_dispatch.proto), the fields callfleet reads.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct AgentDispatch {
    pub id: String,
    #[serde(alias = "agentName")]
    pub agent_name: String,
    pub room: String,
    pub metadata: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct AgentDispatchList {
    #[serde(alias = "agentDispatches")]
    pub agent_dispatches: Vec<AgentDispatch>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_protojson() {
        for (d, want) in [
            (Duration::from_secs(30), "30s"),
            (Duration::from_millis(1500), "1.500s"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(duration(d), want);
        }
    }

    #[test]
    fn a_dispatch_rule_reads_in_either_spelling() {
        for body in [
            r#"{"sip_dispatch_rule_id":"SDR_1","rule":{"dispatch_rule_individual":{"room_prefix":"call-"}},"trunk_ids":["ST_1"]}"#,
            r#"{"sipDispatchRuleId":"SDR_1","rule":{"dispatchRuleIndividual":{"roomPrefix":"call-"}},"trunkIds":["ST_1"]}"#,
        ] {
            let rule: DispatchRule = serde_json::from_str(body).expect("parses");
            let info = DispatchRuleInfo::from(rule);
            assert_eq!(info.id, "SDR_1");
            assert_eq!(info.room_prefix.as_deref(), Some("call-"));
            assert_eq!(info.trunk_ids, vec!["ST_1".to_string()]);
        }
    }
}
