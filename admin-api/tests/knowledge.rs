//! The knowledge routes over HTTP, on every store backend: upload (multipart) → background
//! indexing → search with citations; tenant isolation (another company's key gets 404); bad
//! and oversized files; delete and clear.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use callfleet_admin_api::{router, ApiConfig, ApiContext};
use callfleet_core::secret::Secret;
use callfleet_knowledge::{
    EdgeIndex, HashingEmbedder, KnowledgeConfig, KnowledgeService, VectorIndex,
};
use callfleet_store::testing::test_stores;
use callfleet_store::Store;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

const ADMIN: &str = "admin-test-key";
const BOT: &str = "language: en\ngreeting: Hello!\nfallback: Sorry?\n";
const BOUNDARY: &str = "XcallfleetX";

struct Api {
    app: axum::Router,
    index: Arc<EdgeIndex>,
    _dir: tempfile::TempDir,
}

fn multipart(filename: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

impl Api {
    fn new(store: Store, with_knowledge: bool) -> Api {
        Api::with(store, with_knowledge.then(KnowledgeConfig::default))
    }

    fn with(store: Store, knowledge: Option<KnowledgeConfig>) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let config = ApiConfig {
            admin_key: Secret::new(ADMIN),
            max_upload_bytes: 4096,
            ..ApiConfig::default()
        };
        let mut ctx = ApiContext::new(config, store.clone());
        let index = Arc::new(EdgeIndex::open(dir.path(), 128).unwrap());
        if let Some(knowledge) = knowledge {
            let service = KnowledgeService::new(
                store,
                index.clone(),
                Arc::new(HashingEmbedder::new(128)),
                knowledge,
            )
            .unwrap();
            ctx = ctx.with_knowledge(service);
        }
        Api {
            app: router(ctx),
            index,
            _dir: dir,
        }
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::from(body))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        self.raw(
            method,
            path,
            key,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    async fn upload(
        &self,
        bot: &str,
        key: &str,
        filename: &str,
        bytes: &[u8],
    ) -> (StatusCode, Value) {
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        self.raw(
            Method::POST,
            &format!("/bots/{bot}/knowledge"),
            key,
            &content_type,
            multipart(filename, bytes),
        )
        .await
    }

    /// Polls the document until indexing ends, as a client would.
    async fn until_indexed(&self, bot: &str, key: &str, doc: &str) -> Value {
        for _ in 0..500 {
            let (status, body) = self
                .raw(
                    Method::GET,
                    &format!("/bots/{bot}/knowledge/{doc}"),
                    key,
                    "application/json",
                    vec![],
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if body["status"] != "pending" && body["status"] != "indexing" {
                return body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("document {doc} never finished indexing");
    }
}

/// A company with a key and a bot.
async fn tenant(api: &Api, name: &str) -> (String, String) {
    let (_, company) = api
        .json(
            Method::POST,
            "/companies",
            ADMIN,
            json!({"name": name, "timezone": "Europe/Moscow"}),
        )
        .await;
    let id = company["id"].as_str().unwrap();
    let (_, key) = api
        .json(
            Method::POST,
            &format!("/companies/{id}/api-keys"),
            ADMIN,
            json!({"name": "main"}),
        )
        .await;
    let key = key["key"].as_str().unwrap().to_string();
    let (status, bot) = api
        .json(Method::POST, "/bots", &key, json!({"config": BOT}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bot}");
    (key, bot["id"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn upload_index_search_delete_clear() {
    for db in test_stores().await {
        let api = Api::new(db.store.clone(), true);
        let (key, bot) = tenant(&api, "Acme").await;
        let (status, doc) = api.upload(&bot, &key, "faq.md", b"# Delivery\nDelivery to the city centre takes two hours.\n\n# Returns\nReturns are accepted within thirty days.").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
        assert_eq!(doc["content_type"], "text/markdown");
        let doc_id = doc["id"].as_str().unwrap().to_string();
        let ready = api.until_indexed(&bot, &key, &doc_id).await;
        assert_eq!(
            (ready["status"].as_str(), ready["chunks_done"].as_i64()),
            (Some("ready"), ready["chunks_total"].as_i64()),
            "{ready}"
        );

        let (status, hits) = api
            .json(
                Method::POST,
                &format!("/bots/{bot}/knowledge/search"),
                &key,
                json!({"query": "how long does delivery take", "top_k": 1}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{hits}");
        assert_eq!(hits[0]["citation"], "faq.md, «Delivery»");
        assert_eq!(hits[0]["document_id"], doc_id.as_str());
        let (status, _) = api
            .json(
                Method::POST,
                &format!("/bots/{bot}/knowledge/search"),
                &key,
                json!({"query": " ", "top_k": 1}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

        let (_, listed) = api
            .raw(
                Method::GET,
                &format!("/bots/{bot}/knowledge"),
                &key,
                "application/json",
                vec![],
            )
            .await;
        assert_eq!(listed.as_array().unwrap().len(), 1);
        let (status, _) = api
            .raw(
                Method::DELETE,
                &format!("/bots/{bot}/knowledge/{doc_id}"),
                &key,
                "application/json",
                vec![],
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = api
            .raw(
                Method::GET,
                &format!("/bots/{bot}/knowledge/{doc_id}"),
                &key,
                "application/json",
                vec![],
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, hits) = api
            .json(
                Method::POST,
                &format!("/bots/{bot}/knowledge/search"),
                &key,
                json!({"query": "delivery"}),
            )
            .await;
        assert_eq!(hits, json!([]));

        for name in ["a.txt", "b.txt"] {
            let (status, _) = api
                .upload(&bot, &key, name, b"Opening hours are nine to five.")
                .await;
            assert_eq!(status, StatusCode::ACCEPTED);
        }
        let (status, _) = api
            .raw(
                Method::DELETE,
                &format!("/bots/{bot}/knowledge"),
                &key,
                "application/json",
                vec![],
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, listed) = api
            .raw(
                Method::GET,
                &format!("/bots/{bot}/knowledge"),
                &key,
                "application/json",
                vec![],
            )
            .await;
        assert_eq!(listed, json!([]));
        let (_, hits) = api
            .json(
                Method::POST,
                &format!("/bots/{bot}/knowledge/search"),
                &key,
                json!({"query": "opening hours"}),
            )
            .await;
        assert_eq!(hits, json!([]), "{:?}", db.backend);

        // Deleting the bot takes its vectors too.
        let (_, doc) = api
            .upload(&bot, &key, "c.txt", b"Opening hours are nine to five.")
            .await;
        api.until_indexed(&bot, &key, doc["id"].as_str().unwrap())
            .await;
        assert_eq!(api.index.count(&bot, None).await.unwrap(), 1);
        let (status, _) = api
            .raw(
                Method::DELETE,
                &format!("/bots/{bot}"),
                &key,
                "application/json",
                vec![],
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(
            api.index.count(&bot, None).await.unwrap(),
            0,
            "{:?}",
            db.backend
        );
    }
}

#[tokio::test]
async fn another_companys_key_gets_404_everywhere() {
    for db in test_stores().await {
        let api = Api::new(db.store.clone(), true);
        let (key_a, bot_a) = tenant(&api, "A").await;
        let (key_b, bot_b) = tenant(&api, "B").await;
        let (_, doc) = api
            .upload(&bot_a, &key_a, "a.txt", b"Secret prices of company A.")
            .await;
        let doc_id = doc["id"].as_str().unwrap();
        api.until_indexed(&bot_a, &key_a, doc_id).await;

        let b_on_a = [
            (Method::GET, format!("/bots/{bot_a}/knowledge")),
            (Method::GET, format!("/bots/{bot_a}/knowledge/{doc_id}")),
            (Method::DELETE, format!("/bots/{bot_a}/knowledge/{doc_id}")),
            (Method::DELETE, format!("/bots/{bot_a}/knowledge")),
            // A's document through B's own bot is not B's either.
            (Method::GET, format!("/bots/{bot_b}/knowledge/{doc_id}")),
            (Method::DELETE, format!("/bots/{bot_b}/knowledge/{doc_id}")),
        ];
        for (method, path) in b_on_a {
            let (status, body) = api
                .raw(method.clone(), &path, &key_b, "application/json", vec![])
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        }
        let (status, _) = api
            .json(
                Method::POST,
                &format!("/bots/{bot_a}/knowledge/search"),
                &key_b,
                json!({"query": "prices"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = api.upload(&bot_a, &key_b, "x.txt", b"injected").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, hits) = api
            .json(
                Method::POST,
                &format!("/bots/{bot_b}/knowledge/search"),
                &key_b,
                json!({"query": "secret prices company"}),
            )
            .await;
        assert_eq!(hits, json!([]), "{:?}", db.backend);
        // A still has everything.
        let (_, listed) = api
            .raw(
                Method::GET,
                &format!("/bots/{bot_a}/knowledge"),
                &key_a,
                "application/json",
                vec![],
            )
            .await;
        assert_eq!(listed.as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn bad_and_oversized_files() {
    for db in test_stores().await {
        let api = Api::new(db.store.clone(), true);
        let (key, bot) = tenant(&api, "Acme").await;
        for (name, bytes, expected) in [
            ("empty.txt", &b""[..], "empty"),
            ("report.pdf", &b"not a pdf at all"[..], "not that format"),
            ("broken.pdf", &b"%PDF-1.7\n1 0 obj <<"[..], "damaged"),
        ] {
            let (status, body) = api.upload(&bot, &key, name, bytes).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(expected),
                "{name}: {body}"
            );
        }
        let (_, listed) = api
            .raw(
                Method::GET,
                &format!("/bots/{bot}/knowledge"),
                &key,
                "application/json",
                vec![],
            )
            .await;
        let statuses: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["failed", "failed", "failed"]);

        let (status, body) = api.upload(&bot, &key, "big.txt", &vec![b'a'; 5000]).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        let (status, body) = api
            .raw(
                Method::POST,
                &format!("/bots/{bot}/knowledge"),
                &key,
                &format!("multipart/form-data; boundary={BOUNDARY}"),
                format!("--{BOUNDARY}--\r\n").into_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
}

/// A file small enough to upload that expands past a limit gets 413 naming the limit and leaves
/// no document; a bot at its document quota gets 403 `quota_exceeded`.
#[tokio::test]
async fn files_that_expand_past_limits_and_bots_at_quota_are_refused() {
    for db in test_stores().await {
        let api = Api::with(
            db.store.clone(),
            Some(KnowledgeConfig {
                parse_limits: callfleet_knowledge::parse::ParseLimits {
                    max_text_bytes: 64 << 10,
                    ..Default::default()
                },
                max_documents_per_bot: 1,
                ..KnowledgeConfig::default()
            }),
        );
        let (key, bot) = tenant(&api, "Acme").await;
        // 2 kB of header repeated into each of 1 000 one-letter cells: 2 MB of text.
        let mut csv = "h".repeat(2_000);
        csv.push('\n');
        csv.push_str(&"x\n".repeat(1_000));
        assert!(csv.len() < 4096);
        let (status, body) = api.upload(&bot, &key, "cells.csv", csv.as_bytes()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("extracted text"),
            "{body}"
        );
        let (_, listed) = api
            .raw(
                Method::GET,
                &format!("/bots/{bot}/knowledge"),
                &key,
                "application/json",
                vec![],
            )
            .await;
        assert_eq!(listed, json!([]), "a refused file leaves no document");

        let (status, body) = api.upload(&bot, &key, "one.txt", b"Parking is free.").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let (status, body) = api.upload(&bot, &key, "two.txt", b"Open at nine.").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    }
}

#[tokio::test]
async fn without_a_knowledge_service_the_routes_say_so() {
    let db = callfleet_store::testing::sqlite().await;
    let api = Api::new(db.store.clone(), false);
    let (key, bot) = tenant(&api, "Acme").await;
    let (status, body) = api.upload(&bot, &key, "a.txt", b"text").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "knowledge_disabled");
}
