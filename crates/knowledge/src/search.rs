//! Search, the half of the knowledge base that calls use: a vector index and the embedder its
//! vectors came from. Both halves of hybrid search are answered by the index — the nearest
//! embeddings, and BM25 over the chunks' keyword vectors (the index applies IDF) — and fused
//! here by reciprocal rank. Nothing is held per bot in the process. It needs no database, so an
//! agent worker opens the same collection the admin API writes and searches it without linking
//! the store ([`KnowledgeService`](crate::KnowledgeService), the library of documents, is the
//! other half).

use crate::embed::Embedder;
use crate::index::{ChunkRecord, VectorHit, VectorIndex};
use crate::keyword::{query_sparse, reciprocal_rank_fusion, RRF_K};
use crate::{IndexError, KnowledgeError};
use std::collections::HashMap;
use std::sync::Arc;

/// Tunables of search.
#[derive(Debug, Clone, Copy)]
pub struct SearchConfig {
    /// How many candidates each retriever (vector, keyword) contributes before fusion.
    pub candidates: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig { candidates: 40 }
    }
}

/// A chunk found by [`KnowledgeSearcher::search`].
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub chunk: ChunkRecord,
    /// Fused rank score scaled to 0..1: 1 means first in both rankings.
    pub score: f32,
    /// Cosine similarity, when the vector search found the chunk.
    pub vector_score: Option<f32>,
    /// BM25 score, when the keyword search found it.
    pub keyword_score: Option<f32>,
}

struct Inner {
    index: Arc<dyn VectorIndex>,
    embedder: Arc<dyn Embedder>,
    config: SearchConfig,
}

/// Hybrid search over bots' chunks. Cheap to clone.
#[derive(Clone)]
pub struct KnowledgeSearcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KnowledgeSearcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeSearcher")
            .field("embedder", &self.inner.embedder.model_id())
            .finish_non_exhaustive()
    }
}

impl KnowledgeSearcher {
    /// Refuses an embedder whose vectors do not fit the index.
    pub fn new(
        index: Arc<dyn VectorIndex>,
        embedder: Arc<dyn Embedder>,
        config: SearchConfig,
    ) -> Result<Self, IndexError> {
        if index.dimension() != embedder.dimension() {
            return Err(IndexError::Dimension {
                index: index.dimension(),
                embedder: embedder.dimension(),
            });
        }
        Ok(KnowledgeSearcher {
            inner: Arc::new(Inner {
                index,
                embedder,
                config,
            }),
        })
    }

    pub fn index(&self) -> &Arc<dyn VectorIndex> {
        &self.inner.index
    }

    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.inner.embedder
    }

    /// Hybrid search over one bot's chunks: vector nearest neighbours and BM25 (both from the
    /// index, side by side), fused by reciprocal rank; the best `top_k`. The fusion is done
    /// here rather than in the index's fused query because a hit keeps each retriever's own
    /// score (the cosine similarity is what a bot's `min_score` is compared with).
    pub async fn search(
        &self,
        bot_id: &str,
        query: &str,
        top_k: usize,
    ) -> Result<Vec<SearchHit>, KnowledgeError> {
        if query.trim().is_empty() || top_k == 0 {
            return Ok(Vec::new());
        }
        let candidates = self.inner.config.candidates.max(top_k * 2);
        let query_texts = [query.to_string()];
        let vector = self
            .inner
            .embedder
            .embed(&query_texts)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        let terms = query_sparse(query);
        let index = &self.inner.index;
        let (vector_hits, keyword_hits) = tokio::try_join!(
            index.search(bot_id, &vector, candidates),
            index.keyword_search(bot_id, &terms, candidates)
        )?;
        // An index without keyword vectors answers by vectors alone.
        let keyword_hits: Vec<VectorHit> = keyword_hits.unwrap_or_default();

        let mut by_id: HashMap<String, SearchHit> = HashMap::new();
        for hit in &vector_hits {
            by_id.insert(
                hit.record.id.clone(),
                SearchHit {
                    chunk: hit.record.clone(),
                    score: 0.0,
                    vector_score: Some(hit.score),
                    keyword_score: None,
                },
            );
        }
        for hit in &keyword_hits {
            by_id
                .entry(hit.record.id.clone())
                .or_insert_with(|| SearchHit {
                    chunk: hit.record.clone(),
                    score: 0.0,
                    vector_score: None,
                    keyword_score: None,
                })
                .keyword_score = Some(hit.score);
        }
        let fused = reciprocal_rank_fusion(&[
            vector_hits.iter().map(|h| h.record.id.as_str()).collect(),
            keyword_hits.iter().map(|h| h.record.id.as_str()).collect(),
        ]);
        let best_possible = 2.0 / (RRF_K + 1.0);
        Ok(fused
            .into_iter()
            .take(top_k)
            .filter_map(|(id, score)| {
                by_id.get(id).map(|hit| SearchHit {
                    score: (score / best_possible).min(1.0),
                    ..hit.clone()
                })
            })
            .collect())
    }
}
