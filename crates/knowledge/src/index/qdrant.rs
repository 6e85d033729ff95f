//! The production backend: a Qdrant server over gRPC (`qdrant-client`). One collection holds
//! every bot's points; the bot id is a keyword payload index marked `is_tenant`, which Qdrant
//! uses to lay out each tenant's points together. Each point holds the chunk's embedding (the
//! unnamed dense vector) and its BM25 term weights (the sparse vector `keywords`, which the
//! server weighs by IDF). A collection made before keyword vectors existed gets the sparse
//! vector added (Qdrant ≥ 1.18) and every point's keyword vector filled in when it is opened.

use super::{
    backend, check_dimension, record_from_payload, ChunkRecord, VectorHit, VectorIndex, KEYWORDS,
};
use crate::keyword::{document_sparse, SparseTerms};
use crate::IndexError;
use callfleet_core::scenario::BoxFuture;
use callfleet_core::secret::Secret;
use qdrant_client::qdrant::{
    create_vector_name_request, Condition, CountPointsBuilder, CreateCollectionBuilder,
    CreateFieldIndexCollectionBuilder, CreateVectorNameRequest, DeletePointsBuilder, Distance,
    FieldType, Filter, GetCollectionInfoRequest, KeywordIndexParamsBuilder, Modifier, NamedVectors,
    PointStruct, PointVectors, Query, QueryPointsBuilder, ScoredPoint, ScrollPointsBuilder,
    SearchPointsBuilder, SparseVectorCreationConfig, SparseVectorParamsBuilder,
    SparseVectorsConfigBuilder, UpdatePointVectors, UpsertPointsBuilder, Vector, VectorInput,
    VectorParamsBuilder, Vectors,
};
use qdrant_client::{Payload, Qdrant};
use std::collections::HashMap;

/// A collection on a Qdrant server.
pub struct QdrantIndex {
    client: Qdrant,
    collection: String,
    dimension: usize,
}

fn filter(bot_id: &str, document_id: Option<&str>) -> Filter {
    let mut must = vec![Condition::matches("bot_id", bot_id.to_string())];
    if let Some(doc) = document_id {
        must.push(Condition::matches("document_id", doc.to_string()));
    }
    Filter::must(must)
}

/// Scored points as hits, their payloads read back into chunks.
fn hits(points: Vec<ScoredPoint>) -> Result<Vec<VectorHit>, IndexError> {
    points
        .into_iter()
        .map(|p| {
            Ok(VectorHit {
                record: record(p.payload)?,
                score: p.score,
            })
        })
        .collect()
}

fn record(
    payload: HashMap<String, qdrant_client::qdrant::Value>,
) -> Result<ChunkRecord, IndexError> {
    record_from_payload(
        payload
            .into_iter()
            .map(|(k, v)| (k, v.into_json()))
            .collect(),
    )
}

fn sparse(terms: &SparseTerms) -> Vector {
    Vector::new_sparse(terms.indices.clone(), terms.values.clone())
}

impl QdrantIndex {
    /// Connects to `url` (gRPC, e.g. `http://qdrant:6334`) and creates `collection` with its
    /// payload indexes if it does not exist.
    pub async fn connect(
        url: &str,
        api_key: Option<Secret>,
        collection: &str,
        dimension: usize,
    ) -> Result<QdrantIndex, IndexError> {
        // The version check runs a blocking health check on a side thread at build time; our
        // first call (collection_exists) proves the connection anyway.
        let mut builder = Qdrant::from_url(url)
            .timeout(std::time::Duration::from_secs(30))
            .skip_compatibility_check();
        if let Some(key) = api_key.filter(|k| !k.is_empty()) {
            builder = builder.api_key(key.expose().to_string());
        }
        let client = builder.build().map_err(backend)?;
        let index = QdrantIndex {
            client,
            collection: collection.to_string(),
            dimension,
        };
        if index
            .client
            .collection_exists(collection)
            .await
            .map_err(backend)?
        {
            index.add_keywords_if_missing().await?;
        } else {
            let mut sparse = SparseVectorsConfigBuilder::default();
            sparse.add_named_vector_params(
                KEYWORDS,
                SparseVectorParamsBuilder::default().modifier(Modifier::Idf),
            );
            index
                .client
                .create_collection(
                    CreateCollectionBuilder::new(collection)
                        .vectors_config(VectorParamsBuilder::new(
                            dimension as u64,
                            Distance::Cosine,
                        ))
                        .sparse_vectors_config(sparse),
                )
                .await
                .map_err(backend)?;
            index
                .client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(
                        collection,
                        "bot_id",
                        FieldType::Keyword,
                    )
                    .field_index_params(
                        KeywordIndexParamsBuilder::default().is_tenant(true).build(),
                    )
                    .wait(true),
                )
                .await
                .map_err(backend)?;
            index
                .client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(
                        collection,
                        "document_id",
                        FieldType::Keyword,
                    )
                    .wait(true),
                )
                .await
                .map_err(backend)?;
        }
        Ok(index)
    }

    /// Upgrades a collection made before keyword vectors: adds the sparse vector if it is
    /// missing, then fills in the keyword vector of every point that has none, from its stored
    /// text (embeddings stay as they are). Run at every connect, so an upgrade a crash
    /// interrupted is finished by the next process; once done it is one filtered scroll that
    /// finds nothing.
    async fn add_keywords_if_missing(&self) -> Result<(), IndexError> {
        let info = self
            .client
            .collection_info(GetCollectionInfoRequest {
                collection_name: self.collection.clone(),
            })
            .await
            .map_err(backend)?;
        let has_keywords = info
            .result
            .and_then(|i| i.config)
            .and_then(|c| c.params)
            .and_then(|p| p.sparse_vectors_config)
            .is_some_and(|s| s.map.contains_key(KEYWORDS));
        if !has_keywords {
            tracing::info!(collection = %self.collection, "Adding keyword vectors to the knowledge collection.");
            self.client
                .create_vector_name(CreateVectorNameRequest {
                    collection_name: self.collection.clone(),
                    wait: Some(true),
                    vector_name: KEYWORDS.to_string(),
                    vector_config: Some(create_vector_name_request::VectorConfig::SparseConfig(
                        SparseVectorCreationConfig {
                            modifier: Some(Modifier::Idf as i32),
                            datatype: None,
                        },
                    )),
                    ..Default::default()
                })
                .await
                .map_err(backend)?;
        }
        let mut filled = 0usize;
        loop {
            // Filled points leave the filter, so each page is read from the start.
            let page = self
                .client
                .scroll(
                    ScrollPointsBuilder::new(&self.collection)
                        .filter(Filter::must_not([Condition::has_vector(KEYWORDS)]))
                        .limit(500)
                        .with_payload(true),
                )
                .await
                .map_err(backend)?;
            if page.result.is_empty() {
                break;
            }
            let mut points = Vec::with_capacity(page.result.len());
            for point in page.result {
                let chunk = record(point.payload)?;
                points.push(PointVectors {
                    id: point.id,
                    vectors: Some(
                        NamedVectors::default()
                            .add_vector(KEYWORDS, sparse(&document_sparse(&chunk.text)))
                            .into(),
                    ),
                });
            }
            filled += points.len();
            self.client
                .update_vectors(UpdatePointVectors {
                    collection_name: self.collection.clone(),
                    wait: Some(true),
                    points,
                    ..Default::default()
                })
                .await
                .map_err(backend)?;
        }
        if filled > 0 {
            tracing::info!(collection = %self.collection, points = filled, "Keyword vectors added.");
        }
        Ok(())
    }

    async fn delete_where(&self, filter: Filter) -> Result<(), IndexError> {
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(filter)
                    .wait(true),
            )
            .await
            .map_err(backend)?;
        Ok(())
    }
}

impl VectorIndex for QdrantIndex {
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
                let payload = Payload::try_from(serde_json::to_value(&record).map_err(backend)?)
                    .map_err(backend)?;
                let vectors: Vectors = NamedVectors::default()
                    .add_vector("", Vector::new_dense(vector))
                    .add_vector(KEYWORDS, sparse(&document_sparse(&record.text)))
                    .into();
                structs.push(PointStruct::new(record.id.clone(), vectors, payload));
            }
            self.client
                .upsert_points(UpsertPointsBuilder::new(&self.collection, structs).wait(true))
                .await
                .map_err(backend)?;
            Ok(())
        })
    }

    fn search<'a>(
        &'a self,
        bot_id: &'a str,
        vector: &'a [f32],
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<VectorHit>, IndexError>> {
        Box::pin(async move {
            let response = self
                .client
                .search_points(
                    SearchPointsBuilder::new(&self.collection, vector.to_vec(), limit as u64)
                        .filter(filter(bot_id, None))
                        .with_payload(true),
                )
                .await
                .map_err(backend)?;
            hits(response.result)
        })
    }

    fn keyword_search<'a>(
        &'a self,
        bot_id: &'a str,
        terms: &'a SparseTerms,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<Vec<VectorHit>>, IndexError>> {
        Box::pin(async move {
            if terms.is_empty() || limit == 0 {
                return Ok(Some(Vec::new()));
            }
            let response = self
                .client
                .query(
                    QueryPointsBuilder::new(&self.collection)
                        .query(Query::new_nearest(VectorInput::new_sparse(
                            terms.indices.clone(),
                            terms.values.clone(),
                        )))
                        .using(KEYWORDS)
                        .filter(filter(bot_id, None))
                        .limit(limit as u64)
                        .with_payload(true),
                )
                .await
                .map_err(backend)?;
            let mut points = response.result;
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
            let mut out = Vec::new();
            let mut offset = None;
            loop {
                let mut request = ScrollPointsBuilder::new(&self.collection)
                    .filter(filter(bot_id, None))
                    .limit(1000)
                    .with_payload(true);
                if let Some(offset) = offset.take() {
                    request = request.offset(offset);
                }
                let page = self.client.scroll(request).await.map_err(backend)?;
                for point in page.result {
                    out.push(record(point.payload)?);
                }
                match page.next_page_offset {
                    Some(next) if next.point_id_options.is_some() => offset = Some(next),
                    _ => break,
                }
            }
            Ok(out)
        })
    }

    fn count<'a>(
        &'a self,
        bot_id: &'a str,
        document_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize, IndexError>> {
        Box::pin(async move {
            let response = self
                .client
                .count(
                    CountPointsBuilder::new(&self.collection)
                        .filter(filter(bot_id, document_id))
                        .exact(true),
                )
                .await
                .map_err(backend)?;
            Ok(response.result.map(|r| r.count as usize).unwrap_or(0))
        })
    }

    fn delete_document<'a>(
        &'a self,
        bot_id: &'a str,
        document_id: &'a str,
    ) -> BoxFuture<'a, Result<(), IndexError>> {
        Box::pin(self.delete_where(filter(bot_id, Some(document_id))))
    }

    fn delete_bot<'a>(&'a self, bot_id: &'a str) -> BoxFuture<'a, Result<(), IndexError>> {
        Box::pin(self.delete_where(filter(bot_id, None)))
    }
}
