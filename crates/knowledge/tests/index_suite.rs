//! One suite, two backends: the embedded qdrant-edge shard and a Qdrant server (here the fake
//! in `callfleet_testkit::qdrant`, spoken to by the real `qdrant-client` over gRPC).

use callfleet_knowledge::keyword::query_sparse;
use callfleet_knowledge::{ChunkRecord, EdgeIndex, IndexError, QdrantIndex, VectorIndex};
use std::sync::Arc;

const DIM: usize = 8;

struct Backend {
    name: &'static str,
    index: Arc<dyn VectorIndex>,
    _dir: Option<tempfile::TempDir>,
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let edge = EdgeIndex::open(dir.path(), DIM).expect("open edge index");
    let (_fake, addr) = callfleet_testkit::qdrant::FakeQdrant::start().await;
    let server = QdrantIndex::connect(&format!("http://{addr}"), None, "knowledge", DIM)
        .await
        .expect("connect to the fake Qdrant");
    vec![
        Backend {
            name: "edge",
            index: Arc::new(edge),
            _dir: Some(dir),
        },
        Backend {
            name: "qdrant-server",
            index: Arc::new(server),
            _dir: None,
        },
    ]
}

fn record(bot: &str, doc: &str, ordinal: u32, text: &str) -> ChunkRecord {
    ChunkRecord {
        id: uuid::Uuid::new_v4().to_string(),
        company_id: "cmp_1".into(),
        bot_id: bot.into(),
        document_id: doc.into(),
        source: format!("{doc}.txt"),
        ordinal,
        text: text.into(),
        page: Some(ordinal + 1),
        heading: None,
    }
}

/// A unit vector along axis `i`, so nearest neighbours are known exactly.
fn axis(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[i % DIM] = 1.0;
    v
}

async fn seed(index: &dyn VectorIndex) {
    let mut points = Vec::new();
    for (bot, doc, n) in [
        ("bot_a", "doc_a1", 3u32),
        ("bot_a", "doc_a2", 2),
        ("bot_b", "doc_b1", 4),
    ] {
        for i in 0..n {
            points.push((
                record(bot, doc, i, &format!("{doc} chunk {i}")),
                axis(i as usize),
            ));
        }
    }
    index.upsert(points).await.expect("upsert");
}

#[tokio::test]
async fn search_sees_only_the_bots_own_chunks() {
    for b in backends().await {
        seed(b.index.as_ref()).await;
        let hits = b.index.search("bot_a", &axis(3), 10).await.expect("search");
        assert_eq!(hits.len(), 5, "{}", b.name);
        assert!(
            hits.iter().all(|h| h.record.bot_id == "bot_a"),
            "{}: {hits:?}",
            b.name
        );
        // Only bot B has a chunk on axis 3; bot A must not get it even as the best match.
        let best = &b.index.search("bot_b", &axis(3), 1).await.expect("search")[0];
        assert_eq!(
            (best.record.document_id.as_str(), best.record.ordinal),
            ("doc_b1", 3),
            "{}",
            b.name
        );
        assert!(
            (best.score - 1.0).abs() < 1e-4,
            "{}: cosine of equal vectors is {}",
            b.name,
            best.score
        );
        assert!(
            b.index
                .search("bot_nobody", &axis(0), 10)
                .await
                .expect("search")
                .is_empty(),
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn delete_document_removes_exactly_its_points() {
    for b in backends().await {
        seed(b.index.as_ref()).await;
        b.index
            .delete_document("bot_a", "doc_a1")
            .await
            .expect("delete");
        assert_eq!(
            b.index.count("bot_a", Some("doc_a1")).await.unwrap(),
            0,
            "{}",
            b.name
        );
        assert_eq!(
            b.index.count("bot_a", Some("doc_a2")).await.unwrap(),
            2,
            "{}",
            b.name
        );
        assert_eq!(b.index.count("bot_b", None).await.unwrap(), 4, "{}", b.name);
        // A document id is only deleted within the bot it is asked for.
        b.index
            .delete_document("bot_a", "doc_b1")
            .await
            .expect("delete");
        assert_eq!(b.index.count("bot_b", None).await.unwrap(), 4, "{}", b.name);
    }
}

#[tokio::test]
async fn delete_bot_removes_only_that_bot() {
    for b in backends().await {
        seed(b.index.as_ref()).await;
        b.index.delete_bot("bot_a").await.expect("clear");
        assert_eq!(b.index.count("bot_a", None).await.unwrap(), 0, "{}", b.name);
        assert_eq!(b.index.count("bot_b", None).await.unwrap(), 4, "{}", b.name);
        assert!(
            b.index.chunks("bot_a").await.unwrap().is_empty(),
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn chunks_pages_through_everything_and_upsert_replaces_by_id() {
    for b in backends().await {
        let points: Vec<_> = (0..2500u32)
            .map(|i| {
                (
                    record("bot_big", "doc_big", i, &format!("text {i}")),
                    axis(i as usize),
                )
            })
            .collect();
        let replaced = points[0].0.clone();
        b.index.upsert(points).await.expect("upsert");
        b.index
            .upsert(vec![(
                ChunkRecord {
                    text: "replaced".into(),
                    ..replaced.clone()
                },
                axis(0),
            )])
            .await
            .expect("upsert again");
        let all = b.index.chunks("bot_big").await.expect("scroll");
        assert_eq!(all.len(), 2500, "{}", b.name);
        let mut ordinals: Vec<u32> = all.iter().map(|r| r.ordinal).collect();
        ordinals.sort();
        assert_eq!(ordinals, (0..2500).collect::<Vec<_>>(), "{}", b.name);
        assert_eq!(
            all.iter()
                .find(|r| r.id == replaced.id)
                .map(|r| r.text.as_str()),
            Some("replaced"),
            "{}",
            b.name
        );
        b.index.optimize().await.expect("optimize");
        assert_eq!(
            b.index.search("bot_big", &axis(1), 3).await.unwrap().len(),
            3,
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn wrong_dimension_is_refused() {
    for b in backends().await {
        let err = b
            .index
            .upsert(vec![(record("bot_a", "d", 0, "x"), vec![1.0; DIM + 1])])
            .await
            .unwrap_err();
        assert!(
            matches!(err, IndexError::Dimension { index: DIM, embedder } if embedder == DIM + 1),
            "{}: {err}",
            b.name
        );
    }
}

#[tokio::test]
async fn the_embedded_index_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let index = EdgeIndex::open(dir.path(), DIM).unwrap();
        seed(&index).await;
    }
    {
        let index = EdgeIndex::open(dir.path(), DIM).unwrap();
        assert_eq!(index.count("bot_a", None).await.unwrap(), 5);
    }
    let reopened = EdgeIndex::open(dir.path(), DIM * 2).map(|_| ());
    assert!(
        matches!(reopened, Err(IndexError::Dimension { index: DIM, .. })),
        "{reopened:?}"
    );
}

async fn seed_texts(index: &dyn VectorIndex) -> Vec<ChunkRecord> {
    let texts = [
        (
            "bot_a",
            "doc_a1",
            "Delivery is free for orders over 3000 roubles.",
        ),
        ("bot_a", "doc_a1", "Our office is open from nine to six."),
        (
            "bot_a",
            "doc_a2",
            "Доставка по Москве бесплатная, по области 300 рублей.",
        ),
        (
            "bot_a",
            "doc_a2",
            "The office is in the city centre, the office has parking.",
        ),
        (
            "bot_b",
            "doc_b1",
            "Parking at the office costs five euros for delivery drivers.",
        ),
    ];
    let records: Vec<ChunkRecord> = texts
        .iter()
        .enumerate()
        .map(|(i, (bot, doc, text))| record(bot, doc, i as u32, text))
        .collect();
    index
        .upsert(
            records
                .iter()
                .enumerate()
                .map(|(i, r)| (r.clone(), axis(i)))
                .collect(),
        )
        .await
        .expect("upsert");
    records
}

async fn keyword_hits(index: &dyn VectorIndex, bot: &str, query: &str) -> Vec<(String, f32)> {
    index
        .keyword_search(bot, &query_sparse(query), 10)
        .await
        .expect("keyword search")
        .expect("the index holds keyword vectors")
        .into_iter()
        .map(|h| (h.record.text, h.score))
        .collect()
}

/// BM25 scored by the index: word forms match through the stems, rare terms outweigh common
/// ones, passages sharing no term are not returned, and a bot sees only its own chunks. Both
/// backends give the same scores (the fake server weighs by IDF as the engine does).
#[tokio::test]
async fn keyword_search_scores_bm25_in_the_index() {
    let mut scores = Vec::new();
    for b in backends().await {
        seed_texts(b.index.as_ref()).await;
        let delivery = keyword_hits(
            b.index.as_ref(),
            "bot_a",
            "how much does the delivery cost?",
        )
        .await;
        assert_eq!(delivery.len(), 1, "{}: {delivery:?}", b.name);
        assert!(delivery[0].0.starts_with("Delivery is free"), "{}", b.name);
        let russian = keyword_hits(b.index.as_ref(), "bot_a", "сколько стоит доставку").await;
        assert_eq!(russian.len(), 1, "{}: {russian:?}", b.name);
        assert!(russian[0].0.starts_with("Доставка"), "{}", b.name);
        let office = keyword_hits(b.index.as_ref(), "bot_a", "office parking").await;
        let texts: Vec<&str> = office.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            texts,
            [
                "The office is in the city centre, the office has parking.",
                "Our office is open from nine to six."
            ],
            "{}",
            b.name
        );
        assert!(
            keyword_hits(b.index.as_ref(), "bot_a", "unrelated words entirely")
                .await
                .is_empty(),
            "{}",
            b.name
        );
        assert!(
            keyword_hits(b.index.as_ref(), "bot_nobody", "office parking")
                .await
                .is_empty(),
            "{}",
            b.name
        );
        // Removed chunks leave the keyword search with their vectors.
        b.index
            .delete_document("bot_a", "doc_a2")
            .await
            .expect("delete");
        let office_after = keyword_hits(b.index.as_ref(), "bot_a", "office parking").await;
        assert_eq!(office_after.len(), 1, "{}: {office_after:?}", b.name);
        scores.push((b.name, office));
    }
    let (edge, server) = (&scores[0].1, &scores[1].1);
    for ((_, a), (_, b)) in edge.iter().zip(server) {
        assert!((a - b).abs() < 1e-4, "edge {edge:?} vs server {server:?}");
    }
}

/// Hits in id order (equal scores come back in no particular order).
fn by_id(mut hits: Vec<callfleet_knowledge::VectorHit>) -> Vec<callfleet_knowledge::VectorHit> {
    hits.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    hits
}

/// A shard made before keyword vectors (embeddings only) is rebuilt with them when opened:
/// the same points, the same embeddings, and keyword search works; nothing is left beside it.
#[tokio::test]
async fn an_embedded_index_made_before_keyword_vectors_is_upgraded_on_open() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("model-8");
    let before = {
        let old = EdgeIndex::open_with(&dir, DIM, false).unwrap();
        seed_texts(&old).await;
        assert_eq!(
            old.keyword_search("bot_a", &query_sparse("office"), 5)
                .await
                .unwrap(),
            None,
            "an old shard has no keyword vectors"
        );
        by_id(old.search("bot_a", &axis(3), 10).await.unwrap())
    };
    let index = EdgeIndex::open(&dir, DIM).unwrap();
    assert_eq!(index.count("bot_a", None).await.unwrap(), 4);
    assert_eq!(index.count("bot_b", None).await.unwrap(), 1);
    assert_eq!(
        by_id(index.search("bot_a", &axis(3), 10).await.unwrap()),
        before,
        "the same points with the same embeddings"
    );
    let hits = keyword_hits(&index, "bot_a", "office parking").await;
    assert_eq!(hits.len(), 2, "{hits:?}");
    drop(index);
    let mut left: Vec<String> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["model-8"]);
    // Reopening an upgraded shard changes nothing.
    let index = EdgeIndex::open(&dir, DIM).unwrap();
    assert_eq!(
        keyword_hits(&index, "bot_a", "office parking").await.len(),
        2
    );
}

/// An upgrade cut short by a crash is completed or undone on the next open, never lost.
#[tokio::test]
async fn an_interrupted_upgrade_is_recovered() {
    // Crashed while the new shard was being built: the half-built one is discarded.
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("m-8");
    {
        let old = EdgeIndex::open_with(&dir, DIM, false).unwrap();
        seed_texts(&old).await;
    }
    std::fs::create_dir_all(parent.path().join("m-8.upgrading/segments")).unwrap();
    std::fs::write(parent.path().join("m-8.upgrading/junk"), b"half").unwrap();
    let index = EdgeIndex::open(&dir, DIM).unwrap();
    assert_eq!(index.count("bot_a", None).await.unwrap(), 4);
    assert_eq!(
        keyword_hits(&index, "bot_a", "office parking").await.len(),
        2
    );
    drop(index);
    assert!(!parent.path().join("m-8.upgrading").exists());

    // Crashed between moving the old shard aside and moving the new one in: the new one is
    // whole, so it is moved in.
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("m-8");
    {
        let new = EdgeIndex::open(&parent.path().join("m-8.upgrading"), DIM).unwrap();
        seed_texts(&new).await;
        let old =
            EdgeIndex::open_with(&parent.path().join("m-8.before-keywords"), DIM, false).unwrap();
        seed_texts(&old).await;
    }
    let index = EdgeIndex::open(&dir, DIM).unwrap();
    assert_eq!(
        keyword_hits(&index, "bot_a", "office parking").await.len(),
        2
    );
    drop(index);
    assert!(!parent.path().join("m-8.before-keywords").exists());

    // Crashed the same way with no new shard: the old one is put back and upgraded.
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("m-8");
    {
        let old =
            EdgeIndex::open_with(&parent.path().join("m-8.before-keywords"), DIM, false).unwrap();
        seed_texts(&old).await;
    }
    let index = EdgeIndex::open(&dir, DIM).unwrap();
    assert_eq!(index.count("bot_a", None).await.unwrap(), 4);
    assert_eq!(
        keyword_hits(&index, "bot_a", "office parking").await.len(),
        2
    );
}

/// A collection made before keyword vectors (one unnamed dense vector, as the server backend
/// created it) gets the sparse vector and every point's keyword vector on connect; a
/// collection whose fill was interrupted (vector added, points not filled) is finished.
#[tokio::test]
async fn a_server_collection_made_before_keyword_vectors_is_upgraded_on_connect() {
    use qdrant_client::qdrant::{
        CreateCollectionBuilder, Distance, PointStruct, UpsertPointsBuilder, VectorParamsBuilder,
    };
    let (_fake, addr) = callfleet_testkit::qdrant::FakeQdrant::start().await;
    let url = format!("http://{addr}");
    let client = qdrant_client::Qdrant::from_url(&url)
        .skip_compatibility_check()
        .build()
        .unwrap();
    for (collection, interrupted) in [("old", false), ("half_done", true)] {
        client
            .create_collection(
                CreateCollectionBuilder::new(collection)
                    .vectors_config(VectorParamsBuilder::new(DIM as u64, Distance::Cosine)),
            )
            .await
            .unwrap();
        let mut points = Vec::new();
        for (i, r) in [
            record(
                "bot_a",
                "d1",
                0,
                "The office is in the city centre, the office has parking.",
            ),
            record("bot_a", "d1", 1, "Our office is open from nine to six."),
            record(
                "bot_a",
                "d2",
                2,
                "Delivery is free for orders over 3000 roubles.",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let payload =
                qdrant_client::Payload::try_from(serde_json::to_value(&r).unwrap()).unwrap();
            points.push(PointStruct::new(r.id.clone(), axis(i), payload));
        }
        client
            .upsert_points(UpsertPointsBuilder::new(collection, points).wait(true))
            .await
            .unwrap();
        if interrupted {
            client
                .create_vector_name(qdrant_client::qdrant::CreateVectorNameRequest {
                    collection_name: collection.into(),
                    wait: Some(true),
                    vector_name: "keywords".into(),
                    vector_config: Some(
                        qdrant_client::qdrant::create_vector_name_request::VectorConfig::SparseConfig(
                            qdrant_client::qdrant::SparseVectorCreationConfig {
                                modifier: Some(qdrant_client::qdrant::Modifier::Idf as i32),
                                datatype: None,
                            },
                        ),
                    ),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let index = QdrantIndex::connect(&url, None, collection, DIM)
            .await
            .expect("connect upgrades the collection");
        assert_eq!(index.count("bot_a", None).await.unwrap(), 3, "{collection}");
        let hits = keyword_hits(&index, "bot_a", "office parking").await;
        assert_eq!(hits.len(), 2, "{collection}: {hits:?}");
        assert!(hits[0].0.contains("parking"), "{collection}: {hits:?}");
        assert_eq!(
            index.search("bot_a", &axis(2), 1).await.unwrap()[0]
                .record
                .ordinal,
            2,
            "{collection}: the embeddings are kept"
        );
        // Connecting again finds nothing to do.
        let again = QdrantIndex::connect(&url, None, collection, DIM)
            .await
            .unwrap();
        assert_eq!(keyword_hits(&again, "bot_a", "office parking").await, hits);
    }
}
