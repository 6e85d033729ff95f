//! Where chunk vectors live: each chunk's embedding and its keyword vector (BM25 term weights,
//! the index applying IDF — see [`crate::keyword`]). [`VectorIndex`] is one trait with two
//! backends that pass one shared test suite: [`EdgeIndex`] (Qdrant's engine in-process through `qdrant-edge`, files under the
//! data dir; the `callfleet dev` default) and [`QdrantIndex`] (a Qdrant server over gRPC through
//! `qdrant-client`; production).
//!
//! Isolation is by payload: every point carries `company_id`, `bot_id` and `document_id`, and
//! every read and delete is filtered by `bot_id` (with a keyword payload index), so one
//! collection serves all bots. See ARCHITECTURE.md for why not a collection per bot.

mod edge;
mod qdrant;

pub use edge::EdgeIndex;

/// The sparse vector of a chunk's BM25 term weights (both backends); the index applies IDF.
pub(crate) const KEYWORDS: &str = "keywords";
pub use qdrant::QdrantIndex;

use crate::keyword::SparseTerms;
use crate::IndexError;
use callfleet_core::scenario::BoxFuture;
use serde::{Deserialize, Serialize};

/// What is stored with a chunk's vectors: enough to cite it and to compute its keyword vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// The point id (a UUID, as Qdrant wants).
    pub id: String,
    pub company_id: String,
    pub bot_id: String,
    pub document_id: String,
    /// The uploaded file's name.
    pub source: String,
    pub ordinal: u32,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
}

/// A chunk found by vector similarity (or by its keywords).
#[derive(Debug, Clone, PartialEq)]
pub struct VectorHit {
    pub record: ChunkRecord,
    /// Cosine similarity (BM25 for a keyword search).
    pub score: f32,
}

/// Storage of chunk vectors, partitioned by bot.
pub trait VectorIndex: Send + Sync {
    /// Vector length the index was created with.
    fn dimension(&self) -> usize;
    /// Adds or replaces points (by id).
    fn upsert(&self, points: Vec<(ChunkRecord, Vec<f32>)>)
        -> BoxFuture<'_, Result<(), IndexError>>;
    /// The `limit` nearest chunks of one bot.
    fn search<'a>(
        &'a self,
        bot_id: &'a str,
        vector: &'a [f32],
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<VectorHit>, IndexError>>;
    /// The `limit` chunks of one bot that best match a question's terms by BM25, scored by
    /// the index itself (sparse vectors, the index applying IDF), or `None` when this index
    /// holds no keyword vectors.
    fn keyword_search<'a>(
        &'a self,
        bot_id: &'a str,
        terms: &'a SparseTerms,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<Vec<VectorHit>>, IndexError>> {
        let _ = (bot_id, terms, limit);
        Box::pin(std::future::ready(Ok(None)))
    }
    /// Every chunk of a bot (no vectors).
    fn chunks<'a>(&'a self, bot_id: &'a str)
        -> BoxFuture<'a, Result<Vec<ChunkRecord>, IndexError>>;
    /// How many chunks a bot has, or one of its documents has.
    fn count<'a>(
        &'a self,
        bot_id: &'a str,
        document_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize, IndexError>>;
    /// Removes a document's chunks (and nothing else).
    fn delete_document<'a>(
        &'a self,
        bot_id: &'a str,
        document_id: &'a str,
    ) -> BoxFuture<'a, Result<(), IndexError>>;
    /// Removes every chunk of a bot.
    fn delete_bot<'a>(&'a self, bot_id: &'a str) -> BoxFuture<'a, Result<(), IndexError>>;
    /// Lets the backend reorganise after a bulk insert (the embedded engine builds its HNSW
    /// graphs here; a server does that by itself).
    fn optimize(&self) -> BoxFuture<'_, Result<(), IndexError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The payload filter both backends use, as Qdrant's JSON filter: bot, and optionally document.
pub(crate) fn filter_json(bot_id: &str, document_id: Option<&str>) -> serde_json::Value {
    let mut must = vec![serde_json::json!({ "key": "bot_id", "match": { "value": bot_id } })];
    if let Some(doc) = document_id {
        must.push(serde_json::json!({ "key": "document_id", "match": { "value": doc } }));
    }
    serde_json::json!({ "must": must })
}

pub(crate) fn record_from_payload(
    payload: serde_json::Map<String, serde_json::Value>,
) -> Result<ChunkRecord, IndexError> {
    serde_json::from_value(serde_json::Value::Object(payload))
        .map_err(|e| IndexError::Backend(format!("bad chunk payload: {e}")))
}

/// A backend's own error, as text: its types stay inside the backend's module.
pub(crate) fn backend(e: impl std::fmt::Display) -> IndexError {
    IndexError::Backend(e.to_string())
}

pub(crate) fn check_dimension(
    index: usize,
    points: &[(ChunkRecord, Vec<f32>)],
) -> Result<(), IndexError> {
    match points.iter().find(|(_, v)| v.len() != index) {
        Some((_, v)) => Err(IndexError::Dimension {
            index,
            embedder: v.len(),
        }),
        None => Ok(()),
    }
}
