//! Search, the half of the knowledge base that calls use: a vector index, the embedder its
//! vectors came from, and per-bot BM25 indexes rebuilt from the vector index's payloads. It
//! needs no database, so an agent worker opens the same collection the admin API writes and
//! searches it without linking the store ([`KnowledgeService`](crate::KnowledgeService), the
//! library of documents, is the other half).

use crate::embed::Embedder;
use crate::index::{ChunkRecord, VectorIndex};
use crate::keyword::{reciprocal_rank_fusion, Bm25Index, RRF_K};
use crate::{IndexError, KnowledgeError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tunables of search.
#[derive(Debug, Clone, Copy)]
pub struct SearchConfig {
    /// How many candidates each retriever (vector, keyword) contributes before fusion.
    pub candidates: usize,
    /// How long a bot's keyword index is trusted before it is compared with the vector index
    /// (another process — the admin API — may have changed the bot's documents).
    pub keyword_recheck: Duration,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            candidates: 40,
            keyword_recheck: Duration::from_secs(10),
        }
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

struct BotKeywords {
    index: Bm25Index,
    checked_at: Instant,
}

type KeywordSlot = Arc<tokio::sync::Mutex<Option<BotKeywords>>>;

struct Inner {
    index: Arc<dyn VectorIndex>,
    embedder: Arc<dyn Embedder>,
    config: SearchConfig,
    keywords: Mutex<HashMap<String, KeywordSlot>>,
}

/// Hybrid search over bots' chunks. Cheap to clone; every clone shares the keyword indexes.
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these maps leaves them consistent (single inserts/removes).
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
                keywords: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn index(&self) -> &Arc<dyn VectorIndex> {
        &self.inner.index
    }

    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.inner.embedder
    }

    /// Hybrid search over one bot's chunks: vector nearest neighbours and BM25, fused by
    /// reciprocal rank; the best `top_k`.
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
        let (vector_hits, keyword_hits) = tokio::try_join!(
            async {
                Ok::<_, KnowledgeError>(self.inner.index.search(bot_id, &vector, candidates).await?)
            },
            self.keyword_search(bot_id, query, candidates)
        )?;

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
        for (record, score) in &keyword_hits {
            by_id
                .entry(record.id.clone())
                .or_insert_with(|| SearchHit {
                    chunk: record.clone(),
                    score: 0.0,
                    vector_score: None,
                    keyword_score: None,
                })
                .keyword_score = Some(*score);
        }
        let fused = reciprocal_rank_fusion(&[
            vector_hits.iter().map(|h| h.record.id.as_str()).collect(),
            keyword_hits.iter().map(|(r, _)| r.id.as_str()).collect(),
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

    async fn keyword_search(
        &self,
        bot_id: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<(ChunkRecord, f32)>, KnowledgeError> {
        let terms = crate::keyword::query_sparse(query);
        if let Some(hits) = self
            .inner
            .index
            .keyword_search(bot_id, &terms, limit)
            .await?
        {
            return Ok(hits.into_iter().map(|h| (h.record, h.score)).collect());
        }
        let entry = lock(&self.inner.keywords)
            .entry(bot_id.to_string())
            .or_default()
            .clone();
        let mut guard = entry.lock().await;
        let stale = match guard.as_ref() {
            None => true,
            Some(k) if k.checked_at.elapsed() >= self.inner.config.keyword_recheck => {
                self.inner.index.count(bot_id, None).await? != k.index.len()
            }
            Some(_) => false,
        };
        if stale {
            let mut index = Bm25Index::new();
            for record in self.inner.index.chunks(bot_id).await? {
                index.add(record);
            }
            *guard = Some(BotKeywords {
                index,
                checked_at: Instant::now(),
            });
        } else if let Some(k) = guard.as_mut() {
            if k.checked_at.elapsed() >= self.inner.config.keyword_recheck {
                k.checked_at = Instant::now();
            }
        }
        Ok(guard
            .as_ref()
            .map(|k| k.index.search(query, limit))
            .unwrap_or_default())
    }
}

/// What the library of documents tells search when it changes a bot's chunks.
#[cfg(feature = "library")]
impl KnowledgeSearcher {
    fn keyword_slot_if_built(&self, bot_id: &str) -> Option<KeywordSlot> {
        lock(&self.inner.keywords).get(bot_id).cloned()
    }

    /// A document's chunks were just indexed: add them to the bot's keyword index, if built.
    pub(crate) async fn keywords_added(&self, bot_id: &str, records: Vec<ChunkRecord>) {
        if let Some(slot) = self.keyword_slot_if_built(bot_id) {
            if let Some(k) = slot.lock().await.as_mut() {
                for record in records {
                    k.index.add(record);
                }
            }
        }
    }

    /// A document was removed: drop its chunks from the bot's keyword index, if built.
    pub(crate) async fn keywords_removed(&self, bot_id: &str, document_id: &str) {
        if let Some(slot) = self.keyword_slot_if_built(bot_id) {
            if let Some(k) = slot.lock().await.as_mut() {
                k.index.retain(|r| r.document_id != document_id);
            }
        }
    }

    /// A bot's documents were all removed: forget its keyword index.
    pub(crate) fn keywords_cleared(&self, bot_id: &str) {
        lock(&self.inner.keywords).remove(bot_id);
    }
}
