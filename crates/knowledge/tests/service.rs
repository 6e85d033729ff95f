//! The knowledge service end to end on real files made here: upload → background indexing with
//! progress → hybrid search with citations; isolation between bots; delete and clear; bad files;
//! retrieval quality on a labelled question set (recall@5 printed).

mod support;

use callfleet_core::config::BotConfig;
use callfleet_core::scenario::KnowledgeSearch;
use callfleet_knowledge::parse::ParseLimits;
use callfleet_knowledge::{
    BotKnowledge, EdgeIndex, HashingEmbedder, KnowledgeConfig, KnowledgeError, KnowledgeService,
    ParseError, VectorIndex,
};
use callfleet_store::testing::test_stores;
use callfleet_store::{NewBot, NewCompany, Store};
use std::sync::Arc;
use support::files;

const CONFIG: &str = "language: en\ngreeting: Hello!\nfallback: Sorry?\n";

struct Fixture {
    service: KnowledgeService,
    index: Arc<EdgeIndex>,
    store: Store,
    company: String,
    bot_a: String,
    bot_b: String,
    _dir: tempfile::TempDir,
}

async fn fixture(store: Store) -> Fixture {
    fixture_with(store, KnowledgeConfig::default()).await
}

async fn fixture_with(store: Store, config: KnowledgeConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let embedder = Arc::new(HashingEmbedder::new(256));
    let index = Arc::new(EdgeIndex::open(dir.path(), 256).unwrap());
    let service = KnowledgeService::new(store.clone(), index.clone(), embedder, config).unwrap();
    let company = store
        .create_company(NewCompany {
            name: "Acme".into(),
            timezone: "Europe/Moscow".into(),
            max_concurrent_calls: 5,
        })
        .await
        .unwrap()
        .id;
    let config = BotConfig::parse_any(CONFIG).unwrap();
    let mut bots = Vec::new();
    for name in ["a", "b"] {
        let new = NewBot {
            company_id: &company,
            name,
            config: &config,
            source_text: CONFIG,
            source_format: "yaml",
        };
        bots.push(store.create_bot(new).await.unwrap().0.id);
    }
    let (bot_a, bot_b) = (bots[0].clone(), bots[1].clone());
    Fixture {
        service,
        index,
        store,
        company,
        bot_a,
        bot_b,
        _dir: dir,
    }
}

async fn upload_ready(
    f: &Fixture,
    bot: &str,
    name: &str,
    bytes: Vec<u8>,
) -> callfleet_store::KnowledgeDocument {
    let doc = f
        .service
        .upload(&f.company, bot, name, bytes)
        .await
        .unwrap();
    assert_ne!(doc.status.as_str(), "failed", "{name}: {:?}", doc.error);
    let doc = f.service.wait_indexed(&doc.id).await.unwrap();
    assert_eq!(doc.status.as_str(), "ready", "{name}: {:?}", doc.error);
    assert_eq!(doc.chunks_done, doc.chunks_total);
    doc
}

#[tokio::test]
async fn real_files_are_parsed_indexed_and_cited() {
    for db in test_stores().await {
        let backend = format!("{:?}", db.backend);
        let f = fixture(db.store.clone()).await;
        let pdf = files::pdf(&[
            &[
                "Welcome to Acme Telecom.",
                "This guide explains our services.",
            ],
            &[
                "Roaming is available in forty countries.",
                "Activate roaming in the mobile app.",
            ],
            &["Unused traffic carries over to the next month."],
        ]);
        let doc = upload_ready(&f, &f.bot_a, "guide.pdf", pdf).await;
        assert_eq!(
            (doc.pages, doc.content_type.as_str()),
            (Some(3), "application/pdf"),
            "{backend}"
        );
        let hits = f
            .service
            .search(&f.bot_a, "how do I activate roaming", 3)
            .await
            .unwrap();
        assert_eq!(hits[0].chunk.page, Some(2), "{backend}: {hits:?}");
        assert!(hits[0].chunk.text.contains("Activate roaming"), "{backend}");

        let docx = files::docx(&[
            (Some(1), "Refund policy"),
            (
                None,
                "Refunds are paid within fourteen days to the original card.",
            ),
            (Some(2), "Exchanges"),
            (None, "Exchanges of a faulty router are free of charge."),
        ]);
        upload_ready(&f, &f.bot_a, "policy.docx", docx).await;
        let hits = f
            .service
            .search(&f.bot_a, "exchange a faulty router", 2)
            .await
            .unwrap();
        assert_eq!(
            hits[0].chunk.heading.as_deref(),
            Some("Exchanges"),
            "{backend}: {hits:?}"
        );

        let csv = files::cp1251(
            "Тариф;Цена;Минуты\nБазовый;300 рублей;200\nПремиум;900 рублей;безлимит\n",
        );
        upload_ready(&f, &f.bot_a, "тарифы.csv", csv).await;
        let hits = f
            .service
            .search(&f.bot_a, "сколько стоит тариф Премиум", 1)
            .await
            .unwrap();
        // Rows are packed into chunks whole, each still reading as "header: value".
        assert!(
            hits[0]
                .chunk
                .text
                .contains("Тариф: Премиум; Цена: 900 рублей; Минуты: безлимит."),
            "{backend}: {hits:?}"
        );

        // The scenario engine's view cites the document (and page).
        let knowledge = BotKnowledge::new(f.service.searcher().clone(), f.bot_a.clone());
        let chunks = knowledge.search("activate roaming", 1).await.unwrap();
        assert_eq!(chunks[0].source, "guide.pdf, p. 2", "{backend}");
        let chunks = knowledge.search("faulty router exchange", 1).await.unwrap();
        assert_eq!(chunks[0].source, "policy.docx, «Exchanges»", "{backend}");
    }
}

#[tokio::test]
async fn bots_never_see_each_others_chunks_and_delete_clear_are_exact() {
    for db in test_stores().await {
        let backend = format!("{:?}", db.backend);
        let f = fixture(db.store.clone()).await;
        let a1 = upload_ready(
            &f,
            &f.bot_a,
            "a1.txt",
            b"Parking is free for clients of bot A.".to_vec(),
        )
        .await;
        upload_ready(
            &f,
            &f.bot_a,
            "a2.md",
            b"# Hours\nBot A is open from nine to six.".to_vec(),
        )
        .await;
        upload_ready(
            &f,
            &f.bot_b,
            "b1.txt",
            b"Parking costs five euros for clients of bot B.".to_vec(),
        )
        .await;

        let hits = f.service.search(&f.bot_a, "parking", 10).await.unwrap();
        assert!(hits.iter().all(|h| h.chunk.bot_id == f.bot_a), "{backend}");
        let hits = f
            .service
            .search(&f.bot_b, "parking free open hours", 10)
            .await
            .unwrap();
        assert!(
            hits.iter().all(|h| h.chunk.bot_id == f.bot_b) && hits.len() == 1,
            "{backend}: {hits:?}"
        );

        f.service.delete_document(&f.bot_a, &a1.id).await.unwrap();
        assert_eq!(
            f.index.count(&f.bot_a, Some(&a1.id)).await.unwrap(),
            0,
            "{backend}"
        );
        assert_eq!(f.index.count(&f.bot_a, None).await.unwrap(), 1, "{backend}");
        let hits = f
            .service
            .search(&f.bot_a, "parking free", 10)
            .await
            .unwrap();
        assert!(
            hits.iter().all(|h| h.chunk.document_id != a1.id),
            "{backend}: keyword index kept a deleted chunk"
        );
        assert_eq!(
            f.store
                .list_knowledge_documents(&f.bot_a)
                .await
                .unwrap()
                .len(),
            1,
            "{backend}"
        );

        assert_eq!(f.service.clear_bot(&f.bot_a).await.unwrap(), 1, "{backend}");
        assert_eq!(f.index.count(&f.bot_a, None).await.unwrap(), 0, "{backend}");
        assert!(
            f.service
                .search(&f.bot_a, "hours", 5)
                .await
                .unwrap()
                .is_empty(),
            "{backend}"
        );
        assert_eq!(f.index.count(&f.bot_b, None).await.unwrap(), 1, "{backend}");
    }
}

#[tokio::test]
async fn bad_files_fail_with_a_clear_error_and_index_nothing() {
    for db in test_stores().await {
        let backend = format!("{:?}", db.backend);
        let f = fixture(db.store.clone()).await;
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty.txt", Vec::new(), "empty"),
            ("secret.pdf", files::encrypted_pdf(), "encrypted"),
            (
                "broken.pdf",
                b"%PDF-1.7\n1 0 obj << /Type /Catalog".to_vec(),
                "damaged",
            ),
            (
                "fake.docx",
                b"plain text pretending".to_vec(),
                "not that format",
            ),
            (
                "image.png",
                b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0".to_vec(),
                "unsupported",
            ),
            (
                "protected.docx",
                vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0, 0],
                "encrypted",
            ),
        ];
        for (name, bytes, expected) in cases {
            let doc = f
                .service
                .upload(&f.company, &f.bot_a, name, bytes)
                .await
                .unwrap();
            assert_eq!(doc.status.as_str(), "failed", "{backend} {name}");
            let error = doc.error.unwrap_or_default();
            assert!(error.contains(expected), "{backend} {name}: {error}");
        }
        assert_eq!(f.index.count(&f.bot_a, None).await.unwrap(), 0, "{backend}");
        let too_big = f
            .service
            .upload(
                &f.company,
                &f.bot_a,
                "big.txt",
                vec![b'a'; f.service.config().max_file_bytes + 1],
            )
            .await;
        assert!(
            too_big.unwrap_err().to_string().contains("too large"),
            "{backend}"
        );
    }
}

/// Small files that expand into far more than they are are refused without a document row and
/// without reaching the memory they ask for: each is checked against the limit as it expands.
#[tokio::test]
async fn files_that_expand_past_the_limits_are_refused_and_store_nothing() {
    let limits = ParseLimits {
        max_decompressed_bytes: 4 << 20,
        max_text_bytes: 1 << 20,
        max_pages: 5,
    };
    for db in test_stores().await {
        let backend = format!("{:?}", db.backend);
        let f = fixture_with(
            db.store.clone(),
            KnowledgeConfig {
                parse_limits: limits,
                ..KnowledgeConfig::default()
            },
        )
        .await;
        let many_pages: Vec<&[&str]> = vec![&["A page."]; 6];
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("bomb.docx", files::docx_bomb(64 << 20), "decompressed size"),
            ("bomb.pdf", files::pdf_bomb(64 << 20), "decompressed size"),
            (
                "cells.csv",
                files::csv_header_bomb(64 << 10, 2_000),
                "extracted text",
            ),
            ("long.pdf", files::pdf(&many_pages), "page count"),
        ];
        for (name, bytes, expected) in cases {
            assert!(bytes.len() < 1 << 20, "{name} is a small file");
            let err = f
                .service
                .upload(&f.company, &f.bot_a, name, bytes)
                .await
                .unwrap_err();
            assert!(
                matches!(err, KnowledgeError::Parse(ParseError::Exceeds { .. })),
                "{backend} {name}: {err}"
            );
            assert!(
                err.to_string().contains(expected),
                "{backend} {name}: {err}"
            );
        }
        assert!(f
            .store
            .list_knowledge_documents(&f.bot_a)
            .await
            .unwrap()
            .is_empty());
        // Within the limits the same kinds of file still read.
        let fine = vec![&["A page."][..]; 5];
        upload_ready(&f, &f.bot_a, "fine.pdf", files::pdf(&fine)).await;
        upload_ready(&f, &f.bot_a, "fine.csv", files::csv_header_bomb(100, 50)).await;
    }
}

/// A bot at its document or chunk quota gets a clear refusal; another bot is unaffected, and
/// deleting a document makes room again.
#[tokio::test]
async fn a_bots_quotas_refuse_uploads_past_them() {
    for db in test_stores().await {
        let backend = format!("{:?}", db.backend);
        let f = fixture_with(
            db.store.clone(),
            KnowledgeConfig {
                max_documents_per_bot: 2,
                max_chunks_per_bot: 3,
                ..KnowledgeConfig::default()
            },
        )
        .await;
        let text = |s: &str| s.as_bytes().to_vec();
        let first = upload_ready(
            &f,
            &f.bot_a,
            "one.txt",
            text("Opening hours are nine to five."),
        )
        .await;
        upload_ready(&f, &f.bot_a, "two.txt", text("Parking is free.")).await;
        let err = f
            .service
            .upload(&f.company, &f.bot_a, "three.txt", text("Third."))
            .await
            .unwrap_err();
        assert!(matches!(err, KnowledgeError::Quota(_)), "{backend}: {err}");
        assert!(err.to_string().contains("2 documents"), "{backend}: {err}");
        // The other bot has its own quota.
        upload_ready(&f, &f.bot_b, "b.txt", text("Other bot.")).await;
        f.service
            .delete_document(&f.bot_a, &first.id)
            .await
            .unwrap();
        upload_ready(&f, &f.bot_a, "three.txt", text("Third.")).await;
        // Chunks: a document of many paragraphs would take the bot past three chunks.
        let long: String = (0..400)
            .map(|i| format!("Paragraph {i} says something about the clinic's rules.\n\n"))
            .collect();
        let docs = f.store.list_knowledge_documents(&f.bot_a).await.unwrap();
        f.service
            .delete_document(&f.bot_a, &docs[0].id)
            .await
            .unwrap();
        let err = f
            .service
            .upload(&f.company, &f.bot_a, "long.txt", long.into_bytes())
            .await
            .unwrap_err();
        assert!(matches!(err, KnowledgeError::Quota(_)), "{backend}: {err}");
        assert!(err.to_string().contains("chunks"), "{backend}: {err}");
    }
}

#[tokio::test]
async fn documents_left_half_indexed_by_a_dead_process_are_failed_and_removed() {
    for db in test_stores().await {
        let backend = format!("{:?}", db.backend);
        let f = fixture(db.store.clone()).await;
        let kept = upload_ready(
            &f,
            &f.bot_a,
            "kept.txt",
            b"Kept text about gardens.".to_vec(),
        )
        .await;
        // What a crash mid-indexing leaves: a row in `indexing` and some of its points.
        let new = callfleet_store::NewKnowledgeDocument {
            bot_id: &f.bot_a,
            company_id: &f.company,
            filename: "half.txt",
            content_type: "text/plain",
            size_bytes: 10,
            sha256: "00",
        };
        let half = f.store.create_knowledge_document(new).await.unwrap();
        f.store
            .update_knowledge_progress(
                &half.id,
                callfleet_core::domain::DocumentStatus::Indexing,
                None,
                4,
                2,
                None,
            )
            .await
            .unwrap();
        let record = callfleet_knowledge::ChunkRecord {
            id: uuid::Uuid::new_v4().to_string(),
            company_id: f.company.clone(),
            bot_id: f.bot_a.clone(),
            document_id: half.id.clone(),
            source: "half.txt".into(),
            ordinal: 0,
            text: "half".into(),
            page: None,
            heading: None,
        };
        f.index
            .upsert(vec![(record, vec![1.0; 256])])
            .await
            .unwrap();

        assert_eq!(
            f.service.recover_interrupted().await.unwrap(),
            1,
            "{backend}"
        );
        let half = f.store.get_knowledge_document(&half.id).await.unwrap();
        assert_eq!(half.status.as_str(), "failed", "{backend}");
        assert!(half.error.unwrap().contains("interrupted"), "{backend}");
        assert_eq!(
            f.index.count(&f.bot_a, Some(&half.id)).await.unwrap(),
            0,
            "{backend}"
        );
        assert_eq!(
            f.index.count(&f.bot_a, Some(&kept.id)).await.unwrap(),
            1,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_provider_embedder_indexes_and_searches_through_ollama() {
    use callfleet_knowledge::ProviderEmbedder;
    let ollama = callfleet_testkit::llm::FakeOllama::start().await;
    let provider = Arc::new(callfleet_providers::ollama::OllamaEmbedder::new(
        ollama.url(),
        "nomic-embed-text",
    ));
    // The fake answers 8-dimensional vectors.
    let embedder = Arc::new(ProviderEmbedder::new(provider, "nomic-embed-text", 8, 2));
    let db = callfleet_store::testing::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let index = Arc::new(EdgeIndex::open(dir.path(), 8).unwrap());
    let service = KnowledgeService::new(
        db.store.clone(),
        index,
        embedder,
        KnowledgeConfig::default(),
    )
    .unwrap();
    let f = fixture(db.store.clone()).await;
    let text = "Parking is free. Breakfast is served at eight. Checkout is at noon.";
    let doc = service
        .upload(&f.company, &f.bot_a, "hotel.txt", text.as_bytes().to_vec())
        .await
        .unwrap();
    let doc = service.wait_indexed(&doc.id).await.unwrap();
    assert_eq!(
        (doc.status.as_str(), doc.chunks_done),
        ("ready", 1),
        "{:?}",
        doc.error
    );
    let hits = service
        .search(&f.bot_a, "when is breakfast", 1)
        .await
        .unwrap();
    assert_eq!(hits[0].chunk.source, "hotel.txt");
    // Batches of two texts at most went to the server: one chunk, then one query.
    let inputs: Vec<usize> = ollama
        .requests()
        .iter()
        .map(|r| r["input"].as_array().map(|a| a.len()).unwrap_or(1))
        .collect();
    assert_eq!(inputs, [1, 1]);
}
