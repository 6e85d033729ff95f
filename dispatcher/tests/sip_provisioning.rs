//! Phone numbers provisioned in a real LiveKit SIP (livekit-server + livekit-sip started per test
//! by testkit's `SipStack`; binaries from `scripts/sip-test-env.sh`). With `CI` set a missing
//! binary fails the test; locally it prints a note and returns.

use callfleet_core::secret::Secret;
use callfleet_core::BotConfig;
use callfleet_dispatcher::{SipProvisioner, SIP_ROOM_PREFIX};
use callfleet_livekit_admin::{InboundTrunk, LiveKitApi};
use callfleet_store::testing::sqlite;
use callfleet_store::{NewBot, NewCompany, Store, TrunkSettings};
use callfleet_testkit::sip::{SipBinaries, SipStack, SipStackOptions};

const CONFIG: &str = "language: en\ngreeting: Hi\nfallback: Sorry\n";

async fn company_with_bot(store: &Store, name: &str) -> (String, String) {
    let company = store
        .create_company(NewCompany {
            name: name.into(),
            timezone: "UTC".into(),
            max_concurrent_calls: 10,
        })
        .await
        .unwrap();
    let config = BotConfig::parse_any(CONFIG).unwrap();
    let (bot, _) = store
        .create_bot(NewBot {
            company_id: &company.id,
            name: "bot",
            config: &config,
            source_text: CONFIG,
            source_format: "yaml",
        })
        .await
        .unwrap();
    (company.id, bot.id)
}

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

/// (trunk ids, rule ids, outbound ids) holding `number`.
async fn objects_for(
    api: &LiveKitApi,
    number: &str,
) -> (Vec<String>, Vec<(String, Vec<String>)>, Vec<String>) {
    let trunks: Vec<String> = api
        .list_inbound_trunks()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.numbers.iter().any(|n| n == number))
        .map(|t| t.id)
        .collect();
    let rules = api
        .list_dispatch_rules()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.trunk_ids.iter().any(|id| trunks.contains(id)))
        .map(|r| {
            assert_eq!(r.room_prefix.as_deref(), Some(SIP_ROOM_PREFIX));
            (r.id, r.trunk_ids)
        })
        .collect();
    let outbound = api
        .list_outbound_trunks()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.numbers.iter().any(|n| n == number))
        .map(|t| t.id)
        .collect();
    (trunks, rules, outbound)
}

#[tokio::test]
async fn numbers_are_provisioned_idempotently_and_reconciled() {
    let Some(bins) = binaries() else { return };
    let stack = SipStack::start(&bins, SipStackOptions::default()).await;
    let db = sqlite().await;
    let store = db.store.clone();
    let api = LiveKitApi::new(
        &stack.ws_url,
        &stack.api_key,
        Secret::new(stack.api_secret.clone()),
    )
    .unwrap();
    let sip = SipProvisioner::new(
        api.clone(),
        store.clone(),
        Secret::new(stack.api_secret.clone()),
    );
    let (company, bot) = company_with_bot(&store, "A").await;
    let number = "+15550100";

    // A number the company has but routes nowhere: nothing in LiveKit.
    store.add_company_number(&company, number).await.unwrap();
    assert!(!sip.sync_number(number).await.unwrap());
    assert_eq!(objects_for(&api, number).await, (vec![], vec![], vec![]));

    // Routed: one trunk, one rule for it; syncing again changes nothing.
    store
        .assign_phone_number(&company, &bot, number)
        .await
        .unwrap();
    assert!(sip.sync_number(number).await.unwrap());
    let (trunks, rules, outbound) = objects_for(&api, number).await;
    assert_eq!((trunks.len(), rules.len(), outbound.len()), (1, 1, 0));
    assert_eq!(rules[0].1, trunks.clone());
    assert!(
        !sip.sync_number(number).await.unwrap(),
        "already as it should be"
    );
    assert_eq!(
        objects_for(&api, number).await,
        (trunks.clone(), rules.clone(), vec![])
    );

    // New trunk settings (a password too) remake it; the provider host adds an outbound trunk.
    let settings = TrunkSettings {
        allowed_addresses: vec!["127.0.0.1/32".into()],
        auth_username: Some("acme".into()),
        auth_password: Some(Secret::new("pw-1")),
        outbound_address: Some("127.0.0.1:5999".into()),
        outbound_username: None,
        outbound_password: None,
    };
    store
        .set_trunk_settings(&company, number, &settings)
        .await
        .unwrap();
    assert!(sip.sync_number(number).await.unwrap());
    let (trunks2, _, outbound) = objects_for(&api, number).await;
    assert_eq!((trunks2.len(), outbound.len()), (1, 1));
    assert_ne!(trunks2, trunks);
    let listed = api.list_inbound_trunks().await.unwrap();
    let trunk = listed.iter().find(|t| t.id == trunks2[0]).unwrap();
    assert_eq!(
        (trunk.auth_username.as_str(), &trunk.allowed_addresses),
        ("acme", &settings.allowed_addresses)
    );
    assert!(!trunk.metadata.contains("pw-1"), "{}", trunk.metadata);
    assert_eq!(
        sip.outbound_trunk_for(number).await.unwrap(),
        Some(outbound[0].clone())
    );
    let mut changed = settings.clone();
    changed.auth_password = Some(Secret::new("pw-2"));
    store
        .set_trunk_settings(&company, number, &changed)
        .await
        .unwrap();
    assert!(
        sip.sync_number(number).await.unwrap(),
        "a new password alone remakes the trunk"
    );

    // Reconciliation at start: a rule lost in LiveKit is made again, a second number is
    // provisioned, someone else's trunk is left alone, a number taken away is removed.
    let (_, rules, _) = objects_for(&api, number).await;
    api.delete_dispatch_rule(&rules[0].0).await.unwrap();
    let (_, bot_b) = company_with_bot(&store, "B").await;
    let company_b = store.get_bot(&bot_b).await.unwrap().company_id;
    store
        .add_phone_number(&company_b, &bot_b, "+15550200")
        .await
        .unwrap();
    let foreign = api
        .create_inbound_trunk(&InboundTrunk {
            name: "not ours".into(),
            numbers: vec!["+15550999".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let report = sip.reconcile().await.unwrap();
    assert_eq!(
        report.provisioned,
        vec![number.to_string(), "+15550200".to_string()]
    );
    assert!(report.removed.is_empty());
    let (t, r, o) = objects_for(&api, number).await;
    assert_eq!((t.len(), r.len(), o.len()), (1, 1, 1));
    assert_eq!(
        sip.reconcile().await.unwrap().provisioned,
        Vec::<String>::new()
    );

    store.remove_company_number(&company, number).await.unwrap();
    let report = sip.reconcile().await.unwrap();
    assert_eq!(report.removed, vec![number.to_string()]);
    assert_eq!(objects_for(&api, number).await, (vec![], vec![], vec![]));
    assert!(api
        .list_inbound_trunks()
        .await
        .unwrap()
        .iter()
        .any(|t| t.id == foreign));
    let (t, r, _) = objects_for(&api, "+15550200").await;
    assert_eq!((t.len(), r.len()), (1, 1));
}
