//! The embedded backend: one `qdrant-edge` shard in a directory, holding every bot's points.
//! The engine is synchronous and CPU-bound, so every call runs on tokio's blocking pool.

use super::{
    backend, check_dimension, filter_json, record_from_payload, ChunkRecord, VectorHit, VectorIndex,
};
use crate::IndexError;
use callfleet_core::scenario::BoxFuture;
use qdrant_edge::{
    CountRequest, CreateIndex, Distance, EdgeConfigBuilder, EdgeShard, EdgeVectorParamsBuilder,
    FieldIndexOperations, Filter, NamedQuery, PointId, PointInsertOperations, PointOperations,
    PointStruct, QueryEnum, ScrollRequest, SearchRequest, UpdateOperation, VectorInternal,
    WithPayloadInterface, WithVector,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Qdrant's engine, in-process.
#[derive(Clone)]
pub struct EdgeIndex {
    shard: Arc<EdgeShard>,
    dimension: usize,
}

fn filter(bot_id: &str, document_id: Option<&str>) -> Result<Filter, IndexError> {
    serde_json::from_value(filter_json(bot_id, document_id)).map_err(backend)
}

impl EdgeIndex {
    /// Opens the shard in `dir`, creating it (for vectors of `dimension`) if it is new.
    pub fn open(dir: &Path, dimension: usize) -> Result<EdgeIndex, IndexError> {
        std::fs::create_dir_all(dir).map_err(|e| backend(format!("{}: {e}", dir.display())))?;
        let config = EdgeConfigBuilder::new()
            .vector(
                "",
                EdgeVectorParamsBuilder::new(dimension, Distance::Cosine).build(),
            )
            .build();
        let existing = dir.join("edge_config.json").exists();
        let shard = if existing {
            EdgeShard::load(dir, None)
        } else {
            EdgeShard::new(dir, config)
        }
        .map_err(backend)?;
        let index = EdgeIndex {
            shard: Arc::new(shard),
            dimension,
        };
        if existing {
            let stored = index
                .shard
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
        } else {
            // Keyword indexes make the per-bot filter an index lookup instead of a payload scan.
            for field in ["bot_id", "document_id"] {
                let create: CreateIndex = serde_json::from_value(
                    serde_json::json!({ "field_name": field, "field_schema": "keyword" }),
                )
                .map_err(backend)?;
                index
                    .shard
                    .update(UpdateOperation::FieldIndexOperation(
                        FieldIndexOperations::CreateIndex(create),
                    ))
                    .map_err(backend)?;
            }
        }
        Ok(index)
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

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, IndexError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| backend(format!("index task failed: {e}")))?
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
                structs.push(PointStruct::new(point_id(&record.id)?, vector, payload).into());
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
            let request = SearchRequest {
                query: QueryEnum::Nearest(NamedQuery {
                    query: VectorInternal::Dense(vector.to_vec()),
                    using: None,
                }),
                filter: Some(filter(bot_id, None)?),
                params: None,
                limit,
                offset: 0,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: Some(WithVector::Bool(false)),
                score_threshold: None,
            };
            let shard = self.shard.clone();
            let points = blocking(move || shard.search(request).map_err(backend)).await?;
            points
                .into_iter()
                .map(|p| {
                    Ok(VectorHit {
                        record: record_from_payload(
                            p.payload.unwrap_or_default().0.into_iter().collect(),
                        )?,
                        score: p.score,
                    })
                })
                .collect()
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
