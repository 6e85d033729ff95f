//! The embedded backend: one `qdrant-edge` shard in a directory, holding every bot's points.
//! The engine is synchronous and CPU-bound, so every call runs on tokio's blocking pool.

use super::{
    backend, check_dimension, filter_json, record_from_payload, ChunkRecord, VectorHit,
    VectorIndex, KEYWORDS,
};
use crate::keyword::SparseTerms;
use crate::IndexError;
use callfleet_core::scenario::BoxFuture;
use qdrant_edge::{
    CountRequest, CreateIndex, Distance, EdgeConfigBuilder, EdgeShard,
    EdgeSparseVectorParamsBuilder, EdgeVectorParamsBuilder, FieldIndexOperations, Filter, Modifier,
    NamedQuery, PointId, PointInsertOperations, PointOperations, PointStruct, QueryEnum,
    ScrollRequest, SearchRequest, SparseVector, UpdateOperation, Vector, VectorInternal,
    VectorStructInternal, Vectors, WithPayloadInterface, WithVector,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Qdrant's engine, in-process.
#[derive(Clone)]
pub struct EdgeIndex {
    shard: Arc<EdgeShard>,
    dimension: usize,
    /// Whether points carry the sparse keyword vector ([`KEYWORDS`]).
    keywords: bool,
}

fn filter(bot_id: &str, document_id: Option<&str>) -> Result<Filter, IndexError> {
    serde_json::from_value(filter_json(bot_id, document_id)).map_err(backend)
}

impl EdgeIndex {
    /// Opens the shard in `dir`, creating it (for vectors of `dimension`) if it is new. A shard
    /// made before keyword vectors existed is upgraded first (see [`upgrade`](Self::upgrade)).
    pub fn open(dir: &Path, dimension: usize) -> Result<EdgeIndex, IndexError> {
        recover_upgrade(dir)?;
        if dir.join("edge_config.json").exists() {
            let shard = EdgeShard::load(dir, None).map_err(backend)?;
            if shard.config().sparse_vectors.contains_key(KEYWORDS) {
                return Self::loaded(shard, dimension);
            }
            Self::upgrade(dir, shard, dimension)?;
        }
        Self::open_with(dir, dimension, true)
    }

    /// Opens (or creates) the shard as it is, never upgrading it: a new shard gets keyword
    /// vectors only when `keywords` is set (unset makes a shard as they were before keyword
    /// vectors, which the upgrade's tests need). Use [`open`](Self::open).
    pub fn open_with(
        dir: &Path,
        dimension: usize,
        keywords: bool,
    ) -> Result<EdgeIndex, IndexError> {
        std::fs::create_dir_all(dir).map_err(|e| backend(format!("{}: {e}", dir.display())))?;
        if dir.join("edge_config.json").exists() {
            return Self::loaded(EdgeShard::load(dir, None).map_err(backend)?, dimension);
        }
        let shard = EdgeShard::new(dir, config(dimension, keywords)).map_err(backend)?;
        let index = EdgeIndex {
            shard: Arc::new(shard),
            dimension,
            keywords,
        };
        index.create_payload_indexes()?;
        Ok(index)
    }

    /// An existing shard, refused if its vectors are not of `dimension`.
    fn loaded(shard: EdgeShard, dimension: usize) -> Result<EdgeIndex, IndexError> {
        let stored = shard
            .config()
            .vectors
            .get("")
            .map(|v| v.size)
            .unwrap_or(dimension);
        if stored != dimension {
            return Err(IndexError::Dimension {
                index: stored,
                embedder: dimension,
            });
        }
        let keywords = shard.config().sparse_vectors.contains_key(KEYWORDS);
        Ok(EdgeIndex {
            shard: Arc::new(shard),
            dimension,
            keywords,
        })
    }

    /// Keyword indexes make the per-bot filter an index lookup instead of a payload scan.
    fn create_payload_indexes(&self) -> Result<(), IndexError> {
        for field in ["bot_id", "document_id"] {
            let create: CreateIndex = serde_json::from_value(
                serde_json::json!({ "field_name": field, "field_schema": "keyword" }),
            )
            .map_err(backend)?;
            self.shard
                .update(UpdateOperation::FieldIndexOperation(
                    FieldIndexOperations::CreateIndex(create),
                ))
                .map_err(backend)?;
        }
        Ok(())
    }

    /// Rebuilds a shard made without keyword vectors (the engine cannot add a vector to
    /// existing segments): every point is copied, embedding and payload as stored, into a new
    /// shard beside it with its keyword vector computed from its text; then the new shard takes
    /// the old one's place. Nothing is re-embedded. Each step leaves a state that
    /// [`recover_upgrade`] completes or undoes, so a crash midway loses nothing.
    fn upgrade(dir: &Path, old: EdgeShard, dimension: usize) -> Result<(), IndexError> {
        let stored = old.config().vectors.get("").map(|v| v.size);
        if stored.is_some_and(|size| size != dimension) {
            // Refused by `open_with` with the right error; nothing to upgrade.
            return Ok(());
        }
        let (fresh_dir, old_dir) = upgrade_dirs(dir);
        tracing::info!(dir = %dir.display(), "Adding keyword vectors to the knowledge index.");
        if fresh_dir.exists() {
            std::fs::remove_dir_all(&fresh_dir).map_err(backend)?;
        }
        let fresh = EdgeIndex::open_with(&fresh_dir, dimension, true)?;
        let mut offset = None;
        let mut copied = 0usize;
        loop {
            let request = ScrollRequest {
                offset,
                limit: Some(1000),
                filter: None,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: WithVector::Bool(true),
                order_by: None,
            };
            let (records, next) = old.scroll(request).map_err(backend)?;
            let mut points = Vec::with_capacity(records.len());
            for r in records {
                let payload: serde_json::Map<String, serde_json::Value> =
                    r.payload.unwrap_or_default().0.into_iter().collect();
                let record = record_from_payload(payload.clone())?;
                let dense = match r.vector {
                    Some(VectorStructInternal::Single(v)) => v,
                    Some(VectorStructInternal::Named(mut named)) => match named.remove("") {
                        Some(VectorInternal::Dense(v)) => v,
                        _ => return Err(backend(format!("point {} has no embedding", record.id))),
                    },
                    _ => return Err(backend(format!("point {} has no embedding", record.id))),
                };
                points.push(fresh.point(r.id, &record.text, dense, payload.into())?);
            }
            copied += points.len();
            fresh
                .shard
                .update(UpdateOperation::PointOperation(
                    PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)),
                ))
                .map_err(backend)?;
            match next {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        fresh.shard.optimize().map_err(backend)?;
        drop(fresh);
        drop(old);
        std::fs::rename(dir, &old_dir).map_err(backend)?;
        std::fs::rename(&fresh_dir, dir).map_err(backend)?;
        std::fs::remove_dir_all(&old_dir).map_err(backend)?;
        tracing::info!(dir = %dir.display(), points = copied, "Keyword vectors added.");
        Ok(())
    }

    /// A point as this shard stores it: the embedding, and the keyword vector of `text` when
    /// the shard has keyword vectors.
    fn point(
        &self,
        id: PointId,
        text: &str,
        dense: Vec<f32>,
        payload: serde_json::Value,
    ) -> Result<qdrant_edge::PointStructPersisted, IndexError> {
        let vectors: Vectors = if self.keywords {
            let terms = crate::keyword::document_sparse(text);
            let sparse = Vector::new_sparse(terms.indices, terms.values).map_err(backend)?;
            Vectors::new_named([("", Vector::new_dense(dense)), (KEYWORDS, sparse)])
        } else {
            dense.into()
        };
        Ok(PointStruct::new(id, vectors, payload).into())
    }

    /// Where a data dir keeps the shard for an embedding model.
    pub fn dir_in(data_dir: &Path, model_id: &str, dimension: usize) -> PathBuf {
        let safe: String = model_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        data_dir
            .join("knowledge")
            .join(format!("{safe}-{dimension}"))
    }

    fn delete_where(&self, filter: Filter) -> BoxFuture<'_, Result<(), IndexError>> {
        let shard = self.shard.clone();
        Box::pin(blocking(move || {
            shard
                .update(UpdateOperation::PointOperation(
                    PointOperations::DeletePointsByFilter(filter),
                ))
                .map_err(backend)
        }))
    }
}

fn config(dimension: usize, keywords: bool) -> qdrant_edge::EdgeConfig {
    let mut config = EdgeConfigBuilder::new().vector(
        "",
        EdgeVectorParamsBuilder::new(dimension, Distance::Cosine).build(),
    );
    if keywords {
        config = config.sparse_vector(
            KEYWORDS,
            EdgeSparseVectorParamsBuilder::new()
                .modifier(Modifier::Idf)
                .build(),
        );
    }
    config.build()
}

/// Where an upgrade builds the new shard, and where the old one waits until it is replaced.
fn upgrade_dirs(dir: &Path) -> (PathBuf, PathBuf) {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (
        dir.with_file_name(format!("{name}.upgrading")),
        dir.with_file_name(format!("{name}.before-keywords")),
    )
}

/// Completes or undoes an upgrade a crash interrupted. The new shard is moved into place only
/// once it is whole, so: no shard in `dir` but the old one aside means the crash came between
/// the two renames (the new one, if there, is whole: move it in; else put the old one back);
/// whatever is left aside after that is stale.
fn recover_upgrade(dir: &Path) -> Result<(), IndexError> {
    let (fresh, old) = upgrade_dirs(dir);
    if !dir.exists() && old.exists() {
        let whole = if fresh.exists() { &fresh } else { &old };
        std::fs::rename(whole, dir).map_err(backend)?;
    }
    for stale in [fresh, old] {
        if stale.exists() {
            std::fs::remove_dir_all(&stale).map_err(backend)?;
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, IndexError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| backend(format!("index task failed: {e}")))?
}

impl EdgeIndex {
    /// One bot's `limit` points nearest `query` in the vector `using` (the dense one when
    /// `None`), with their payloads.
    async fn nearest(
        &self,
        bot_id: &str,
        query: VectorInternal,
        using: Option<String>,
        limit: usize,
    ) -> Result<Vec<qdrant_edge::ScoredPoint>, IndexError> {
        let request = SearchRequest {
            query: QueryEnum::Nearest(NamedQuery { query, using }),
            filter: Some(filter(bot_id, None)?),
            params: None,
            limit,
            offset: 0,
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: Some(WithVector::Bool(false)),
            score_threshold: None,
        };
        let shard = self.shard.clone();
        blocking(move || shard.search(request).map_err(backend)).await
    }
}

fn hits(points: Vec<qdrant_edge::ScoredPoint>) -> Result<Vec<VectorHit>, IndexError> {
    points
        .into_iter()
        .map(|p| {
            Ok(VectorHit {
                record: record_from_payload(p.payload.unwrap_or_default().0.into_iter().collect())?,
                score: p.score,
            })
        })
        .collect()
}

fn point_id(id: &str) -> Result<PointId, IndexError> {
    uuid::Uuid::parse_str(id)
        .map(PointId::Uuid)
        .map_err(|e| backend(format!("point id {id}: {e}")))
}

impl VectorIndex for EdgeIndex {
    fn dimension(&self) -> usize {
        self.dimension
    }

    fn upsert(
        &self,
        points: Vec<(ChunkRecord, Vec<f32>)>,
    ) -> BoxFuture<'_, Result<(), IndexError>> {
        Box::pin(async move {
            check_dimension(self.dimension, &points)?;
            let mut structs = Vec::with_capacity(points.len());
            for (record, vector) in points {
                let payload = serde_json::to_value(&record).map_err(backend)?;
                let id = point_id(&record.id)?;
                let vectors: Vectors = if self.keywords {
                    let terms = crate::keyword::document_sparse(&record.text);
                    let sparse =
                        Vector::new_sparse(terms.indices, terms.values).map_err(backend)?;
                    Vectors::new_named([("", Vector::new_dense(vector)), (KEYWORDS, sparse)])
                } else {
                    vector.into()
                };
                structs.push(PointStruct::new(id, vectors, payload).into());
            }
            let shard = self.shard.clone();
            blocking(move || {
                shard
                    .update(UpdateOperation::PointOperation(
                        PointOperations::UpsertPoints(PointInsertOperations::PointsList(structs)),
                    ))
                    .map_err(backend)
            })
            .await
        })
    }

    fn search<'a>(
        &'a self,
        bot_id: &'a str,
        vector: &'a [f32],
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<VectorHit>, IndexError>> {
        Box::pin(async move {
            let query = VectorInternal::Dense(vector.to_vec());
            hits(self.nearest(bot_id, query, None, limit).await?)
        })
    }

    fn keyword_search<'a>(
        &'a self,
        bot_id: &'a str,
        terms: &'a SparseTerms,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<Vec<VectorHit>>, IndexError>> {
        Box::pin(async move {
            if !self.keywords {
                return Ok(None);
            }
            if terms.is_empty() {
                return Ok(Some(Vec::new()));
            }
            let query =
                SparseVector::new(terms.indices.clone(), terms.values.clone()).map_err(backend)?;
            let query = VectorInternal::Sparse(query);
            let mut points = self
                .nearest(bot_id, query, Some(KEYWORDS.to_string()), limit)
                .await?;
            // A full scan (a bot with few chunks) scores passages that share no term, too.
            points.retain(|p| p.score > 0.0);
            hits(points).map(Some)
        })
    }

    fn chunks<'a>(
        &'a self,
        bot_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ChunkRecord>, IndexError>> {
        Box::pin(async move {
            let filter = filter(bot_id, None)?;
            let shard = self.shard.clone();
            blocking(move || {
                let mut out = Vec::new();
                let mut offset = None;
                loop {
                    let request = ScrollRequest {
                        offset,
                        limit: Some(1000),
                        filter: Some(filter.clone()),
                        with_payload: Some(WithPayloadInterface::Bool(true)),
                        with_vector: WithVector::Bool(false),
                        order_by: None,
                    };
                    let (records, next) = shard.scroll(request).map_err(backend)?;
                    for r in records {
                        out.push(record_from_payload(
                            r.payload.unwrap_or_default().0.into_iter().collect(),
                        )?);
                    }
                    match next {
                        Some(next) => offset = Some(next),
                        None => break,
                    }
                }
                Ok(out)
            })
            .await
        })
    }

    fn count<'a>(
        &'a self,
        bot_id: &'a str,
        document_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize, IndexError>> {
        Box::pin(async move {
            let request = CountRequest {
                filter: Some(filter(bot_id, document_id)?),
                exact: true,
            };
            let shard = self.shard.clone();
            blocking(move || shard.count(request).map_err(backend)).await
        })
    }

    fn delete_document<'a>(
        &'a self,
        bot_id: &'a str,
        document_id: &'a str,
    ) -> BoxFuture<'a, Result<(), IndexError>> {
        match filter(bot_id, Some(document_id)) {
            Ok(f) => self.delete_where(f),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn delete_bot<'a>(&'a self, bot_id: &'a str) -> BoxFuture<'a, Result<(), IndexError>> {
        match filter(bot_id, None) {
            Ok(f) => self.delete_where(f),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    /// Builds the HNSW graphs of filled segments: qdrant-edge has no background optimiser.
    fn optimize(&self) -> BoxFuture<'_, Result<(), IndexError>> {
        let shard = self.shard.clone();
        Box::pin(blocking(move || {
            shard.optimize().map(|_| ()).map_err(backend)
        }))
    }
}
