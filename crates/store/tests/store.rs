//! The storage suite. Every test runs on every backend (`testing::test_stores`): SQLite always,
//! PostgreSQL when `CALLFLEET_TEST_POSTGRES_URL` is set (always under CI).

use callfleet_core::config::BotConfig;
use callfleet_core::domain::{
    CallDirection, CallRecord, CallStatus, DocumentStatus, Evidence, Outcome, Speaker, Turn,
    TurnMetrics,
};
use callfleet_core::secret::Secret;
use callfleet_store::testing::test_stores;
use callfleet_store::{
    BotPatch, CallFilter, NewBot, NewCompany, NewKnowledgeDocument, NewWebhookEndpoint, Store,
    StoreError, TrunkSettings, WebhookPatch,
};
use std::collections::BTreeMap;

const CONFIG: &str = r#"
language: en
greeting: "Hello!"
fallback: "Sorry?"
scenarios:
  - name: booking
    trigger_keywords: [book]
    collect_fields:
      - {name: phone, prompt: "Your number?"}
    on_complete: booking_created
"#;

async fn company(store: &Store, name: &str) -> String {
    store
        .create_company(NewCompany {
            name: name.into(),
            timezone: "Europe/Moscow".into(),
            max_concurrent_calls: 5,
        })
        .await
        .unwrap()
        .id
}

async fn bot(store: &Store, company_id: &str) -> String {
    let config = BotConfig::parse_any(CONFIG).unwrap();
    let new = NewBot {
        company_id,
        name: "Front desk",
        config: &config,
        source_text: CONFIG,
        source_format: "yaml",
    };
    store.create_bot(new).await.unwrap().0.id
}

fn call(id: &str, company_id: &str, bot_id: &str, started_at: i64) -> CallRecord {
    CallRecord {
        id: id.into(),
        company_id: company_id.into(),
        bot_id: bot_id.into(),
        bot_config_version: 1,
        direction: CallDirection::Inbound,
        status: CallStatus::Completed,
        from_number: Some("+79161234567".into()),
        to_number: Some("+74950000000".into()),
        room: Some("room-1".into()),
        started_at,
        ended_at: Some(started_at + 65_000),
        language: Some("ru".into()),
        transcript: vec![
            Turn {
                speaker: Speaker::Bot,
                text: "Hello!".into(),
                at_ms: 0,
                interrupted: false,
            },
            Turn {
                speaker: Speaker::User,
                text: "I want to book".into(),
                at_ms: 1200,
                interrupted: false,
            },
        ],
        fields: BTreeMap::from([("phone".to_string(), "+79161234567".to_string())]),
        outcome: Some(Outcome {
            kind: "BOOKING".into(),
            evidence: vec![Evidence::ScenarioCompleted {
                turn: 3,
                scenario: "booking".into(),
                event: None,
            }],
        }),
        summary: None,
        metrics: vec![TurnMetrics {
            turn: 1,
            voice_to_voice_ms: Some(480),
            ..Default::default()
        }],
    }
}

async fn each_backend<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // The TestDb stays here: it owns the SQLite temp dir, which must outlive the test.
    for db in test_stores().await {
        test(db.store.clone()).await;
    }
}

#[tokio::test]
async fn companies_round_trip_and_cascade() {
    each_backend(|db| async move {
        let s = &db;
        let id = company(s, "Salon Elegant").await;
        let got = s.get_company(&id).await.unwrap();
        assert_eq!(
            (
                got.name.as_str(),
                got.timezone.as_str(),
                got.max_concurrent_calls
            ),
            ("Salon Elegant", "Europe/Moscow", 5)
        );
        let b = bot(s, &id).await;
        assert_eq!(s.list_companies().await.unwrap().len(), 1);
        s.delete_company(&id).await.unwrap();
        assert!(
            matches!(s.get_company(&id).await, Err(StoreError::NotFound)),
            "{:?}",
            db.backend()
        );
        assert!(
            matches!(s.get_bot(&b).await, Err(StoreError::NotFound)),
            "bots go with their company"
        );
    })
    .await;
}

#[tokio::test]
async fn api_keys_are_hashed_found_and_revoked() {
    each_backend(|db| async move {
        let s = &db;
        let c = company(s, "A").await;
        let created = s.create_api_key(&c, "ci").await.unwrap();
        assert!(created.secret.starts_with("cfk_") && created.secret.len() == 44);
        assert!(
            !format!("{created:?}").contains(&created.secret),
            "Debug must not show the key"
        );
        let owner = s
            .find_api_key(&created.secret)
            .await
            .unwrap()
            .expect("key is found");
        assert_eq!(owner.company_id, c);
        assert_eq!(s.find_api_key("cfk_wrong").await.unwrap(), None);
        let listed = s.list_api_keys(&c).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].prefix, &created.secret[..10]);
        s.revoke_api_key(&c, &created.key.id).await.unwrap();
        assert_eq!(
            s.find_api_key(&created.secret).await.unwrap(),
            None,
            "revoked keys stop working"
        );
        let other = company(s, "B").await;
        assert!(matches!(
            s.revoke_api_key(&other, &created.key.id).await,
            Err(StoreError::NotFound)
        ));
    })
    .await;
}

#[tokio::test]
async fn bot_configs_are_versioned() {
    each_backend(|db| async move {
        let s = &db;
        let c = company(s, "A").await;
        let b = bot(s, &c).await;
        let v1 = s.get_bot_version(&b, None).await.unwrap();
        assert_eq!(v1.version, 1);
        assert_eq!(v1.source_text, CONFIG);
        let mut config = v1.bot_config().unwrap();
        config.greeting = "Good morning!".into();
        let v2 = s.put_bot_config(&b, &config, "{}", "json").await.unwrap();
        assert_eq!(v2.version, 2);
        assert_eq!(s.get_bot(&b).await.unwrap().current_version, 2);
        assert_eq!(
            s.get_bot_version(&b, None)
                .await
                .unwrap()
                .bot_config()
                .unwrap()
                .greeting,
            "Good morning!"
        );
        assert_eq!(
            s.get_bot_version(&b, Some(1))
                .await
                .unwrap()
                .bot_config()
                .unwrap()
                .greeting,
            "Hello!"
        );
        let versions: Vec<i64> = s
            .list_bot_versions(&b)
            .await
            .unwrap()
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(versions, [2, 1]);
        assert!(matches!(
            s.put_bot_config("bot_missing", &config, "", "json").await,
            Err(StoreError::NotFound)
        ));

        let renamed = s
            .update_bot(
                &b,
                BotPatch {
                    name: Some("Night desk".into()),
                    status: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (renamed.name.as_str(), renamed.status.as_str()),
            ("Night desk", "active")
        );
        assert_eq!(s.list_bots(&c).await.unwrap().len(), 1);
        s.delete_bot(&b).await.unwrap();
        assert!(matches!(s.get_bot(&b).await, Err(StoreError::NotFound)));
        assert!(s.list_bots(&c).await.unwrap().is_empty());
        assert!(matches!(s.delete_bot(&b).await, Err(StoreError::NotFound)));
    })
    .await;
}

#[tokio::test]
async fn a_number_belongs_to_one_company_and_routes_to_one_of_its_bots() {
    each_backend(|db| async move {
        let s = &db;
        let c = company(s, "A").await;
        let other = company(s, "B").await;
        let (b1, b2) = (bot(s, &c).await, bot(s, &c).await);
        s.add_phone_number(&c, &b1, "+74950000000").await.unwrap();
        for taken in [
            s.add_phone_number(&c, &b2, "+74950000000").await,
            s.add_company_number(&other, "+74950000000").await,
        ] {
            let err = taken.unwrap_err();
            assert!(
                matches!(&err, StoreError::Conflict(m) if m.contains("+74950000000")),
                "{err:?}"
            );
        }
        assert_eq!(
            s.find_phone_number("+74950000000").await.unwrap().bot_id,
            Some(b1.clone())
        );
        assert_eq!(s.list_phone_numbers(&b1).await.unwrap().len(), 1);
        // Another company can neither route nor read it.
        let other_bot = bot(s, &other).await;
        assert!(matches!(
            s.assign_phone_number(&other, &other_bot, "+74950000000")
                .await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            s.company_number(&other, "+74950000000").await,
            Err(StoreError::NotFound)
        ));
        // Routed to b1, so not to b2 until b1 lets it go.
        assert!(matches!(
            s.assign_phone_number(&c, &b2, "+74950000000").await,
            Err(StoreError::Conflict(_))
        ));
        s.delete_bot(&b1).await.unwrap();
        let kept = s.company_number(&c, "+74950000000").await.unwrap();
        assert_eq!(
            kept.bot_id, None,
            "a deleted bot releases its numbers to the company"
        );
        s.assign_phone_number(&c, &b2, "+74950000000")
            .await
            .unwrap();
        s.assign_phone_number(&c, &b2, "+74950000000")
            .await
            .expect("assigning again is done");

        let trunk = TrunkSettings {
            allowed_addresses: vec!["203.0.113.0/24".into()],
            auth_username: Some("acme".into()),
            auth_password: Some(Secret::new("pw")),
            outbound_address: Some("sip.example.net".into()),
            outbound_username: None,
            outbound_password: None,
        };
        let saved = s
            .set_trunk_settings(&c, "+74950000000", &trunk)
            .await
            .unwrap();
        assert_eq!(saved.trunk, trunk);
        assert!(matches!(
            s.set_trunk_settings(&other, "+74950000000", &trunk).await,
            Err(StoreError::NotFound)
        ));

        s.remove_phone_number(&b2, "+74950000000").await.unwrap();
        assert_eq!(
            s.find_phone_number("+74950000000").await.unwrap().bot_id,
            None
        );
        assert_eq!(s.list_company_numbers(&c).await.unwrap().len(), 1);
        s.remove_company_number(&c, "+74950000000").await.unwrap();
        assert!(matches!(
            s.find_phone_number("+74950000000").await,
            Err(StoreError::NotFound)
        ));
        s.add_company_number(&other, "+74950000000")
            .await
            .expect("a number taken back is free for anyone");
    })
    .await;
}

#[tokio::test]
async fn calls_round_trip_filter_and_page() {
    each_backend(|db| async move {
        let s = &db;
        let c = company(s, "A").await;
        let other = company(s, "B").await;
        let b = bot(s, &c).await;
        let full = call("call_1", &c, &b, 1_700_000_000_000);
        s.upsert_call(&full).await.unwrap();
        assert_eq!(
            s.get_call("call_1").await.unwrap(),
            full,
            "{:?}",
            db.backend()
        );
        s.upsert_call(&full).await.expect("storing twice replaces");

        for i in 2..=25 {
            let mut c2 = call(
                &format!("call_{i:02}"),
                &c,
                &b,
                1_700_000_000_000 + i * 1000,
            );
            if i % 2 == 0 {
                c2.outcome = Some(Outcome {
                    kind: "LEAD".into(),
                    evidence: vec![],
                });
                c2.from_number = Some("+15550001111".into());
            }
            s.upsert_call(&c2).await.unwrap();
        }
        s.upsert_call(&call("call_other", &other, "bot_x", 1_700_000_100_000))
            .await
            .unwrap();

        let mine = CallFilter {
            company_id: Some(c.clone()),
            ..Default::default()
        };
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = s
                .list_calls(&mine, cursor.as_deref(), 10)
                .await
                .unwrap()
                .unwrap();
            seen.extend(page.calls.iter().map(|c| c.started_at));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 25, "every call of the company, once");
        assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first");

        let leads = CallFilter {
            outcome: Some("LEAD".into()),
            ..mine.clone()
        };
        assert_eq!(
            s.list_calls(&leads, None, 100)
                .await
                .unwrap()
                .unwrap()
                .calls
                .len(),
            12
        );
        let by_phone = CallFilter {
            phone: Some("+15550001111".into()),
            ..mine.clone()
        };
        assert_eq!(
            s.list_calls(&by_phone, None, 100)
                .await
                .unwrap()
                .unwrap()
                .calls
                .len(),
            12
        );
        let window = CallFilter {
            started_from: Some(1_700_000_002_000),
            started_to: Some(1_700_000_005_000),
            ..mine.clone()
        };
        let ids: Vec<String> = s
            .list_calls(&window, None, 100)
            .await
            .unwrap()
            .unwrap()
            .calls
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, ["call_04", "call_03", "call_02"]);
        let first = &s.list_calls(&mine, None, 1).await.unwrap().unwrap().calls[0];
        assert_eq!(
            (first.duration_sec, first.direction.as_str()),
            (Some(65), "inbound")
        );
        assert!(s
            .list_calls(&mine, Some("garbage"), 10)
            .await
            .unwrap()
            .is_err());
    })
    .await;
}

#[tokio::test]
async fn webhooks_and_deliveries() {
    each_backend(|db| async move {
        let s = &db;
        let c = company(s, "A").await;
        let new = NewWebhookEndpoint {
            url: "https://example.com/hook".into(),
            description: None,
            events: vec!["call.completed".into()],
        };
        let hook = s.create_webhook(&c, new).await.unwrap();
        assert!(hook.secret.starts_with("whsec_"));
        assert!(!format!("{hook:?}").contains(&hook.secret));
        assert!(!serde_json::to_string(&hook).unwrap().contains(&hook.secret));
        let patch = WebhookPatch {
            enabled: Some(false),
            events: Some(vec![]),
            ..Default::default()
        };
        let updated = s.update_webhook(&hook.id, patch).await.unwrap();
        assert!(!updated.enabled && updated.events.is_empty());
        assert_eq!(updated.url, "https://example.com/hook");
        assert_eq!(s.get_webhook(&hook.id).await.unwrap().secret, hook.secret);

        let payload = serde_json::json!({"call_id": "call_1"});
        let d = s
            .enqueue_delivery(
                &hook,
                "call.completed",
                Some("call_1"),
                &payload,
                "call_1:call.completed",
            )
            .await
            .unwrap();
        assert_eq!(
            (d.status.as_str(), d.attempts, &d.payload),
            ("pending", 0, &payload)
        );
        let again = s
            .enqueue_delivery(
                &hook,
                "call.completed",
                Some("call_1"),
                &payload,
                "call_1:call.completed",
            )
            .await;
        assert!(
            matches!(again, Err(StoreError::Conflict(_))),
            "idempotency key holds"
        );
        assert_eq!(s.list_deliveries(&hook.id, 10).await.unwrap().len(), 1);

        s.delete_webhook(&hook.id).await.unwrap();
        assert!(s.list_webhooks(&c).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn knowledge_documents_track_progress() {
    each_backend(|db| async move {
        let s = &db;
        let c = company(s, "A").await;
        let b = bot(s, &c).await;
        let new = NewKnowledgeDocument {
            bot_id: &b,
            company_id: &c,
            filename: "prices.pdf",
            content_type: "application/pdf",
            size_bytes: 1024,
            sha256: "ab",
        };
        let doc = s.create_knowledge_document(new).await.unwrap();
        assert_eq!(doc.status.as_str(), "pending");
        let unfinished = |s: &Store| {
            let s = s.clone();
            async move {
                s.list_unfinished_knowledge_documents()
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|d| d.id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(unfinished(s).await, std::slice::from_ref(&doc.id));
        s.update_knowledge_progress(&doc.id, DocumentStatus::Indexing, Some(3), 10, 4, None)
            .await
            .unwrap();
        assert_eq!(unfinished(s).await, std::slice::from_ref(&doc.id));
        let got = s.get_knowledge_document(&doc.id).await.unwrap();
        assert_eq!(
            (
                got.status.as_str(),
                got.pages,
                got.chunks_total,
                got.chunks_done
            ),
            ("indexing", Some(3), 10, 4)
        );
        s.update_knowledge_progress(
            &doc.id,
            DocumentStatus::Failed,
            None,
            10,
            4,
            Some("encrypted PDF"),
        )
        .await
        .unwrap();
        let got = s.get_knowledge_document(&doc.id).await.unwrap();
        assert_eq!(
            (got.pages, got.error.as_deref()),
            (Some(3), Some("encrypted PDF"))
        );
        assert!(unfinished(s).await.is_empty());
        assert_eq!(s.list_knowledge_documents(&b).await.unwrap().len(), 1);
        assert_eq!(s.clear_knowledge_documents(&b).await.unwrap(), 1);
        assert!(matches!(
            s.get_knowledge_document(&doc.id).await,
            Err(StoreError::NotFound)
        ));
    })
    .await;
}

#[tokio::test]
async fn migrations_are_idempotent() {
    each_backend(|db| async move {
        db.migrate().await.expect("second run is a no-op");
        db.ping().await.unwrap();
    })
    .await;
}

/// An outbound call's life as its dialer stores it: ringing, then in progress or ended with why,
/// the rest of the record untouched; a call over stays over.
#[tokio::test]
async fn a_dialed_call_moves_from_ringing_to_its_end() {
    each_backend(|db| async move {
        let s = &db;
        let c = company(s, "A").await;
        let b = bot(s, &c).await;
        let mut ringing = call("call_out", &c, &b, 1_700_000_000_000);
        ringing.direction = CallDirection::Outbound;
        ringing.status = CallStatus::Ringing;
        ringing.ended_at = None;
        s.upsert_call(&ringing).await.unwrap();
        let busy = Outcome {
            kind: "BUSY".into(),
            evidence: vec![Evidence::note("the outbound call ended with SIP 486")],
        };
        assert!(s
            .end_call("call_out", CallStatus::NoAnswer, &busy, 1_700_000_004_000)
            .await
            .unwrap());
        let ended = s.get_call("call_out").await.unwrap();
        assert_eq!(ended.status, CallStatus::NoAnswer, "{:?}", db.backend());
        assert_eq!(ended.outcome.as_ref(), Some(&busy));
        assert_eq!(ended.duration_sec(), Some(4));
        assert_eq!(
            ended.transcript, ringing.transcript,
            "the rest is as stored"
        );
        assert!(
            !s.set_open_call_status("call_out", CallStatus::InProgress)
                .await
                .unwrap(),
            "a call that is over stays over"
        );
        assert!(!s
            .end_call("call_missing", CallStatus::Failed, &busy, 0)
            .await
            .unwrap());

        let mut answered = ringing.clone();
        answered.id = "call_answered".into();
        s.upsert_call(&answered).await.unwrap();
        assert!(s
            .set_open_call_status("call_answered", CallStatus::InProgress)
            .await
            .unwrap());
        assert_eq!(
            s.get_call("call_answered").await.unwrap().status,
            CallStatus::InProgress
        );
    })
    .await;
}
