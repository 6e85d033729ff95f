//! The knowledge service: upload → parse → chunk → (background) embed + index with progress →
//! hybrid search; delete a document or clear a bot. The document rows (status, progress,
//! errors) live in the store; chunks and vectors only in the [`VectorIndex`].

use crate::chunk::{chunk, ChunkConfig};
use crate::detect::{detect, ContentKind};
use crate::embed::{embed_batched, Embedder};
use crate::index::{ChunkRecord, VectorIndex};
use crate::keyword::{reciprocal_rank_fusion, Bm25Index, RRF_K};
use crate::parse::parse;
use crate::{KnowledgeError, ParseError};
use callfleet_store::Store;
use callfleet_store::{KnowledgeDocument, NewKnowledgeDocument};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Tunables of the service.
#[derive(Debug, Clone)]
pub struct KnowledgeConfig {
    pub chunking: ChunkConfig,
    /// Largest file accepted, in bytes.
    pub max_file_bytes: usize,
    /// How many candidates each retriever (vector, keyword) contributes before fusion.
    pub candidates: usize,
    /// How long a bot's keyword index is trusted before it is compared with the vector index
    /// (another process — the admin API — may have changed the bot's documents).
    pub keyword_recheck: Duration,
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        KnowledgeConfig {
            chunking: ChunkConfig::default(),
            max_file_bytes: 20 << 20,
            candidates: 40,
            keyword_recheck: Duration::from_secs(10),
        }
    }
}

/// A chunk found by [`KnowledgeService::search`].
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

struct Job {
    cancel: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

struct Inner {
    store: Store,
    index: Arc<dyn VectorIndex>,
    embedder: Arc<dyn Embedder>,
    config: KnowledgeConfig,
    keywords: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<BotKeywords>>>>>,
    jobs: Mutex<HashMap<String, Job>>,
}

/// Cheap to clone; every clone is the same service.
#[derive(Clone)]
pub struct KnowledgeService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KnowledgeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeService")
            .field("embedder", &self.inner.embedder.model_id())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these maps leaves them consistent (single inserts/removes).
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl KnowledgeService {
    pub fn new(
        store: Store,
        index: Arc<dyn VectorIndex>,
        embedder: Arc<dyn Embedder>,
        config: KnowledgeConfig,
    ) -> Result<Self, KnowledgeError> {
        if index.dimension() != embedder.dimension() {
            return Err(crate::IndexError::Dimension {
                index: index.dimension(),
                embedder: embedder.dimension(),
            }
            .into());
        }
        Ok(KnowledgeService {
            inner: Arc::new(Inner {
                store,
                index,
                embedder,
                config,
                keywords: Mutex::new(HashMap::new()),
                jobs: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn config(&self) -> &KnowledgeConfig {
        &self.inner.config
    }

    pub fn embedder(&self) -> &dyn Embedder {
        self.inner.embedder.as_ref()
    }

    /// Stores a document and starts indexing it in the background. A file that cannot be read
    /// (wrong type, encrypted, damaged, empty) is kept as a `failed` document carrying the
    /// reason, with nothing indexed; one over the size limit is refused without a record.
    pub async fn upload(
        &self,
        company_id: &str,
        bot_id: &str,
        filename: &str,
        bytes: Vec<u8>,
    ) -> Result<KnowledgeDocument, KnowledgeError> {
        let limit = self.inner.config.max_file_bytes;
        if bytes.len() > limit {
            return Err(ParseError::TooLarge {
                size: bytes.len(),
                limit,
            }
            .into());
        }
        let filename = sanitize_filename(filename);
        let kind = detect(&filename, &bytes);
        let document = self
            .inner
            .store
            .create_knowledge_document(NewKnowledgeDocument {
                bot_id,
                company_id,
                filename: &filename,
                content_type: kind
                    .as_ref()
                    .map(|k| k.mime())
                    .unwrap_or("application/octet-stream"),
                size_bytes: bytes.len() as i64,
                sha256: &hex::encode(Sha256::digest(&bytes)),
            })
            .await?;
        let parsed = match kind {
            Ok(kind) => parse_blocking(kind, bytes).await,
            Err(e) => Err(e),
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.inner
                    .store
                    .update_knowledge_progress(
                        &document.id,
                        "failed",
                        None,
                        0,
                        0,
                        Some(&e.to_string()),
                    )
                    .await?;
                return Ok(self
                    .inner
                    .store
                    .get_knowledge_document(&document.id)
                    .await?);
            }
        };
        let chunks = chunk(&parsed.blocks, self.inner.config.chunking);
        let total = chunks.len() as i64;
        self.inner
            .store
            .update_knowledge_progress(
                &document.id,
                "indexing",
                parsed.pages.map(i64::from),
                total,
                0,
                None,
            )
            .await?;
        let records: Vec<ChunkRecord> = chunks
            .into_iter()
            .map(|c| ChunkRecord {
                id: uuid::Uuid::new_v4().to_string(),
                company_id: company_id.to_string(),
                bot_id: bot_id.to_string(),
                document_id: document.id.clone(),
                source: filename.clone(),
                ordinal: c.ordinal,
                text: c.text,
                page: c.page,
                heading: c.heading,
            })
            .collect();

        let cancel = Arc::new(AtomicBool::new(false));
        let inner = self.inner.clone();
        let (doc_id, task_cancel) = (document.id.clone(), cancel.clone());
        {
            // The job is registered under the lock the task takes to remove itself, so it cannot
            // finish (and remove) before it is inserted.
            let mut jobs = lock(&self.inner.jobs);
            let handle = tokio::spawn(async move {
                index_document(&inner, &doc_id, records, &task_cancel).await;
                lock(&inner.jobs).remove(&doc_id);
            });
            jobs.insert(document.id.clone(), Job { cancel, handle });
        }
        Ok(self
            .inner
            .store
            .get_knowledge_document(&document.id)
            .await?)
    }

    /// Fails the documents a previous process left half-indexed (their background task died
    /// with it and the file itself is not kept): their points are removed and the document
    /// says to upload it again. Call once at start-up, before serving; returns how many.
    pub async fn recover_interrupted(&self) -> Result<usize, KnowledgeError> {
        let unfinished = self
            .inner
            .store
            .list_unfinished_knowledge_documents()
            .await?;
        for doc in &unfinished {
            if lock(&self.inner.jobs).contains_key(&doc.id) {
                continue; // ours, still running
            }
            self.inner
                .index
                .delete_document(&doc.bot_id, &doc.id)
                .await?;
            self.inner
                .store
                .update_knowledge_progress(
                    &doc.id,
                    "failed",
                    None,
                    doc.chunks_total,
                    0,
                    Some("indexing was interrupted by a restart; upload the file again"),
                )
                .await?;
        }
        Ok(unfinished.len())
    }

    /// Waits until a document is no longer being indexed (tests, benchmarks, the CLI).
    pub async fn wait_indexed(
        &self,
        document_id: &str,
    ) -> Result<KnowledgeDocument, KnowledgeError> {
        let job = lock(&self.inner.jobs).remove(document_id);
        if let Some(job) = job {
            let _ = job.handle.await;
        }
        Ok(self.inner.store.get_knowledge_document(document_id).await?)
    }

    /// Stops indexing a document (if running) and waits for its task to end, so nothing is
    /// written for it afterwards.
    async fn stop_job(&self, document_id: &str) {
        let job = lock(&self.inner.jobs).remove(document_id);
        if let Some(job) = job {
            job.cancel.store(true, Ordering::SeqCst);
            let _ = job.handle.await;
        }
    }

    /// Removes a document: its indexing, its points, its keyword entries and its row.
    pub async fn delete_document(
        &self,
        bot_id: &str,
        document_id: &str,
    ) -> Result<(), KnowledgeError> {
        self.stop_job(document_id).await;
        self.inner
            .index
            .delete_document(bot_id, document_id)
            .await?;
        if let Some(entry) = self.keyword_entry_if_built(bot_id) {
            if let Some(k) = entry.lock().await.as_mut() {
                k.index.retain(|r| r.document_id != document_id);
            }
        }
        self.inner
            .store
            .delete_knowledge_document(document_id)
            .await?;
        Ok(())
    }

    /// Removes every document of a bot; returns how many.
    pub async fn clear_bot(&self, bot_id: &str) -> Result<u64, KnowledgeError> {
        for doc in self.inner.store.list_knowledge_documents(bot_id).await? {
            self.stop_job(&doc.id).await;
        }
        self.inner.index.delete_bot(bot_id).await?;
        lock(&self.inner.keywords).remove(bot_id);
        Ok(self.inner.store.clear_knowledge_documents(bot_id).await?)
    }

    fn keyword_entry_if_built(
        &self,
        bot_id: &str,
    ) -> Option<Arc<tokio::sync::Mutex<Option<BotKeywords>>>> {
        lock(&self.inner.keywords).get(bot_id).cloned()
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
        let vector_hits = self.inner.index.search(bot_id, &vector, candidates).await?;
        let keyword_hits = self.keyword_search(bot_id, query, candidates).await?;

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

/// Keeps the last path component and drops control characters: the name is shown back and
/// cited to callers, never used as a path.
fn sanitize_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_string();
    if clean.is_empty() {
        "document".to_string()
    } else {
        clean.chars().take(200).collect()
    }
}

async fn parse_blocking(
    kind: ContentKind,
    bytes: Vec<u8>,
) -> Result<crate::parse::ParsedDocument, ParseError> {
    tokio::task::spawn_blocking(move || parse(kind, &bytes))
        .await
        .unwrap_or_else(|_| {
            Err(ParseError::Corrupt(
                "the parser crashed on this file".into(),
            ))
        })
}

/// The background half of an upload. On any failure the document's points are removed again,
/// so a document is either fully searchable (`ready`) or not at all (`failed`).
async fn index_document(
    inner: &Inner,
    doc_id: &str,
    records: Vec<ChunkRecord>,
    cancel: &AtomicBool,
) {
    let Some(bot_id) = records.first().map(|r| r.bot_id.clone()) else {
        let _ = inner
            .store
            .update_knowledge_progress(doc_id, "ready", None, 0, 0, None)
            .await;
        return;
    };
    let total = records.len() as i64;
    let batch = inner.embedder.max_batch().max(1);
    let mut done = 0usize;
    let mut failure: Option<String> = None;
    for group in records.chunks(batch) {
        if cancel.load(Ordering::SeqCst) {
            failure = Some("cancelled".into());
            break;
        }
        let texts: Vec<String> = group.iter().map(|r| embedding_text(r)).collect();
        let vectors = match embed_batched(inner.embedder.as_ref(), &texts, |_| {}).await {
            Ok(v) => v,
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        };
        if let Err(e) = inner
            .index
            .upsert(group.iter().cloned().zip(vectors).collect())
            .await
        {
            failure = Some(e.to_string());
            break;
        }
        done += group.len();
        if let Err(e) = inner
            .store
            .update_knowledge_progress(doc_id, "indexing", None, total, done as i64, None)
            .await
        {
            // The row is gone (deleted meanwhile): stop, and take the points back out below.
            failure = Some(e.to_string());
            break;
        }
    }
    match failure {
        None => {
            let _ = inner.index.optimize().await;
            let entry = lock(&inner.keywords).get(&bot_id).cloned();
            if let Some(entry) = entry {
                if let Some(k) = entry.lock().await.as_mut() {
                    for record in records {
                        k.index.add(record);
                    }
                }
            }
            if let Err(e) = inner
                .store
                .update_knowledge_progress(doc_id, "ready", None, total, total, None)
                .await
            {
                tracing::warn!(document_id = %doc_id, error = %e, "Could not mark a document ready.");
            }
        }
        Some(error) => {
            if let Err(e) = inner.index.delete_document(&bot_id, doc_id).await {
                tracing::error!(document_id = %doc_id, error = %e, "Could not remove a failed document's points.");
            }
            if error != "cancelled" {
                tracing::warn!(document_id = %doc_id, error = %error, "Indexing a document failed.");
                let _ = inner
                    .store
                    .update_knowledge_progress(doc_id, "failed", None, total, 0, Some(&error))
                    .await;
            }
        }
    }
}

/// What is embedded for a chunk: its section heading gives the passage its topic, which the
/// passage itself often does not repeat ("Refunds" → "within 14 days of purchase").
fn embedding_text(record: &ChunkRecord) -> String {
    match &record.heading {
        Some(h) => format!("{h}\n{}", record.text),
        None => record.text.clone(),
    }
}
