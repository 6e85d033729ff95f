//! The admin API over HTTP semantics (requests through the real router), on every store backend.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use callfleet_admin_api::{router, ApiConfig, ApiContext};
use callfleet_core::domain::{
    CallDirection, CallRecord, CallStatus, Evidence, Outcome, Speaker, Turn,
};
use callfleet_core::secret::Secret;
use callfleet_store::testing::test_stores;
use callfleet_store::Store;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tower::ServiceExt;

const ADMIN: &str = "admin-test-key";

const SALON: &str = r#"
bot_id: "salon-bot-1"
language: "ru"
voice_id: "russian-female-1"
greeting: "Здравствуйте! Салон красоты Элегант. Чем могу помочь?"
scenarios:
  - name: "booking"
    trigger_keywords: ["записаться", "запись", "свободно"]
    collect_fields:
      - {name: "service", prompt: "На какую услугу хотите записаться?"}
      - {name: "date", prompt: "На какой день?"}
      - {name: "time", prompt: "В какое время?"}
      - {name: "phone", prompt: "Оставьте номер для подтверждения"}
    on_complete: "booking_created"
  - name: "support"
    trigger_keywords: ["вопрос", "узнать", "сколько стоит"]
    use_knowledge_base: true
fallback: "Извините, не совсем поняла. Вы хотите записаться или у вас вопрос?"
max_turns: 20
silence_timeout_sec: 10
"#;

struct Api {
    app: axum::Router,
    store: Store,
}

struct Reply {
    status: StatusCode,
    body: Value,
    headers: axum::http::HeaderMap,
}

impl Api {
    fn new(store: Store, config: ApiConfig) -> Api {
        let config = ApiConfig {
            admin_key: Secret::new(ADMIN),
            ..config
        };
        Api {
            app: router(ApiContext::new(config, store.clone())),
            store,
        }
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, content_type);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Reply {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw(method, path, Some(key), "application/json", bytes)
            .await
    }

    async fn ok(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Value {
        let reply = self.call(method.clone(), path, key, body).await;
        assert!(
            reply.status.is_success(),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
        reply.body
    }
}

/// A company with a key and a bot with a number and a webhook.
struct Tenant {
    id: String,
    key: String,
    bot: String,
    number: String,
    webhook: String,
}

async fn tenant(api: &Api, name: &str, number: &str) -> Tenant {
    let company = api
        .ok(
            Method::POST,
            "/companies",
            ADMIN,
            Some(json!({"name": name, "timezone": "Europe/Moscow"})),
        )
        .await;
    let id = company["id"].as_str().unwrap().to_string();
    let key = api
        .ok(
            Method::POST,
            &format!("/companies/{id}/api-keys"),
            ADMIN,
            Some(json!({"name": "main"})),
        )
        .await;
    let key = key["key"].as_str().unwrap().to_string();
    let bot = api
        .ok(Method::POST, "/bots", &key, Some(json!({"config": SALON})))
        .await;
    let bot = bot["id"].as_str().unwrap().to_string();
    api.ok(
        Method::POST,
        &format!("/companies/{id}/phone-numbers"),
        ADMIN,
        Some(json!({"number": number})),
    )
    .await;
    api.ok(
        Method::POST,
        &format!("/bots/{bot}/phone-numbers"),
        &key,
        Some(json!({"number": number})),
    )
    .await;
    let hook = api
        .ok(
            Method::POST,
            "/webhooks",
            &key,
            Some(json!({"url": "https://example.com/hook"})),
        )
        .await;
    Tenant {
        id,
        key,
        bot,
        number: number.to_string(),
        webhook: hook["id"].as_str().unwrap().to_string(),
    }
}

fn call_record(id: &str, company: &str, bot: &str, started_at: i64, outcome: &str) -> CallRecord {
    CallRecord {
        id: id.into(),
        company_id: company.into(),
        bot_id: bot.into(),
        bot_config_version: 1,
        direction: CallDirection::Inbound,
        status: CallStatus::Completed,
        from_number: Some("+79161234567".into()),
        to_number: Some("+74950000001".into()),
        room: None,
        started_at,
        ended_at: Some(started_at + 30_000),
        language: Some("ru".into()),
        transcript: vec![Turn {
            speaker: Speaker::User,
            text: "Хочу записаться".into(),
            at_ms: 500,
            interrupted: false,
        }],
        fields: BTreeMap::from([("service".to_string(), "стрижка".to_string())]),
        outcome: Some(Outcome {
            kind: outcome.into(),
            evidence: vec![Evidence::QuestionAnswered { turn: 1 }],
        }),
        summary: None,
        metrics: vec![],
    }
}

#[tokio::test]
async fn keys_authenticate_and_admin_actions_need_the_admin_key() {
    for db in test_stores().await {
        let api = Api::new(db.store.clone(), ApiConfig::default());
        let missing = api
            .raw(Method::GET, "/companies", None, "application/json", vec![])
            .await;
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
        assert_eq!(missing.body["error"]["code"], "unauthorized");
        assert_eq!(missing.headers[header::WWW_AUTHENTICATE], "Bearer");
        let wrong = api
            .call(Method::GET, "/companies", "cfk_not_a_real_key", None)
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

        let a = tenant(&api, "Salon A", "+74950000001").await;
        let forbidden = api
            .call(
                Method::POST,
                "/companies",
                &a.key,
                Some(json!({"name": "Mine"})),
            )
            .await;
        assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
        assert_eq!(forbidden.body["error"]["code"], "forbidden");
        assert_eq!(
            api.call(Method::GET, "/companies", &a.key, None)
                .await
                .status,
            StatusCode::FORBIDDEN
        );
        let own = api
            .ok(Method::GET, &format!("/companies/{}", a.id), &a.key, None)
            .await;
        assert_eq!(own["name"], "Salon A");

        // A revoked key stops working at once.
        let keys = api
            .ok(
                Method::GET,
                &format!("/companies/{}/api-keys", a.id),
                ADMIN,
                None,
            )
            .await;
        assert_eq!(keys.as_array().unwrap().len(), 1);
        assert!(keys[0].get("key").is_none(), "listing never shows keys");
        let key_id = keys[0]["id"].as_str().unwrap();
        api.ok(
            Method::DELETE,
            &format!("/companies/{}/api-keys/{key_id}", a.id),
            ADMIN,
            None,
        )
        .await;
        assert_eq!(
            api.call(Method::GET, &format!("/companies/{}", a.id), &a.key, None)
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn a_company_key_never_reaches_another_company() {
    for db in test_stores().await {
        let api = Api::new(db.store.clone(), ApiConfig::default());
        let a = tenant(&api, "Salon A", "+74950000001").await;
        let b = tenant(&api, "Clinic B", "+74950000002").await;
        api.store
            .upsert_call(&call_record(
                "call_b",
                &b.id,
                &b.bot,
                1_700_000_000_000,
                "BOOKING",
            ))
            .await
            .unwrap();
        api.store
            .upsert_call(&call_record(
                "call_a",
                &a.id,
                &a.bot,
                1_700_000_000_000,
                "LEAD",
            ))
            .await
            .unwrap();

        // Every route that names B's resource answers 404 to A's key, and changes nothing.
        let attempts: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, format!("/companies/{}", b.id), None),
            (Method::GET, format!("/companies/{}/bots", b.id), None),
            (Method::GET, format!("/companies/{}/api-keys", b.id), None),
            (Method::GET, format!("/bots/{}", b.bot), None),
            (
                Method::PATCH,
                format!("/bots/{}", b.bot),
                Some(json!({"name": "hijacked"})),
            ),
            (Method::DELETE, format!("/bots/{}", b.bot), None),
            (Method::GET, format!("/bots/{}/config", b.bot), None),
            (
                Method::PUT,
                format!("/bots/{}/config", b.bot),
                Some(
                    serde_json::from_str::<Value>(
                        &serde_json::to_string(
                            &callfleet_core::config::BotConfig::parse_any(SALON)
                                .unwrap()
                                .to_json(),
                        )
                        .unwrap(),
                    )
                    .unwrap(),
                ),
            ),
            (
                Method::GET,
                format!("/bots/{}/config/versions", b.bot),
                None,
            ),
            (
                Method::GET,
                format!("/bots/{}/config/versions/1", b.bot),
                None,
            ),
            (Method::GET, format!("/bots/{}/phone-numbers", b.bot), None),
            (
                Method::POST,
                format!("/bots/{}/phone-numbers", b.bot),
                Some(json!({"number": "+74950000009"})),
            ),
            (
                Method::DELETE,
                format!("/bots/{}/phone-numbers/{}", b.bot, b.number),
                None,
            ),
            (
                Method::GET,
                format!("/companies/{}/phone-numbers", b.id),
                None,
            ),
            (
                Method::PUT,
                format!("/companies/{}/phone-numbers/{}/trunk", b.id, b.number),
                Some(json!({"allowed_addresses": ["203.0.113.9"]})),
            ),
            // B's number, named through A's own bot and company: as if nobody had it.
            (
                Method::POST,
                format!("/bots/{}/phone-numbers", a.bot),
                Some(json!({"number": b.number})),
            ),
            (
                Method::PUT,
                format!("/companies/{}/phone-numbers/{}/trunk", a.id, b.number),
                Some(json!({"allowed_addresses": ["203.0.113.9"]})),
            ),
            (Method::GET, "/calls/call_b".to_string(), None),
            (Method::GET, format!("/calls?company_id={}", b.id), None),
            (
                Method::POST,
                "/bots".to_string(),
                Some(json!({"company_id": b.id, "config": SALON})),
            ),
            (Method::GET, format!("/webhooks/{}", b.webhook), None),
            (
                Method::PATCH,
                format!("/webhooks/{}", b.webhook),
                Some(json!({"enabled": false})),
            ),
            (Method::DELETE, format!("/webhooks/{}", b.webhook), None),
            (
                Method::GET,
                format!("/webhooks/{}/deliveries", b.webhook),
                None,
            ),
            (Method::GET, format!("/webhooks?company_id={}", b.id), None),
            (
                Method::POST,
                "/webhooks".to_string(),
                Some(json!({"company_id": b.id, "url": "https://evil.example"})),
            ),
        ];
        for (method, path, body) in attempts {
            let reply = api.call(method.clone(), &path, &a.key, body).await;
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{method} {path} with A's key: {}",
                reply.body
            );
            assert_eq!(reply.body["error"]["code"], "not_found");
        }
        // B's things are untouched and B sees them.
        let bot = api
            .ok(Method::GET, &format!("/bots/{}", b.bot), &b.key, None)
            .await;
        assert_eq!(
            (bot["name"].as_str(), bot["current_version"].as_i64()),
            (Some("salon-bot-1"), Some(1))
        );
        assert_eq!(
            api.ok(
                Method::GET,
                &format!("/bots/{}/phone-numbers", b.bot),
                &b.key,
                None
            )
            .await
            .as_array()
            .unwrap()
            .len(),
            1
        );
        assert_eq!(
            api.ok(
                Method::GET,
                &format!("/webhooks/{}", b.webhook),
                &b.key,
                None
            )
            .await["enabled"],
            true
        );

        // Lists show only the caller's own things.
        let calls = api.ok(Method::GET, "/calls", &a.key, None).await;
        let ids: Vec<&str> = calls["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["call_a"]);
        let hooks = api.ok(Method::GET, "/webhooks", &a.key, None).await;
        assert_eq!(hooks.as_array().unwrap().len(), 1);
        assert_eq!(hooks[0]["id"], a.webhook.as_str());
        let all_calls = api.ok(Method::GET, "/calls", ADMIN, None).await;
        assert_eq!(
            all_calls["calls"].as_array().unwrap().len(),
            2,
            "the admin sees every company"
        );
    }
}

#[tokio::test]
async fn configs_are_validated_versioned_and_accepted_as_yaml_or_json() {
    for db in test_stores().await {
        let api = Api::new(db.store.clone(), ApiConfig::default());
        let a = tenant(&api, "Salon A", "+74950000001").await;

        let invalid = "language: ru\ngreeting: hi\nscenarios:\n  - trigger_keywords: [a]\n    collect_fields:\n      - {prompt: x}\n";
        let reply = api
            .raw(
                Method::PUT,
                &format!("/bots/{}/config", a.bot),
                Some(&a.key),
                "application/yaml",
                invalid.into(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reply.body["error"]["code"], "validation_failed");
        let paths: Vec<&str> = reply.body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "scenarios[0].name",
                "scenarios[0].collect_fields[0].name",
                "fallback"
            ]
        );
        assert_eq!(reply.body["error"]["details"][0]["message"], "required");

        let created = api
            .call(
                Method::POST,
                "/bots",
                &a.key,
                Some(json!({"config": {"language": "en"}})),
            )
            .await;
        assert_eq!(created.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            created.body["error"]["details"].as_array().unwrap().len(),
            2,
            "greeting and fallback: {}",
            created.body
        );

        let broken_json = api
            .raw(
                Method::PUT,
                &format!("/bots/{}/config", a.bot),
                Some(&a.key),
                "application/json",
                b"{\"language\":".to_vec(),
            )
            .await;
        assert_eq!(broken_json.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(broken_json.body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("not valid JSON"));

        let yaml = SALON.replace("Чем могу помочь?", "Слушаю вас.");
        let v2 = api
            .raw(
                Method::PUT,
                &format!("/bots/{}/config", a.bot),
                Some(&a.key),
                "application/yaml",
                yaml.clone().into(),
            )
            .await;
        assert_eq!(v2.status, StatusCode::OK, "{}", v2.body);
        assert_eq!(v2.body["version"], 2);
        assert_eq!(v2.body["source_text"], yaml.as_str());
        assert_eq!(
            v2.body["config"]["scenarios"][0]["collect_fields"][3]["type"], "phone",
            "types inferred"
        );

        let json_config = json!({"language": "en", "greeting": "Hi!", "fallback": "Sorry?", "scenarios": [{"name": "faq", "trigger_keywords": ["question"], "use_knowledge_base": true}]});
        let v3 = api
            .raw(
                Method::PUT,
                &format!("/bots/{}/config", a.bot),
                Some(&a.key),
                "application/json",
                json_config.to_string().into(),
            )
            .await;
        assert_eq!(
            (
                v3.status,
                v3.body["version"].as_i64(),
                v3.body["source_format"].as_str()
            ),
            (StatusCode::OK, Some(3), Some("json"))
        );

        let current = api
            .ok(
                Method::GET,
                &format!("/bots/{}/config", a.bot),
                &a.key,
                None,
            )
            .await;
        assert_eq!(current["config"]["greeting"], "Hi!");
        let versions = api
            .ok(
                Method::GET,
                &format!("/bots/{}/config/versions", a.bot),
                &a.key,
                None,
            )
            .await;
        let listed: Vec<(i64, bool)> = versions
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["version"].as_i64().unwrap(),
                    v["current"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(listed, [(3, true), (2, false), (1, false)]);
        let v1 = api
            .ok(
                Method::GET,
                &format!("/bots/{}/config/versions/1", a.bot),
                &a.key,
                None,
            )
            .await;
        assert_eq!(
            v1["config"]["greeting"],
            "Здравствуйте! Салон красоты Элегант. Чем могу помочь?"
        );
        assert_eq!(
            api.call(
                Method::GET,
                &format!("/bots/{}/config/versions/9", a.bot),
                &a.key,
                None
            )
            .await
            .status,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn bots_numbers_and_webhooks_behave() {
    for db in test_stores().await {
        let api = Api::new(db.store.clone(), ApiConfig::default());
        let a = tenant(&api, "Salon A", "+74950000001").await;
        let b = tenant(&api, "Clinic B", "+74950000002").await;

        // A's number, asked for with B's key: not found, exactly as a number nobody has, and the
        // answer names no holder.
        for number in ["8 (495) 000-00-01", "+74950000077"] {
            let taken = api
                .call(
                    Method::POST,
                    &format!("/bots/{}/phone-numbers", b.bot),
                    &b.key,
                    Some(json!({"number": number, "region": "RU"})),
                )
                .await;
            assert_eq!(taken.status, StatusCode::NOT_FOUND, "{}", taken.body);
            assert_eq!(
                taken.body["error"]["message"],
                json!("phone number not found"),
                "{}",
                taken.body
            );
        }
        // Only the admin key gives numbers to companies, and it sees who holds one.
        let claim = api
            .call(
                Method::POST,
                &format!("/companies/{}/phone-numbers", b.id),
                &b.key,
                Some(json!({"number": "+79161234567"})),
            )
            .await;
        assert_eq!(claim.status, StatusCode::FORBIDDEN, "{}", claim.body);
        let taken = api
            .call(
                Method::POST,
                &format!("/companies/{}/phone-numbers", b.id),
                ADMIN,
                Some(json!({"number": "+74950000001"})),
            )
            .await;
        assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
        api.ok(
            Method::POST,
            &format!("/companies/{}/phone-numbers", b.id),
            ADMIN,
            Some(json!({"number": "+79161234567"})),
        )
        .await;
        let trunk = api
            .ok(
                Method::PUT,
                &format!("/companies/{}/phone-numbers/%2B79161234567/trunk", b.id),
                &b.key,
                Some(
                    json!({"allowed_addresses": ["203.0.113.0/24"], "auth_username": "clinic",
                    "auth_password": "pw-1", "outbound_address": "sip.example.net:5060"}),
                ),
            )
            .await;
        assert_eq!(trunk["trunk"]["auth_password_set"], json!(true));
        assert!(
            trunk.to_string().find("pw-1").is_none(),
            "passwords are never shown"
        );
        let bad_trunk = api
            .call(
                Method::PUT,
                &format!("/companies/{}/phone-numbers/%2B79161234567/trunk", b.id),
                &b.key,
                Some(json!({"allowed_addresses": ["not-an-ip"]})),
            )
            .await;
        assert_eq!(
            (
                bad_trunk.status,
                bad_trunk.body["error"]["details"][0]["path"].as_str()
            ),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("allowed_addresses[0]")
            )
        );
        let bad = api
            .call(
                Method::POST,
                &format!("/bots/{}/phone-numbers", b.bot),
                &b.key,
                Some(json!({"number": "call me"})),
            )
            .await;
        assert_eq!(
            (bad.status, bad.body["error"]["details"][0]["path"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("number"))
        );
        let added = api
            .ok(
                Method::POST,
                &format!("/bots/{}/phone-numbers", b.bot),
                &b.key,
                Some(json!({"number": "8 916 123 45 67", "region": "RU"})),
            )
            .await;
        assert_eq!(added["number"], "+79161234567");
        api.ok(
            Method::DELETE,
            &format!("/bots/{}/phone-numbers/%2B79161234567", b.bot),
            &b.key,
            None,
        )
        .await;

        let patched = api
            .ok(
                Method::PATCH,
                &format!("/bots/{}", a.bot),
                &a.key,
                Some(json!({"status": "disabled"})),
            )
            .await;
        assert_eq!(patched["status"], "disabled");
        let bad_status = api
            .call(
                Method::PATCH,
                &format!("/bots/{}", a.bot),
                &a.key,
                Some(json!({"status": "sleeping"})),
            )
            .await;
        assert_eq!(bad_status.status, StatusCode::UNPROCESSABLE_ENTITY);
        let unknown_field = api
            .call(
                Method::PATCH,
                &format!("/bots/{}", a.bot),
                &a.key,
                Some(json!({"colour": "red"})),
            )
            .await;
        assert_eq!(
            (
                unknown_field.status,
                unknown_field.body["error"]["code"].as_str()
            ),
            (StatusCode::BAD_REQUEST, Some("bad_request"))
        );
        let bots = api
            .ok(
                Method::GET,
                &format!("/companies/{}/bots", a.id),
                &a.key,
                None,
            )
            .await;
        assert_eq!(bots.as_array().unwrap().len(), 1);
        api.ok(Method::DELETE, &format!("/bots/{}", a.bot), &a.key, None)
            .await;
        assert_eq!(
            api.call(Method::GET, &format!("/bots/{}", a.bot), &a.key, None)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        // A deleted bot's number stays its company's, routed nowhere; other tenants still cannot take it.
        let reuse = api
            .call(
                Method::POST,
                &format!("/bots/{}/phone-numbers", b.bot),
                &b.key,
                Some(json!({"number": "+74950000001"})),
            )
            .await;
        assert_eq!(reuse.status, StatusCode::NOT_FOUND, "{}", reuse.body);
        let kept = api
            .ok(
                Method::GET,
                &format!("/companies/{}/phone-numbers", a.id),
                &a.key,
                None,
            )
            .await;
        assert_eq!(
            (kept[0]["number"].as_str(), &kept[0]["bot_id"]),
            (Some("+74950000001"), &json!(null))
        );

        let hook = api
            .ok(
                Method::POST,
                "/webhooks",
                &a.key,
                Some(json!({"url": "https://crm.example/calls", "events": ["call.completed"]})),
            )
            .await;
        assert!(
            hook["secret"].as_str().unwrap().starts_with("whsec_"),
            "secret shown on creation"
        );
        let id = hook["id"].as_str().unwrap();
        let got = api
            .ok(Method::GET, &format!("/webhooks/{id}"), &a.key, None)
            .await;
        assert!(got.get("secret").is_none(), "and never again");
        let bad_url = api
            .call(
                Method::POST,
                "/webhooks",
                &a.key,
                Some(json!({"url": "ftp://x"})),
            )
            .await;
        assert_eq!(bad_url.status, StatusCode::UNPROCESSABLE_ENTITY);
        let bad_event = api
            .call(
                Method::PATCH,
                &format!("/webhooks/{id}"),
                &a.key,
                Some(json!({"events": ["call.exploded"]})),
            )
            .await;
        assert_eq!(bad_event.body["error"]["details"][0]["path"], "events[0]");
        let paused = api
            .ok(
                Method::PATCH,
                &format!("/webhooks/{id}"),
                &a.key,
                Some(json!({"enabled": false})),
            )
            .await;
        assert_eq!(
            (paused["enabled"].as_bool(), paused["url"].as_str()),
            (Some(false), Some("https://crm.example/calls"))
        );
        api.ok(Method::DELETE, &format!("/webhooks/{id}"), &a.key, None)
            .await;
        let admin_without_company = api.call(Method::GET, "/webhooks", ADMIN, None).await;
        assert_eq!(
            admin_without_company.body["error"]["details"][0]["path"],
            "company_id"
        );
    }
}

#[tokio::test]
async fn calls_are_listed_with_filters_and_cursors() {
    for db in test_stores().await {
        let api = Api::new(db.store.clone(), ApiConfig::default());
        let a = tenant(&api, "Salon A", "+74950000001").await;
        for i in 0..30 {
            let outcome = if i % 3 == 0 { "BOOKING" } else { "INFO_ONLY" };
            let started = 1_767_225_600_000 + i * 3_600_000; // 2026-01-01T00:00Z + i hours
            api.store
                .upsert_call(&call_record(
                    &format!("call_{i:02}"),
                    &a.id,
                    &a.bot,
                    started,
                    outcome,
                ))
                .await
                .unwrap();
        }
        let mut cursor: Option<String> = None;
        let mut ids = Vec::new();
        loop {
            let path = match &cursor {
                Some(c) => format!("/calls?limit=7&cursor={c}"),
                None => "/calls?limit=7".to_string(),
            };
            let page = api.ok(Method::GET, &path, &a.key, None).await;
            ids.extend(
                page["calls"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["id"].as_str().unwrap().to_string()),
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        let expected: Vec<String> = (0..30).rev().map(|i| format!("call_{i:02}")).collect();
        assert_eq!(ids, expected);

        let bookings = api
            .ok(
                Method::GET,
                "/calls?outcome=BOOKING&limit=500",
                &a.key,
                None,
            )
            .await;
        assert_eq!(bookings["calls"].as_array().unwrap().len(), 10);
        let day = api
            .ok(
                Method::GET,
                "/calls?from=2026-01-01T10:00:00Z&to=2026-01-01T13:00:00Z",
                &a.key,
                None,
            )
            .await;
        let got: Vec<&str> = day["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(got, ["call_12", "call_11", "call_10"]);
        let by_bot = api
            .ok(
                Method::GET,
                &format!(
                    "/calls?bot_id={}&direction=inbound&status=completed&phone=%2B79161234567",
                    a.bot
                ),
                &a.key,
                None,
            )
            .await;
        assert_eq!(by_bot["calls"].as_array().unwrap().len(), 30);
        assert_eq!(
            api.ok(Method::GET, "/calls?direction=outbound", &a.key, None)
                .await["calls"]
                .as_array()
                .unwrap()
                .len(),
            0
        );

        for (query, path) in [
            ("status=lost", "status"),
            ("from=yesterday", "from"),
            ("limit=0", "limit"),
            ("cursor=zzz", "cursor"),
        ] {
            let reply = api
                .call(Method::GET, &format!("/calls?{query}"), &a.key, None)
                .await;
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
            assert_eq!(reply.body["error"]["details"][0]["path"], path);
        }
        assert_eq!(
            api.call(Method::GET, "/calls?colour=red", &a.key, None)
                .await
                .status,
            StatusCode::BAD_REQUEST
        );

        let detail = api.ok(Method::GET, "/calls/call_03", &a.key, None).await;
        assert_eq!(detail["transcript"][0]["text"], "Хочу записаться");
        assert_eq!(detail["fields"]["service"], "стрижка");
        assert_eq!(detail["outcome"]["kind"], "BOOKING");
        assert_eq!(detail["duration_sec"], 30);
        assert_eq!(
            api.call(Method::GET, "/calls/call_missing", &a.key, None)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
    }
}

/// Refill timing is tested on a paused clock in `rate_limit`; here the refill is so slow (one
/// request per 100 s) that real time cannot change the outcome.
#[tokio::test]
async fn each_key_is_rate_limited() {
    let db = callfleet_store::testing::sqlite().await;
    let api = Api::new(
        db.store.clone(),
        ApiConfig {
            rate_limit_per_sec: 0.01,
            rate_limit_burst: 3,
            ..ApiConfig::default()
        },
    );
    let company = api
        .ok(
            Method::POST,
            "/companies",
            ADMIN,
            Some(json!({"name": "A"})),
        )
        .await;
    let key = api
        .ok(
            Method::POST,
            &format!("/companies/{}/api-keys", company["id"].as_str().unwrap()),
            ADMIN,
            None,
        )
        .await;
    let key = key["key"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(
            api.call(Method::GET, "/calls", key, None).await.status,
            StatusCode::OK
        );
    }
    let limited = api.call(Method::GET, "/calls", key, None).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (90..=100).contains(&retry_after),
        "one token takes 100 s: {retry_after}"
    );
    assert_eq!(limited.body["error"]["code"], "rate_limited");
    assert_eq!(
        api.call(Method::GET, "/calls", ADMIN, None).await.status,
        StatusCode::OK,
        "other keys are not limited"
    );
}

async fn put_yaml_config(api: &Api, a: &Tenant, body: String) -> Reply {
    api.raw(
        Method::PUT,
        &format!("/bots/{}/config", a.bot),
        Some(&a.key),
        "application/yaml",
        body.into(),
    )
    .await
}

/// The bot's config is still at `version`: a refused body saved nothing.
async fn assert_config_version(api: &Api, a: &Tenant, version: u64) {
    let config = api
        .ok(
            Method::GET,
            &format!("/bots/{}/config", a.bot),
            &a.key,
            None,
        )
        .await;
    assert_eq!(config["version"], version, "nothing was saved");
}

#[tokio::test]
async fn oversize_bodies_are_refused_whole() {
    let db = callfleet_store::testing::sqlite().await;
    let api = Api::new(
        db.store.clone(),
        ApiConfig {
            max_body_bytes: 4096,
            ..ApiConfig::default()
        },
    );
    let a = tenant(&api, "A", "+74950000001").await;
    let huge = format!("{SALON}\nsystem_prompt: \"{}\"\n", "x".repeat(10_000));
    let reply = put_yaml_config(&api, &a, huge).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.body["error"]["code"], "payload_too_large");
    assert_config_version(&api, &a, 1).await;
}

#[tokio::test]
async fn a_bot_at_its_config_version_quota_is_refused_with_403() {
    let db = callfleet_store::testing::sqlite().await;
    let api = Api::new(
        db.store.clone(),
        ApiConfig {
            max_config_versions_per_bot: 3,
            ..ApiConfig::default()
        },
    );
    let a = tenant(&api, "A", "+74950000001").await;
    for _ in 0..2 {
        let reply = put_yaml_config(&api, &a, SALON.to_string()).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
    let refused = put_yaml_config(&api, &a, SALON.to_string()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    assert_eq!(refused.body["error"]["code"], "quota_exceeded");
    assert!(refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("3 config versions"));
    assert_config_version(&api, &a, 3).await;
}

#[tokio::test]
async fn hostile_yaml_gets_a_clear_422_and_saves_nothing() {
    let db = callfleet_store::testing::sqlite().await;
    let api = Api::new(db.store.clone(), ApiConfig::default());
    let a = tenant(&api, "A", "+74950000001").await;
    // Nine levels of ten aliases: 10⁹ strings from a body of a few hundred bytes.
    let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..=9 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    // Block nesting is bounded by the value builder, flow nesting by the parser itself.
    let deep = format!("language:\n{}ru\n", "- ".repeat(5000));
    let deep_flow = format!("language: {}ru{}\n", "[".repeat(5000), "]".repeat(5000));
    for (body, expected) in [
        (bomb, "expands to more than"),
        (deep, "levels deep"),
        (deep_flow, "recursion limit"),
        ("language: ru\nlanguage: en\n".to_string(), "duplicate key"),
    ] {
        let reply = put_yaml_config(&api, &a, body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{:?}",
            reply.body
        );
        let detail = reply.body["error"]["details"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(detail.contains(expected), "{expected}: {:?}", reply.body);
    }
    assert_config_version(&api, &a, 1).await;
}

#[tokio::test]
async fn openapi_lists_every_route_and_metrics_count_requests() {
    let db = callfleet_store::testing::sqlite().await;
    let api = Api::new(db.store.clone(), ApiConfig::default());
    let doc = api
        .raw(
            Method::GET,
            "/openapi.json",
            None,
            "application/json",
            vec![],
        )
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    let mut routes: Vec<String> = Vec::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                routes.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    routes.sort();
    let mut expected = vec![
        "GET /health",
        "GET /metrics",
        "GET /openapi.json",
        "POST /companies",
        "GET /companies",
        "GET /companies/{id}",
        "DELETE /companies/{id}",
        "POST /companies/{id}/api-keys",
        "GET /companies/{id}/api-keys",
        "DELETE /companies/{id}/api-keys/{key_id}",
        "GET /companies/{id}/bots",
        "POST /bots",
        "GET /bots/{id}",
        "PATCH /bots/{id}",
        "DELETE /bots/{id}",
        "PUT /bots/{id}/config",
        "GET /bots/{id}/config",
        "GET /bots/{id}/config/versions",
        "GET /bots/{id}/config/versions/{version}",
        "POST /bots/{id}/phone-numbers",
        "GET /bots/{id}/phone-numbers",
        "DELETE /bots/{id}/phone-numbers/{number}",
        "POST /companies/{id}/phone-numbers",
        "GET /companies/{id}/phone-numbers",
        "DELETE /companies/{id}/phone-numbers/{number}",
        "PUT /companies/{id}/phone-numbers/{number}/trunk",
        "POST /bots/{id}/knowledge",
        "GET /bots/{id}/knowledge",
        "DELETE /bots/{id}/knowledge",
        "GET /bots/{id}/knowledge/{doc_id}",
        "DELETE /bots/{id}/knowledge/{doc_id}",
        "POST /bots/{id}/knowledge/search",
        "GET /calls",
        "GET /calls/{id}",
        "DELETE /calls/{id}",
        "GET /calls/{id}/recording",
        "POST /calls",
        "POST /bots/{id}/sessions",
        "POST /embed-keys",
        "GET /embed-keys",
        "DELETE /embed-keys/{id}",
        "GET /talk/{bot_id}",
        "GET /ui/livekit-client.js",
        "POST /webhooks",
        "GET /webhooks",
        "GET /webhooks/{id}",
        "PATCH /webhooks/{id}",
        "DELETE /webhooks/{id}",
        "GET /webhooks/{id}/deliveries",
        "GET /webhook-deliveries/{id}",
        "POST /webhook-deliveries/{id}/replay",
        "GET /dead-letters",
    ];
    expected.sort();
    assert_eq!(routes, expected);

    // Every documented route is served (a request without a key gets 401, not 404).
    for route in &expected {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{version}", "1").replace(['{', '}'], "");
        let reply = api
            .raw(
                method.parse().unwrap(),
                &path,
                None,
                "application/json",
                vec![],
            )
            .await;
        assert_ne!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{route} is documented but not routed"
        );
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{route} is documented but not routed"
        );
    }

    let health = api
        .raw(Method::GET, "/health", None, "application/json", vec![])
        .await;
    assert_eq!(health.body, json!({"status": "ok", "database": "sqlite"}));
    let metrics = api
        .raw(Method::GET, "/metrics", None, "text/plain", vec![])
        .await;
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains(
            r#"callfleet_http_requests_total{method="GET",route="/health",status="200"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/bots/{id}""#),
        "routes are labelled by template: {text}"
    );
}

#[tokio::test]
async fn browser_sessions_place_an_agent_and_hand_out_a_token() {
    use callfleet_dispatcher::{Dispatcher, DispatcherConfig};
    use callfleet_fleet::{FleetBus, MemoryBus, WorkerStatus, MESSAGE_VERSION};
    use std::sync::Arc;
    use std::time::Duration;

    let db = callfleet_store::testing::sqlite().await;
    let without = Api::new(db.store.clone(), ApiConfig::default());
    let a = tenant(&without, "A", "+74950000001").await;
    let b = tenant(&without, "B", "+74950000002").await;
    let unavailable = without
        .call(
            Method::POST,
            &format!("/bots/{}/sessions", a.bot),
            &a.key,
            None,
        )
        .await;
    assert_eq!(
        (
            unavailable.status,
            unavailable.body["error"]["code"].as_str()
        ),
        (StatusCode::SERVICE_UNAVAILABLE, Some("calls_unavailable"))
    );

    let bus: Arc<dyn FleetBus> = Arc::new(MemoryBus::new());
    let dispatcher = Arc::new(Dispatcher::new(
        bus.clone(),
        db.store.clone(),
        DispatcherConfig::default(),
    ));
    let calls = callfleet_admin_api::BrowserCalls {
        dispatcher,
        livekit_url: "ws://127.0.0.1:7880".into(),
        api_key: "devkey".into(),
        api_secret: Secret::new("secret"),
    };
    let config = ApiConfig {
        admin_key: Secret::new(ADMIN),
        ..ApiConfig::default()
    };
    let app = router(ApiContext::new(config, db.store.clone()).with_browser_calls(calls));
    let api = Api {
        app,
        store: db.store.clone(),
    };

    let no_worker = api
        .call(
            Method::POST,
            &format!("/bots/{}/sessions", a.bot),
            &a.key,
            None,
        )
        .await;
    assert_eq!(
        (no_worker.status, no_worker.body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("no_capacity"))
    );

    let worker = WorkerStatus {
        v: MESSAGE_VERSION,
        worker_id: "w1".into(),
        capacity: 4,
        active_calls: 0,
        cpu: 0.0,
        memory_bytes: 0,
        provider_connections: 0,
        draining: false,
        at: 0,
    };
    bus.heartbeat(&worker, Duration::from_secs(60))
        .await
        .unwrap();
    let session = api
        .call(
            Method::POST,
            &format!("/bots/{}/sessions", a.bot),
            &a.key,
            None,
        )
        .await;
    assert_eq!(session.status, StatusCode::CREATED, "{}", session.body);
    assert_eq!(session.body["url"], "ws://127.0.0.1:7880");
    let job = bus
        .next_job("w1", Duration::from_secs(1))
        .await
        .unwrap()
        .expect("an agent was placed at once");
    assert_eq!(job.call_id, session.body["call_id"].as_str().unwrap());
    assert_eq!(job.room, session.body["room"].as_str().unwrap());
    assert_eq!(
        job.caller_identity.as_deref(),
        session.body["identity"].as_str()
    );
    assert_eq!(
        job.config["greeting"],
        "Здравствуйте! Салон красоты Элегант. Чем могу помочь?"
    );
    // The token is a LiveKit JWT for that room and identity, signed with the API secret.
    let claims = livekit_api::access_token::TokenVerifier::with_api_key("devkey", "secret")
        .verify(session.body["token"].as_str().unwrap())
        .expect("signed with the LiveKit secret");
    assert_eq!(
        (
            claims.sub.as_str(),
            claims.video.room.as_str(),
            claims.video.room_join
        ),
        (
            job.caller_identity.as_deref().unwrap(),
            job.room.as_str(),
            true
        )
    );

    let other = api
        .call(
            Method::POST,
            &format!("/bots/{}/sessions", b.bot),
            &a.key,
            None,
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "another company's bot");
}
