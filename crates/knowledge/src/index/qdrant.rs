//! The production backend: a Qdrant server over gRPC (`qdrant-client`). One collection holds
//! every bot's points; the bot id is a keyword payload index marked `is_tenant`, which Qdrant
//! uses to lay out each tenant's points together.

use super::{backend, check_dimension, record_from_payload, ChunkRecord, VectorHit, VectorIndex};
use crate::IndexError;
use callfleet_core::scenario::BoxFuture;
use callfleet_core::secret::Secret;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, KeywordIndexParamsBuilder, PointStruct,
    ScrollPointsBuilder, SearchPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
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
        if !index
            .client
            .collection_exists(collection)
            .await
            .map_err(backend)?
        {
            index
                .client
                .create_collection(
                    CreateCollectionBuilder::new(collection).vectors_config(
                        VectorParamsBuilder::new(dimension as u64, Distance::Cosine),
                    ),
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
                structs.push(PointStruct::new(record.id.clone(), vector, payload));
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
            response
                .result
                .into_iter()
                .map(|p| {
                    Ok(VectorHit {
                        record: record(p.payload)?,
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
