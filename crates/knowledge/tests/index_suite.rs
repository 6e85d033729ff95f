//! One suite, two backends: the embedded qdrant-edge shard and a Qdrant server (here the fake
//! in `callfleet_testkit::qdrant`, spoken to by the real `qdrant-client` over gRPC).

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
