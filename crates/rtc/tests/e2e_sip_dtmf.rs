//! Keypad digits both ways between this participant and a phone, through a real livekit-sip
//! (testkit's `SipStack`; binaries from `scripts/sip-test-env.sh`) with sipp + `RtpPhone` as the
//! phone: a key pressed on the phone (RFC 4733) arrives as `RoomEvent::Dtmf`, and
//! `Room::send_dtmf` reaches the phone as RFC 4733 events. With `CI` set a missing binary fails
//! the test; locally it prints a note and returns.

use callfleet_core::secret::Secret;
use callfleet_livekit_admin::{DispatchRule, InboundTrunk, LiveKitApi};
use callfleet_rtc::{participant_token, AudioFrame, Room, RoomEvent, RoomOptions};
use callfleet_testkit::sip::{
    free_udp_tcp_port, scenario, RtpPhone, SipBinaries, SipStack, SipStackOptions, Sipp,
};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keypad_digits_cross_between_the_room_and_the_phone() {
    let bins = match SipBinaries::from_env() {
        Ok(bins) => bins,
        Err(missing) if std::env::var_os("CI").is_some() => panic!("{missing}"),
        Err(missing) => return eprintln!("note: skipping SIP test: {missing}"),
    };
    let stack = SipStack::start(&bins, SipStackOptions::default()).await;
    let api = LiveKitApi::new(
        &stack.ws_url,
        &stack.api_key,
        Secret::new(stack.api_secret.clone()),
    )
    .unwrap();
    let trunk_id = api
        .create_inbound_trunk(&InboundTrunk {
            name: "dtmf".into(),
            numbers: vec!["+15550400".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    // A fixed room for the caller (no randomness), so this participant can be there first.
    api.create_dispatch_rule(&DispatchRule {
        name: "dtmf".into(),
        trunk_ids: vec![trunk_id],
        room_prefix: "dtmf-".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    let phone = RtpPhone::bind().await;
    let _sipp = Sipp::new(
        &bins,
        &scenario("caller_waits"),
        stack.sip_port,
        free_udp_tcp_port(),
        "+15550400",
    )
    .set("caller", "+15550499")
    .set("rtp_port", &phone.port.to_string())
    .spawn();

    // Find the caller's room, then join it and speak (livekit-sip answers once it hears us).
    let mut room_name = None;
    for _ in 0..100 {
        if let Some(name) = rooms_with_prefix(&api, "dtmf-").await.into_iter().next() {
            room_name = Some(name);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let room_name = room_name.unwrap_or_else(|| {
        panic!(
            "the call made no room:\n{}",
            stack.log_tail("livekit-sip", 30)
        )
    });
    let token = participant_token(&stack.api_key, &stack.api_secret, &room_name, "keypad").unwrap();
    let (room, mut events) = Room::connect(&stack.ws_url, &token, RoomOptions::default())
        .await
        .expect("joined");
    let track = room
        .publish_audio("voice", 48_000)
        .await
        .expect("published");
    let feeder = tokio::spawn(async move {
        loop {
            track.push(&AudioFrame::new(vec![0; 4_800], 48_000));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    // The phone presses 7 once answered (it speaks once RTP reached it).
    for _ in 0..200 {
        if phone.packets() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        phone.packets() > 0,
        "the call was never answered:\n{}",
        stack.log_tail("livekit-sip", 30)
    );
    phone.press("7").await;
    let digit = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            if let RoomEvent::Dtmf { digit, code, .. } = event {
                return Some((digit, code));
            }
        }
        None
    })
    .await
    .expect("the phone's key reached the room");
    assert_eq!(digit, Some(("7".to_string(), 7)));

    // And back: the room presses 4 and # for the phone.
    room.send_dtmf("4#").await.unwrap();
    for _ in 0..100 {
        if phone.events().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        phone.events(),
        vec![4, 11],
        "{}",
        stack.log_tail("livekit-sip", 30)
    );
    feeder.abort();
    room.leave().await;
}

async fn rooms_with_prefix(api: &LiveKitApi, prefix: &str) -> Vec<String> {
    let rooms = api.list_rooms().await.unwrap_or_default();
    rooms
        .into_iter()
        .filter(|r| r.starts_with(prefix))
        .collect()
}
