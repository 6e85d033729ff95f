//! The library of documents (feature `library`, what the admin API runs): upload → parse →
//! chunk → (background) embed + index with progress; delete a document or clear a bot; search
//! through its [`KnowledgeSearcher`]. The document rows (status, progress, errors) live in the
//! store; chunks and vectors only in the [`VectorIndex`].

use crate::chunk::{chunk, ChunkConfig};
use crate::detect::{detect, ContentKind};
use crate::embed::{embed_batched, Embedder};
use crate::index::{ChunkRecord, VectorIndex};
use crate::parse::parse;
use crate::search::{lock, KnowledgeSearcher, SearchConfig, SearchHit};
use crate::{KnowledgeError, ParseError};
use callfleet_store::Store;
use callfleet_store::{KnowledgeDocument, NewKnowledgeDocument};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
        let search = SearchConfig::default();
        KnowledgeConfig {
            chunking: ChunkConfig::default(),
            max_file_bytes: 20 << 20,
            candidates: search.candidates,
            keyword_recheck: search.keyword_recheck,
        }
    }
}

impl KnowledgeConfig {
    fn search(&self) -> SearchConfig {
        SearchConfig {
            candidates: self.candidates,
            keyword_recheck: self.keyword_recheck,
        }
    }
}

struct Job {
    cancel: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

struct Inner {
    store: Store,
    index: Arc<dyn VectorIndex>,
    embedder: Arc<dyn Embedder>,
    searcher: KnowledgeSearcher,
    config: KnowledgeConfig,
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

impl KnowledgeService {
    pub fn new(
        store: Store,
        index: Arc<dyn VectorIndex>,
        embedder: Arc<dyn Embedder>,
        config: KnowledgeConfig,
    ) -> Result<Self, KnowledgeError> {
        let searcher = KnowledgeSearcher::new(index.clone(), embedder.clone(), config.search())?;
        Ok(KnowledgeService {
            inner: Arc::new(Inner {
                store,
                index,
                embedder,
                searcher,
                config,
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

    /// The search half, over the same index and keyword indexes.
    pub fn searcher(&self) -> &KnowledgeSearcher {
        &self.inner.searcher
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
        self.inner
            .searcher
            .keywords_removed(bot_id, document_id)
            .await;
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
        self.inner.searcher.keywords_cleared(bot_id);
        Ok(self.inner.store.clear_knowledge_documents(bot_id).await?)
    }

    /// Hybrid search over one bot's chunks (see [`KnowledgeSearcher::search`]).
    pub async fn search(
        &self,
        bot_id: &str,
        query: &str,
        top_k: usize,
    ) -> Result<Vec<SearchHit>, KnowledgeError> {
        self.inner.searcher.search(bot_id, query, top_k).await
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
            inner.searcher.keywords_added(&bot_id, records).await;
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
