//! The server API client against a real livekit-server + livekit-sip (started per test by
//! testkit's `SipStack`, binaries from `scripts/sip-test-env.sh`), with sipp as the phone.
//! With `CI` set a missing binary fails the test; locally it prints a note and returns.

use callfleet_core::secret::Secret;
use callfleet_livekit_admin::{
    DispatchRule, InboundTrunk, LiveKitApi, LiveKitApiError, OutboundTrunk, SipAuth,
};
use callfleet_testkit::sip::{
    free_udp_tcp_port, scenario, RtpPhone, SipBinaries, SipStack, SipStackOptions, Sipp,
};
use std::time::Duration;

fn binaries() -> Option<SipBinaries> {
    match SipBinaries::from_env() {
        Ok(bins) => Some(bins),
        Err(missing) if std::env::var_os("CI").is_some() => panic!("{missing}"),
        Err(missing) => {
            eprintln!("note: skipping SIP test: {missing}");
            None
        }
    }
}

fn client(stack: &SipStack) -> LiveKitApi {
    LiveKitApi::new(
        &stack.ws_url,
        &stack.api_key,
        Secret::new(stack.api_secret.clone()),
    )
    .expect("client")
}

#[tokio::test]
async fn trunks_and_dispatch_rules_round_trip_and_deletes_are_idempotent() {
    let Some(bins) = binaries() else { return };
    let stack = SipStack::start(&bins, SipStackOptions::default()).await;
    let api = client(&stack);

    let inbound = InboundTrunk {
        name: "acme +15550100".into(),
        metadata: r#"{"company_id":"cmp_1"}"#.into(),
        numbers: vec!["+15550100".into()],
        allowed_addresses: vec!["127.0.0.1/32".into()],
        auth: Some(SipAuth {
            username: "acme".into(),
            password: Secret::new("s3cret-pass"),
        }),
    };
    let trunk_id = api
        .create_inbound_trunk(&inbound)
        .await
        .expect("create inbound trunk");
    assert!(trunk_id.starts_with("ST_"), "{trunk_id}");
    let trunks = api.list_inbound_trunks().await.expect("list");
    let listed = trunks.iter().find(|t| t.id == trunk_id).expect("listed");
    assert_eq!(listed.numbers, inbound.numbers);
    assert_eq!(listed.allowed_addresses, inbound.allowed_addresses);
    assert_eq!(listed.auth_username, "acme");
    assert_eq!(listed.metadata, inbound.metadata);

    let rule = DispatchRule {
        name: "acme +15550100".into(),
        metadata: r#"{"bot_id":"bot_1"}"#.into(),
        trunk_ids: vec![trunk_id.clone()],
        room_prefix: "call-".into(),
        attributes: [("callfleet.bot_id".to_string(), "bot_1".to_string())].into(),
    };
    let rule_id = api.create_dispatch_rule(&rule).await.expect("create rule");
    let rules = api.list_dispatch_rules().await.expect("list rules");
    let listed = rules.iter().find(|r| r.id == rule_id).expect("rule listed");
    assert_eq!(listed.trunk_ids, vec![trunk_id.clone()]);
    assert_eq!(listed.room_prefix.as_deref(), Some("call-"));
    assert_eq!(listed.metadata, rule.metadata);

    let outbound = OutboundTrunk {
        name: "acme out".into(),
        metadata: String::new(),
        address: "127.0.0.1:5999".into(),
        numbers: vec!["+15550100".into()],
        auth: None,
    };
    let out_id = api
        .create_outbound_trunk(&outbound)
        .await
        .expect("create outbound");
    let outs = api.list_outbound_trunks().await.expect("list outbound");
    let listed = outs
        .iter()
        .find(|t| t.id == out_id)
        .expect("outbound listed");
    assert_eq!(listed.address, "127.0.0.1:5999");

    api.delete_dispatch_rule(&rule_id)
        .await
        .expect("delete rule");
    api.delete_dispatch_rule(&rule_id)
        .await
        .expect("deleting again is done");
    api.delete_trunk(&trunk_id).await.expect("delete trunk");
    api.delete_trunk(&trunk_id)
        .await
        .expect("deleting again is done");
    api.delete_trunk(&out_id).await.expect("delete outbound");
    assert!(api.list_dispatch_rules().await.expect("list").is_empty());
    assert!(api.list_inbound_trunks().await.expect("list").is_empty());
    assert!(api.list_outbound_trunks().await.expect("list").is_empty());
    // Rooms that never existed: already gone.
    api.delete_room("no-such-room")
        .await
        .expect("delete a missing room");
    assert!(api
        .list_participants("no-such-room")
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn a_wrong_secret_is_refused() {
    let Some(bins) = binaries() else { return };
    let stack = SipStack::start(&bins, SipStackOptions::default()).await;
    let api = LiveKitApi::new(
        &stack.ws_url,
        &stack.api_key,
        Secret::new("not-the-secret-0123456789abcdef"),
    )
    .expect("client");
    match api.list_inbound_trunks().await {
        Err(LiveKitApiError::Twirp { code, status, .. }) => {
            assert_eq!((code.as_str(), status), ("unauthenticated", 401));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A phone call to a trunk's number lands in a room of its own as `sip_…`; removing that
/// participant ends the call.
#[tokio::test]
async fn a_call_reaches_a_room_and_removing_the_participant_ends_it() {
    let Some(bins) = binaries() else { return };
    let stack = SipStack::start(&bins, SipStackOptions::default()).await;
    let api = client(&stack);
    let trunk_id = api
        .create_inbound_trunk(&InboundTrunk {
            name: "t".into(),
            numbers: vec!["+15550111".into()],
            ..Default::default()
        })
        .await
        .expect("trunk");
    api.create_dispatch_rule(&DispatchRule {
        name: "r".into(),
        trunk_ids: vec![trunk_id],
        room_prefix: "call-".into(),
        ..Default::default()
    })
    .await
    .expect("rule");

    let phone = RtpPhone::bind().await;
    let mut sipp = Sipp::new(
        &bins,
        &scenario("caller_waits"),
        stack.sip_port,
        free_udp_tcp_port(),
        "+15550111",
    )
    .set("caller", "+15550199")
    .set("rtp_port", &phone.port.to_string())
    .spawn();

    // The room is named by the rule; find it through the participant.
    let mut found = None;
    for _ in 0..100 {
        if let Some(room) = sip_room(&stack).await {
            found = Some(room);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (room, identity) = found.unwrap_or_else(|| {
        panic!(
            "no SIP participant joined:\n{}",
            stack.log_tail("livekit-sip", 40)
        )
    });
    assert!(room.starts_with("call-"), "{room}");
    assert!(identity.starts_with("sip_"), "{identity}");
    assert_eq!(
        api.list_participants(&room).await.expect("list"),
        vec![identity.clone()]
    );

    // livekit-sip answers once the room has a track for the phone to hear (an agent's); with
    // nobody else in the room the phone is still ringing, and removing its participant ends the
    // call there (486). Hanging up an answered call is the fleet SIP test's.
    assert!(
        sipp.try_wait().expect("sipp").is_none(),
        "the phone gave up early"
    );
    api.remove_participant(&room, &identity)
        .await
        .expect("remove");
    tokio::time::timeout(Duration::from_secs(20), sipp.wait())
        .await
        .expect("the phone's call ends once its participant is removed")
        .expect("sipp ran");
    assert!(api.list_participants(&room).await.expect("list").is_empty());
    api.remove_participant(&room, &identity)
        .await
        .expect("removing again is done");
}

/// The room and identity of the first SIP participant in any room of the stack.
async fn sip_room(stack: &SipStack) -> Option<(String, String)> {
    let api = client(stack);
    for room in api.list_rooms().await.ok()? {
        for identity in api.list_participants(&room).await.ok()? {
            if identity.starts_with("sip_") {
                return Some((room, identity));
            }
        }
    }
    None
}
