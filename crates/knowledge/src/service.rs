//! The library of documents (feature `library`, what the admin API runs): upload → parse →
//! chunk → (background) embed + index with progress; delete a document or clear a bot; search
//! through its [`KnowledgeSearcher`]. The document rows (status, progress, errors) live in the
//! store; chunks and vectors only in the [`VectorIndex`].

use crate::chunk::{chunk, ChunkConfig};
use crate::detect::{detect, ContentKind};
use crate::embed::{embed_batched, Embedder};
use crate::index::{ChunkRecord, VectorIndex};
use crate::parse::{parse_within, ParseLimits};
use crate::search::{KnowledgeSearcher, SearchConfig, SearchHit};
use crate::{KnowledgeError, ParseError};
use callfleet_core::domain::DocumentStatus;
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
    /// What one document may expand into while it is parsed.
    pub parse_limits: ParseLimits,
    /// How long parsing one file may take before the upload fails (the parser's thread is
    /// left to finish on its own, holding its upload slot until it does).
    pub parse_timeout: Duration,
    /// Files parsed at once by this service; an upload beyond that is refused as busy.
    pub max_concurrent_uploads: usize,
    /// Chunks one document may be cut into.
    pub max_chunks_per_document: usize,
    /// Documents one bot may hold.
    pub max_documents_per_bot: usize,
    /// Chunks one bot may hold over all its documents.
    pub max_chunks_per_bot: usize,
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        let search = SearchConfig::default();
        KnowledgeConfig {
            chunking: ChunkConfig::default(),
            max_file_bytes: 20 << 20,
            candidates: search.candidates,
            parse_limits: ParseLimits::default(),
            parse_timeout: Duration::from_secs(60),
            max_concurrent_uploads: 4,
            max_chunks_per_document: 20_000,
            max_documents_per_bot: 1_000,
            max_chunks_per_bot: 200_000,
        }
    }
}

impl KnowledgeConfig {
    fn search(&self) -> SearchConfig {
        SearchConfig {
            candidates: self.candidates,
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
    /// One permit per file being parsed; the parsing thread owns it until it ends.
    parsing: Arc<tokio::sync::Semaphore>,
    /// Held from a bot's quota check to its document row, so racing uploads in this process
    /// cannot both take the last place.
    admission: tokio::sync::Mutex<()>,
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
                parsing: Arc::new(tokio::sync::Semaphore::new(
                    config.max_concurrent_uploads.max(1),
                )),
                config,
                jobs: Mutex::new(HashMap::new()),
                admission: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub fn config(&self) -> &KnowledgeConfig {
        &self.inner.config
    }

    pub fn embedder(&self) -> &dyn Embedder {
        self.inner.embedder.as_ref()
    }

    /// The search half, over the same index.
    pub fn searcher(&self) -> &KnowledgeSearcher {
        &self.inner.searcher
    }

    /// Stores a document and starts indexing it in the background. A file that cannot be read
    /// (wrong type, encrypted, damaged, empty, too slow to parse) is kept as a `failed` document
    /// carrying the reason, with nothing indexed. Refused without a record: a file over the
    /// size limit or one that expands past [`ParseLimits`] (`ParseError::TooLarge`/`Exceeds`),
    /// a bot over its quotas (`KnowledgeError::Quota`), and an upload while
    /// `max_concurrent_uploads` files are being parsed (`KnowledgeError::Busy`).
    pub async fn upload(
        &self,
        company_id: &str,
        bot_id: &str,
        filename: &str,
        bytes: Vec<u8>,
    ) -> Result<KnowledgeDocument, KnowledgeError> {
        let config = &self.inner.config;
        let limit = config.max_file_bytes;
        if bytes.len() > limit {
            return Err(ParseError::TooLarge {
                size: bytes.len(),
                limit,
            }
            .into());
        }
        // Fail fast before parsing; the check that counts is repeated under the admission lock.
        self.check_quotas(bot_id, 0).await?;
        let permit = self
            .inner
            .parsing
            .clone()
            .try_acquire_owned()
            .map_err(|_| KnowledgeError::Busy)?;
        let filename = sanitize_filename(filename);
        let kind = detect(&filename, &bytes);
        let content_type = kind
            .as_ref()
            .map(|k| k.mime())
            .unwrap_or("application/octet-stream");
        let size_bytes = bytes.len() as i64;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let parsed = match kind {
            Ok(kind) => {
                parse_bounded(
                    kind,
                    bytes,
                    config.parse_limits,
                    config.parse_timeout,
                    permit,
                )
                .await
            }
            Err(e) => Err(e),
        };
        let parsed = parsed.and_then(|p| {
            let chunks = chunk(&p.blocks, config.chunking);
            if chunks.len() > config.max_chunks_per_document {
                return Err(ParseError::Exceeds {
                    what: "chunk count",
                    limit: config.max_chunks_per_document,
                });
            }
            Ok((p.pages, chunks))
        });
        if let Err(e @ (ParseError::TooLarge { .. } | ParseError::Exceeds { .. })) = parsed {
            return Err(e.into());
        }
        let admitted = self.inner.admission.lock().await;
        let new_chunks = parsed.as_ref().map_or(0, |(_, c)| c.len());
        self.check_quotas(bot_id, new_chunks).await?;
        let document = self
            .inner
            .store
            .create_knowledge_document(NewKnowledgeDocument {
                bot_id,
                company_id,
                filename: &filename,
                content_type,
                size_bytes,
                sha256: &sha256,
            })
            .await?;
        drop(admitted);
        let (pages, chunks) = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.inner
                    .store
                    .update_knowledge_progress(
                        &document.id,
                        DocumentStatus::Failed,
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
        let total = chunks.len() as i64;
        self.inner
            .store
            .update_knowledge_progress(
                &document.id,
                DocumentStatus::Indexing,
                pages.map(i64::from),
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

    /// Refuses a bot at its document quota, or one whose chunks would pass theirs with
    /// `new_chunks` more. Failed documents count as documents (they are listed and kept) but
    /// hold no chunks.
    async fn check_quotas(&self, bot_id: &str, new_chunks: usize) -> Result<(), KnowledgeError> {
        let config = &self.inner.config;
        let docs = self.inner.store.list_knowledge_documents(bot_id).await?;
        if docs.len() >= config.max_documents_per_bot {
            return Err(KnowledgeError::Quota(format!(
                "the bot already holds {} documents, the limit is {}; delete some first",
                docs.len(),
                config.max_documents_per_bot
            )));
        }
        let held: usize = docs
            .iter()
            .filter(|d| d.status != DocumentStatus::Failed)
            .map(|d| d.chunks_total.max(0) as usize)
            .sum();
        if held + new_chunks > config.max_chunks_per_bot {
            return Err(KnowledgeError::Quota(format!(
                "the bot's documents would hold {} chunks, the limit is {}",
                held + new_chunks,
                config.max_chunks_per_bot
            )));
        }
        Ok(())
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
                    DocumentStatus::Failed,
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

    /// Removes a document: its indexing, its points (vectors and keywords) and its row.
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

/// Parses on a blocking thread that owns `permit` until it ends, and gives up waiting after
/// `timeout`: a file that parses forever fails its upload, and keeps its slot (so at most
/// `max_concurrent_uploads` such threads exist) until the parser returns.
async fn parse_bounded(
    kind: ContentKind,
    bytes: Vec<u8>,
    limits: ParseLimits,
    timeout: Duration,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<crate::parse::ParsedDocument, ParseError> {
    run_bounded(timeout, permit, move || parse_within(kind, &bytes, &limits)).await
}

async fn run_bounded<T: Send + 'static>(
    timeout: Duration,
    permit: tokio::sync::OwnedSemaphorePermit,
    work: impl FnOnce() -> Result<T, ParseError> + Send + 'static,
) -> Result<T, ParseError> {
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    });
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(ParseError::Corrupt(
            "the parser crashed on this file".into(),
        )),
        Err(_) => Err(ParseError::TimedOut {
            secs: timeout.as_secs().max(1),
        }),
    }
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
            .update_knowledge_progress(doc_id, DocumentStatus::Ready, None, 0, 0, None)
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
        let texts: Vec<String> = group.iter().map(embedding_text).collect();
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
            .update_knowledge_progress(
                doc_id,
                DocumentStatus::Indexing,
                None,
                total,
                done as i64,
                None,
            )
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
            if let Err(e) = inner
                .store
                .update_knowledge_progress(doc_id, DocumentStatus::Ready, None, total, total, None)
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
                    .update_knowledge_progress(
                        doc_id,
                        DocumentStatus::Failed,
                        None,
                        total,
                        0,
                        Some(&error),
                    )
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

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the jobs map leaves it consistent (single inserts/removes).
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parse that never ends fails its upload after the timeout, and its slot stays taken
    /// until the parser's thread really returns, so stuck parsers cannot pile up.
    #[tokio::test]
    async fn a_parse_past_its_timeout_fails_and_keeps_its_slot_until_it_ends() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = slots.clone().try_acquire_owned().unwrap();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let outcome = run_bounded(Duration::from_millis(20), permit, move || {
            let _ = wait.recv();
            Ok(())
        })
        .await;
        assert_eq!(outcome, Err(ParseError::TimedOut { secs: 1 }));
        assert!(
            slots.clone().try_acquire_owned().is_err(),
            "the stuck parser still holds its slot"
        );
        release.send(()).unwrap();
        let again = tokio::time::timeout(Duration::from_secs(30), slots.acquire_owned()).await;
        assert!(again.is_ok(), "the slot comes back when the parser ends");
    }

    #[tokio::test]
    async fn a_parser_that_panics_is_a_clear_error() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = slots.clone().try_acquire_owned().unwrap();
        let outcome: Result<(), ParseError> =
            run_bounded(Duration::from_secs(30), permit, || panic!("decoder assert")).await;
        assert!(matches!(outcome, Err(ParseError::Corrupt(_))));
        assert_eq!(slots.available_permits(), 1);
    }
}
