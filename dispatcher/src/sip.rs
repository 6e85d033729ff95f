//! Phone numbers provisioned in LiveKit SIP: for each number routed to a bot, one inbound trunk
//! with that number (its allowed addresses and digest credentials) and one individual dispatch
//! rule putting each caller in a room of its own (`call-…`), whose SIP participant the webhook
//! then routes to the bot by the called number; for each number with a provider host, one
//! outbound trunk to place calls from it.
//!
//! LiveKit holds what callfleet made under metadata naming the number and a fingerprint of the
//! settings it was made from (an HMAC under the API secret, so a trunk's password is never
//! readable from it). [`SipProvisioner::sync_number`] makes one number's objects match its row —
//! kept when the fingerprint matches, otherwise deleted and made again — and
//! [`SipProvisioner::reconcile`] does that for every number and removes callfleet's objects for
//! numbers that are gone; objects made by anyone else are left alone.

use callfleet_core::domain::{CallStatus, Evidence, Outcome};
use callfleet_core::secret::Secret;
use callfleet_livekit_admin::{
    DispatchRule, DispatchRuleInfo, InboundTrunk, InboundTrunkInfo, LiveKitApi, LiveKitApiError,
    OutboundTrunk, OutboundTrunkInfo, SipAuth,
};
use callfleet_store::{PhoneNumber, Store, StoreError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The room prefix of phone calls' rooms.
pub const SIP_ROOM_PREFIX: &str = "call-";

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("LiveKit SIP: {0}")]
    LiveKit(#[from] LiveKitApiError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What a reconciliation changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Numbers whose objects were (re)made.
    pub provisioned: Vec<String>,
    /// Numbers whose objects were removed (gone, or routed nowhere).
    pub removed: Vec<String>,
    /// Numbers already as they should be.
    pub unchanged: usize,
}

/// The metadata callfleet writes on what it makes.
#[derive(Serialize, Deserialize)]
struct Managed {
    callfleet: String,
    number: String,
    fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    company_id: Option<String>,
}

const MANAGED_KIND_INBOUND: &str = "inbound";
const MANAGED_KIND_RULE: &str = "rule";
const MANAGED_KIND_OUTBOUND: &str = "outbound";

fn managed(metadata: &str) -> Option<Managed> {
    serde_json::from_str::<Managed>(metadata).ok()
}

/// LiveKit's view, fetched once per sync or reconciliation.
struct Current {
    inbound: Vec<InboundTrunkInfo>,
    rules: Vec<DispatchRuleInfo>,
    outbound: Vec<OutboundTrunkInfo>,
}

pub struct SipProvisioner {
    api: LiveKitApi,
    store: Store,
    fingerprint_key: Secret,
}

impl SipProvisioner {
    /// `fingerprint_key` keys the settings fingerprints (the LiveKit API secret serves).
    pub fn new(api: LiveKitApi, store: Store, fingerprint_key: Secret) -> SipProvisioner {
        SipProvisioner {
            api,
            store,
            fingerprint_key,
        }
    }

    async fn current(&self) -> Result<Current, ProvisionError> {
        Ok(Current {
            inbound: self.api.list_inbound_trunks().await?,
            rules: self.api.list_dispatch_rules().await?,
            outbound: self.api.list_outbound_trunks().await?,
        })
    }

    /// Makes LiveKit's objects for `number` match its row (none when the number is gone).
    pub async fn sync_number(&self, number: &str) -> Result<bool, ProvisionError> {
        let row = match self.store.find_phone_number(number).await {
            Ok(row) => Some(row),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        let current = self.current().await?;
        self.sync(number, row.as_ref(), &current).await
    }

    /// Every number in the database against every object callfleet made in LiveKit.
    pub async fn reconcile(&self) -> Result<ReconcileReport, ProvisionError> {
        let rows = self.store.list_all_numbers().await?;
        let current = self.current().await?;
        let mut numbers: BTreeSet<String> = rows.iter().map(|r| r.number.clone()).collect();
        for metadata in current
            .inbound
            .iter()
            .map(|t| &t.metadata)
            .chain(current.rules.iter().map(|r| &r.metadata))
            .chain(current.outbound.iter().map(|t| &t.metadata))
        {
            if let Some(m) = managed(metadata) {
                numbers.insert(m.number);
            }
        }
        let mut report = ReconcileReport::default();
        for number in numbers {
            let row = rows.iter().find(|r| r.number == number);
            let changed = self.sync(&number, row, &current).await?;
            let wanted =
                row.is_some_and(|r| r.bot_id.is_some() || r.trunk.outbound_address.is_some());
            match (changed, wanted) {
                (false, _) => report.unchanged += 1,
                (true, true) => report.provisioned.push(number),
                (true, false) => report.removed.push(number),
            }
        }
        Ok(report)
    }

    fn fingerprint(&self, parts: &[&str]) -> String {
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(self.fingerprint_key.expose().as_bytes())
                .expect("HMAC takes a key of any length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    fn metadata(&self, kind: &str, row: &PhoneNumber, fingerprint: String) -> String {
        serde_json::to_string(&Managed {
            callfleet: kind.to_string(),
            number: row.number.clone(),
            fingerprint,
            bot_id: row.bot_id.clone(),
            company_id: Some(row.company_id.clone()),
        })
        .expect("metadata serialises")
    }

    /// Returns whether anything changed.
    async fn sync(
        &self,
        number: &str,
        row: Option<&PhoneNumber>,
        current: &Current,
    ) -> Result<bool, ProvisionError> {
        let mine = |metadata: &str, kind: &str| {
            managed(metadata).filter(|m| m.number == number && m.callfleet == kind)
        };
        let inbound: Vec<&InboundTrunkInfo> = current
            .inbound
            .iter()
            .filter(|t| mine(&t.metadata, MANAGED_KIND_INBOUND).is_some())
            .collect();
        let rules: Vec<&DispatchRuleInfo> = current
            .rules
            .iter()
            .filter(|r| {
                mine(&r.metadata, MANAGED_KIND_RULE).is_some()
                    || r.trunk_ids
                        .iter()
                        .any(|id| inbound.iter().any(|t| &t.id == id))
            })
            .collect();
        let outbound: Vec<&OutboundTrunkInfo> = current
            .outbound
            .iter()
            .filter(|t| mine(&t.metadata, MANAGED_KIND_OUTBOUND).is_some())
            .collect();
        let mut changed = false;

        // Inbound: a trunk and a rule while the number is routed to a bot.
        let routed = row.filter(|r| r.bot_id.is_some());
        let inbound_wanted = routed.map(|r| {
            let t = &r.trunk;
            let print = self.fingerprint(&[
                "inbound",
                &r.number,
                &r.company_id,
                r.bot_id.as_deref().unwrap_or(""),
                &t.allowed_addresses.join(","),
                t.auth_username.as_deref().unwrap_or(""),
                t.auth_password.as_ref().map(Secret::expose).unwrap_or(""),
            ]);
            (r, print)
        });
        let inbound_ok = match &inbound_wanted {
            Some((_, print)) => {
                inbound.len() == 1
                    && rules.len() == 1
                    && mine(&inbound[0].metadata, MANAGED_KIND_INBOUND)
                        .is_some_and(|m| &m.fingerprint == print)
                    && mine(&rules[0].metadata, MANAGED_KIND_RULE)
                        .is_some_and(|m| &m.fingerprint == print)
                    && rules[0].trunk_ids == [inbound[0].id.clone()]
            }
            None => inbound.is_empty() && rules.is_empty(),
        };
        if !inbound_ok {
            changed = true;
            for rule in &rules {
                self.api.delete_dispatch_rule(&rule.id).await?;
            }
            for trunk in &inbound {
                self.api.delete_trunk(&trunk.id).await?;
            }
            if let Some((row, print)) = inbound_wanted {
                let t = &row.trunk;
                let trunk_id = self
                    .api
                    .create_inbound_trunk(&InboundTrunk {
                        name: format!("callfleet {}", row.number),
                        metadata: self.metadata(MANAGED_KIND_INBOUND, row, print.clone()),
                        numbers: vec![row.number.clone()],
                        allowed_addresses: t.allowed_addresses.clone(),
                        auth: auth(&t.auth_username, &t.auth_password),
                    })
                    .await?;
                let bot_id = row.bot_id.clone().unwrap_or_default();
                self.api
                    .create_dispatch_rule(&DispatchRule {
                        name: format!("callfleet {}", row.number),
                        metadata: self.metadata(MANAGED_KIND_RULE, row, print),
                        trunk_ids: vec![trunk_id],
                        room_prefix: SIP_ROOM_PREFIX.to_string(),
                        attributes: [("callfleet.bot_id".to_string(), bot_id)].into(),
                    })
                    .await?;
                tracing::info!(number = %row.number, "inbound SIP trunk and dispatch rule provisioned");
            }
        }

        // Outbound: a trunk while the number has a provider host.
        let outbound_wanted = row.filter(|r| r.trunk.outbound_address.is_some()).map(|r| {
            let t = &r.trunk;
            let print = self.fingerprint(&[
                "outbound",
                &r.number,
                t.outbound_address.as_deref().unwrap_or(""),
                t.outbound_username.as_deref().unwrap_or(""),
                t.outbound_password
                    .as_ref()
                    .map(Secret::expose)
                    .unwrap_or(""),
            ]);
            (r, print)
        });
        let outbound_ok = match &outbound_wanted {
            Some((_, print)) => {
                outbound.len() == 1
                    && mine(&outbound[0].metadata, MANAGED_KIND_OUTBOUND)
                        .is_some_and(|m| &m.fingerprint == print)
            }
            None => outbound.is_empty(),
        };
        if !outbound_ok {
            changed = true;
            for trunk in &outbound {
                self.api.delete_trunk(&trunk.id).await?;
            }
            if let Some((row, print)) = outbound_wanted {
                let t = &row.trunk;
                self.api
                    .create_outbound_trunk(&OutboundTrunk {
                        name: format!("callfleet {}", row.number),
                        metadata: self.metadata(MANAGED_KIND_OUTBOUND, row, print),
                        address: t.outbound_address.clone().unwrap_or_default(),
                        numbers: vec![row.number.clone()],
                        auth: auth(&t.outbound_username, &t.outbound_password),
                    })
                    .await?;
                tracing::info!(number = %row.number, "outbound SIP trunk provisioned");
            }
        }
        Ok(changed)
    }

    /// The outbound trunk calls from `number` go through, if it has one.
    pub async fn outbound_trunk_for(&self, number: &str) -> Result<Option<String>, ProvisionError> {
        Ok(self
            .api
            .list_outbound_trunks()
            .await?
            .into_iter()
            .find(|t| {
                managed(&t.metadata)
                    .is_some_and(|m| m.number == number && m.callfleet == MANAGED_KIND_OUTBOUND)
            })
            .map(|t| t.id))
    }
}

fn auth(username: &Option<String>, password: &Option<Secret>) -> Option<SipAuth> {
    let username = username.as_ref().filter(|u| !u.is_empty())?;
    Some(SipAuth {
        username: username.clone(),
        password: password.clone().unwrap_or_default(),
    })
}

/// How an outbound call went (`POST /calls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialOutcome {
    /// The callee picked up; the bot is speaking to them.
    Answered,
    /// The callee was busy (SIP 486/600).
    Busy,
    /// Nobody picked up before the ringing timeout (or the callee declined: 480/408/487/603).
    NoAnswer,
    /// The call could not be placed (the trunk refused it, LiveKit failed).
    Failed,
}

impl DialOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DialOutcome::Answered => "answered",
            DialOutcome::Busy => "busy",
            DialOutcome::NoAnswer => "no-answer",
            DialOutcome::Failed => "failed",
        }
    }

    /// The status and outcome a call that did not connect is stored with: `BUSY`, `NO_ANSWER`
    /// or `DIAL_FAILED`, the SIP status as the evidence.
    pub fn record(self, sip_status: Option<u16>) -> (CallStatus, Outcome) {
        let (status, kind) = match self {
            DialOutcome::Answered => (CallStatus::InProgress, "ANSWERED"),
            DialOutcome::Busy => (CallStatus::NoAnswer, "BUSY"),
            DialOutcome::NoAnswer => (CallStatus::NoAnswer, "NO_ANSWER"),
            DialOutcome::Failed => (CallStatus::Failed, "DIAL_FAILED"),
        };
        let why = match (sip_status, self) {
            (Some(code), _) => format!("the outbound call ended with SIP {code}"),
            (None, DialOutcome::NoAnswer) => {
                "nobody answered before the ringing timeout".to_string()
            }
            (None, _) => "LiveKit could not place the outbound call".to_string(),
        };
        let outcome = Outcome {
            kind: kind.into(),
            evidence: vec![Evidence::note(why)],
        };
        (status, outcome)
    }

    /// From the final SIP status of a call that did not connect.
    pub fn from_sip_status(status: Option<u16>) -> DialOutcome {
        match status {
            Some(486 | 600) => DialOutcome::Busy,
            Some(408 | 480 | 487 | 603) => DialOutcome::NoAnswer,
            _ => DialOutcome::Failed,
        }
    }
}

/// A call placed by [`SipProvisioner::dial`].
#[derive(Debug, Clone)]
pub struct Dialed {
    pub call_id: String,
    pub room: String,
    pub outcome: DialOutcome,
    /// The SIP status the call ended with, when it did not connect.
    pub sip_status: Option<u16>,
}

/// Why an outbound call was not even tried.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("{0} is not one of this company's numbers with an outbound trunk")]
    NoTrunk(String),
    #[error(transparent)]
    Place(#[from] crate::PlaceError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
}

/// How long an outbound call waits for its agent to join before dialing.
const AGENT_JOIN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl SipProvisioner {
    /// Calls `to` from the company's number `from_number` for `bot_id`: the agent is placed in a
    /// new room and has joined it first (so it speaks first once the callee answers), then
    /// LiveKit dials through the number's outbound trunk and this waits for the answer or the
    /// failure (up to `ringing` plus a little). The call is stored ringing meanwhile, then in
    /// progress; one that did not connect is ended with why ([`DialOutcome::record`]) and its
    /// room deleted, so the agent leaves.
    pub async fn dial(
        &self,
        dispatcher: &crate::Dispatcher,
        bot: &callfleet_store::Bot,
        to: &str,
        from_number: &str,
        ringing: std::time::Duration,
    ) -> Result<Dialed, DialError> {
        let owned = match self.store.find_phone_number(from_number).await {
            Ok(n) => n.company_id == bot.company_id,
            Err(StoreError::NotFound) => false,
            Err(e) => return Err(ProvisionError::Store(e).into()),
        };
        let trunk = if owned {
            self.outbound_trunk_for(from_number).await?
        } else {
            None
        };
        let Some(trunk_id) = trunk else {
            return Err(DialError::NoTrunk(from_number.to_string()));
        };
        let room = format!(
            "{SIP_ROOM_PREFIX}out-{}",
            callfleet_core::ids::new_id(callfleet_core::ids::IdKind::Call)
        );
        let identity = format!("sip_{to}");
        let placement = dispatcher
            .place(crate::PlacementRequest {
                room: room.clone(),
                bot_id: bot.id.clone(),
                direction: callfleet_core::domain::CallDirection::Outbound,
                caller_identity: Some(identity.clone()),
                from_number: Some(from_number.to_string()),
                to_number: Some(to.to_string()),
            })
            .await?;
        let call_id = placement.job.call_id.clone();
        // Pollable while it rings; the agent's record replaces it when the call ends.
        let ringing_record = placement
            .job
            .record(CallStatus::Ringing, callfleet_store::now_ms());
        self.store
            .upsert_call(&ringing_record)
            .await
            .map_err(ProvisionError::Store)?;
        self.wait_for_agent(&room).await;
        let dialed = self
            .api
            .create_sip_participant(&callfleet_livekit_admin::OutboundCall {
                trunk_id,
                to: to.to_string(),
                from_number: from_number.to_string(),
                room: room.clone(),
                identity,
                name: to.to_string(),
                ringing_timeout: Some(ringing),
                wait_until_answered: true,
                ..Default::default()
            })
            .await;
        let (outcome, sip_status) = match dialed {
            Ok(_) => (DialOutcome::Answered, None),
            Err(e) => {
                let status = e.sip_status_code();
                tracing::info!(call_id = %call_id, to = %to, error = %e, "Outbound call did not connect.");
                // livekit-sip gives up ringing on its own timer: no final SIP status then.
                let gave_up = matches!(&e, callfleet_livekit_admin::LiveKitApiError::Twirp { code, .. }
                    if code == "canceled" || code == "deadline_exceeded");
                let outcome = match status {
                    None if gave_up => DialOutcome::NoAnswer,
                    status => DialOutcome::from_sip_status(status),
                };
                (outcome, status)
            }
        };
        if outcome == DialOutcome::Answered {
            self.store
                .set_open_call_status(&call_id, CallStatus::InProgress)
                .await
                .map_err(ProvisionError::Store)?;
        } else {
            // The agent only sees the callee's leg or its room close and reports NO_ANSWER;
            // post-call waits for this outcome and keeps it over that.
            let (status, why) = outcome.record(sip_status);
            self.store
                .end_call(&call_id, status, &why, callfleet_store::now_ms())
                .await
                .map_err(ProvisionError::Store)?;
            if let Err(e) = self.api.delete_room(&room).await {
                tracing::warn!(room = %room, error = %e, "Could not delete the room of a call that did not connect.");
            }
        }
        Ok(Dialed {
            call_id,
            room,
            outcome,
            sip_status,
        })
    }

    /// Waits (up to [`AGENT_JOIN_WAIT`]) for the placed agent to be in `room` before dialing:
    /// the callee then hears the bot as soon as they answer, and a call that fails at once
    /// (busy) has its room deleted with the agent in it, so the agent ends the call there and
    /// then — an agent joining after the deletion would make the room anew and wait for a
    /// callee who never comes. Past the wait the call is dialed anyway.
    async fn wait_for_agent(&self, room: &str) {
        let deadline = tokio::time::Instant::now() + AGENT_JOIN_WAIT;
        loop {
            match self.api.list_participants(room).await {
                Ok(present) if !present.is_empty() => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(room = %room, error = %e, "Could not list the room's participants.")
                }
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(room = %room, "The agent has not joined yet; dialing anyway.");
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
