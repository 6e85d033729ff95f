//! A fake Qdrant server speaking the gRPC API that `qdrant-client` uses (no Qdrant binary can be
//! installed here). It keeps collections in memory and implements exactly the RPCs the knowledge
//! crate calls — health check, collection exists/create/list/delete, create field index,
//! upsert, delete (by filter or ids), search, scroll, count — with the checks the real server
//! makes (unknown collection → NOT_FOUND, wrong vector size → INVALID_ARGUMENT, a limit of 0 is
//! invalid). Filters support `must`/`must_not`/`should` of keyword matches, which is all the
//! crate sends; anything else is refused loudly so a change in the crate cannot pass unnoticed.
//! Every other RPC answers UNIMPLEMENTED.

use qdrant_client::qdrant as q;
use qdrant_client::qdrant::collections_server::{Collections, CollectionsServer};
use qdrant_client::qdrant::points_server::{Points, PointsServer};
use qdrant_client::qdrant::qdrant_server::{Qdrant, QdrantServer};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Collection {
    dimension: usize,
    /// Ordered by id, as Qdrant scrolls.
    points: BTreeMap<String, (Vec<f32>, HashMap<String, q::Value>)>,
    indexed_fields: Vec<String>,
}

#[derive(Default, Clone)]
pub struct FakeQdrant {
    collections: Arc<Mutex<HashMap<String, Collection>>>,
}

fn unused(name: &str) -> Status {
    Status::unimplemented(format!("the fake Qdrant does not implement {name}"))
}

fn id_string(id: &Option<q::PointId>) -> Result<String, Status> {
    match id.as_ref().and_then(|i| i.point_id_options.as_ref()) {
        Some(q::point_id::PointIdOptions::Uuid(u)) => {
            uuid::Uuid::parse_str(u)
                .map_err(|_| Status::invalid_argument(format!("bad uuid {u}")))?;
            Ok(u.clone())
        }
        Some(q::point_id::PointIdOptions::Num(n)) => Ok(n.to_string()),
        None => Err(Status::invalid_argument("point without id")),
    }
}

fn point_id(id: &str) -> q::PointId {
    q::PointId {
        point_id_options: Some(q::point_id::PointIdOptions::Uuid(id.to_string())),
    }
}

fn dense(vectors: &Option<q::Vectors>) -> Result<Vec<f32>, Status> {
    match vectors.as_ref().and_then(|v| v.vectors_options.as_ref()) {
        Some(q::vectors::VectorsOptions::Vector(v)) => match &v.vector {
            Some(q::vector::Vector::Dense(d)) => Ok(d.data.clone()),
            #[allow(deprecated)] // older clients still send the flat field
            None if !v.data.is_empty() => Ok(v.data.clone()),
            _ => Err(Status::invalid_argument("only dense vectors are supported")),
        },
        _ => Err(Status::invalid_argument(
            "only a single unnamed vector is supported",
        )),
    }
}

fn keyword_of(value: &q::Value) -> Option<&str> {
    match &value.kind {
        Some(q::value::Kind::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn condition_matches(
    condition: &q::Condition,
    payload: &HashMap<String, q::Value>,
) -> Result<bool, Status> {
    match &condition.condition_one_of {
        Some(q::condition::ConditionOneOf::Field(field)) => {
            match field.r#match.as_ref().and_then(|m| m.match_value.as_ref()) {
                Some(q::r#match::MatchValue::Keyword(k)) => {
                    Ok(payload.get(&field.key).and_then(keyword_of) == Some(k.as_str()))
                }
                _ => Err(Status::invalid_argument(
                    "the fake supports keyword matches only",
                )),
            }
        }
        Some(q::condition::ConditionOneOf::Filter(f)) => filter_matches(Some(f), payload),
        _ => Err(Status::invalid_argument(
            "the fake supports field conditions only",
        )),
    }
}

fn filter_matches(
    filter: Option<&q::Filter>,
    payload: &HashMap<String, q::Value>,
) -> Result<bool, Status> {
    let Some(filter) = filter else {
        return Ok(true);
    };
    if filter.min_should.is_some() {
        return Err(Status::invalid_argument(
            "the fake does not support min_should",
        ));
    }
    for c in &filter.must {
        if !condition_matches(c, payload)? {
            return Ok(false);
        }
    }
    for c in &filter.must_not {
        if condition_matches(c, payload)? {
            return Ok(false);
        }
    }
    if !filter.should.is_empty() {
        let mut any = false;
        for c in &filter.should {
            any |= condition_matches(c, payload)?;
        }
        return Ok(any);
    }
    Ok(true)
}

fn wants_payload(selector: &Option<q::WithPayloadSelector>) -> bool {
    matches!(
        selector.as_ref().and_then(|s| s.selector_options.as_ref()),
        Some(q::with_payload_selector::SelectorOptions::Enable(true))
    )
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

fn completed() -> Option<q::UpdateResult> {
    Some(q::UpdateResult {
        operation_id: Some(0),
        status: q::UpdateStatus::Completed as i32,
    })
}

impl FakeQdrant {
    fn with_collection<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Collection) -> Result<T, Status>,
    ) -> Result<T, Status> {
        let mut collections = self.collections.lock().expect("fake state lock");
        let collection = collections
            .get_mut(name)
            .ok_or_else(|| Status::not_found(format!("Collection `{name}` doesn't exist!")))?;
        f(collection)
    }

    /// How many points a collection holds (tests look behind the API with it).
    pub fn point_count(&self, name: &str) -> usize {
        self.collections
            .lock()
            .expect("fake state lock")
            .get(name)
            .map(|c| c.points.len())
            .unwrap_or(0)
    }

    /// Serves on 127.0.0.1 (a free port) until the test's runtime ends.
    pub async fn start() -> (FakeQdrant, SocketAddr) {
        let fake = FakeQdrant::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Qdrant");
        let addr = listener.local_addr().expect("local addr");
        let router = tonic::transport::Server::builder()
            .add_service(QdrantServer::new(fake.clone()))
            .add_service(CollectionsServer::new(fake.clone()))
            .add_service(PointsServer::new(fake.clone()));
        tokio::spawn(
            router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (fake, addr)
    }
}

#[tonic::async_trait]
impl Qdrant for FakeQdrant {
    async fn health_check(
        &self,
        _: Request<q::HealthCheckRequest>,
    ) -> Result<Response<q::HealthCheckReply>, Status> {
        Ok(Response::new(q::HealthCheckReply {
            title: "qdrant - fake".into(),
            version: "1.20.0".into(),
            commit: None,
        }))
    }
}

#[tonic::async_trait]
impl Collections for FakeQdrant {
    async fn collection_exists(
        &self,
        request: Request<q::CollectionExistsRequest>,
    ) -> Result<Response<q::CollectionExistsResponse>, Status> {
        let exists = self
            .collections
            .lock()
            .expect("fake state lock")
            .contains_key(&request.get_ref().collection_name);
        Ok(Response::new(q::CollectionExistsResponse {
            result: Some(q::CollectionExists { exists }),
            time: 0.0,
        }))
    }

    async fn create(
        &self,
        request: Request<q::CreateCollection>,
    ) -> Result<Response<q::CollectionOperationResponse>, Status> {
        let request = request.into_inner();
        let params = match request.vectors_config.and_then(|c| c.config) {
            Some(q::vectors_config::Config::Params(p)) => p,
            _ => {
                return Err(Status::invalid_argument(
                    "the fake supports one unnamed vector per point",
                ))
            }
        };
        if params.size == 0 {
            return Err(Status::invalid_argument("vector size must be positive"));
        }
        let mut collections = self.collections.lock().expect("fake state lock");
        if collections.contains_key(&request.collection_name) {
            return Err(Status::already_exists(format!(
                "Collection `{}` already exists!",
                request.collection_name
            )));
        }
        collections.insert(
            request.collection_name,
            Collection {
                dimension: params.size as usize,
                ..Default::default()
            },
        );
        Ok(Response::new(q::CollectionOperationResponse {
            result: true,
            time: 0.0,
        }))
    }

    async fn list(
        &self,
        _: Request<q::ListCollectionsRequest>,
    ) -> Result<Response<q::ListCollectionsResponse>, Status> {
        let collections = self
            .collections
            .lock()
            .expect("fake state lock")
            .keys()
            .map(|name| q::CollectionDescription { name: name.clone() })
            .collect();
        Ok(Response::new(q::ListCollectionsResponse {
            collections,
            time: 0.0,
        }))
    }

    async fn delete(
        &self,
        request: Request<q::DeleteCollection>,
    ) -> Result<Response<q::CollectionOperationResponse>, Status> {
        let removed = self
            .collections
            .lock()
            .expect("fake state lock")
            .remove(&request.get_ref().collection_name)
            .is_some();
        Ok(Response::new(q::CollectionOperationResponse {
            result: removed,
            time: 0.0,
        }))
    }

    async fn get(
        &self,
        _: Request<q::GetCollectionInfoRequest>,
    ) -> Result<Response<q::GetCollectionInfoResponse>, Status> {
        Err(unused("get"))
    }
    async fn update(
        &self,
        _: Request<q::UpdateCollection>,
    ) -> Result<Response<q::CollectionOperationResponse>, Status> {
        Err(unused("update"))
    }
    async fn update_aliases(
        &self,
        _: Request<q::ChangeAliases>,
    ) -> Result<Response<q::CollectionOperationResponse>, Status> {
        Err(unused("update_aliases"))
    }
    async fn list_collection_aliases(
        &self,
        _: Request<q::ListCollectionAliasesRequest>,
    ) -> Result<Response<q::ListAliasesResponse>, Status> {
        Err(unused("list_collection_aliases"))
    }
    async fn list_aliases(
        &self,
        _: Request<q::ListAliasesRequest>,
    ) -> Result<Response<q::ListAliasesResponse>, Status> {
        Err(unused("list_aliases"))
    }
    async fn collection_cluster_info(
        &self,
        _: Request<q::CollectionClusterInfoRequest>,
    ) -> Result<Response<q::CollectionClusterInfoResponse>, Status> {
        Err(unused("collection_cluster_info"))
    }
    async fn update_collection_cluster_setup(
        &self,
        _: Request<q::UpdateCollectionClusterSetupRequest>,
    ) -> Result<Response<q::UpdateCollectionClusterSetupResponse>, Status> {
        Err(unused("update_collection_cluster_setup"))
    }
    async fn create_shard_key(
        &self,
        _: Request<q::CreateShardKeyRequest>,
    ) -> Result<Response<q::CreateShardKeyResponse>, Status> {
        Err(unused("create_shard_key"))
    }
    async fn delete_shard_key(
        &self,
        _: Request<q::DeleteShardKeyRequest>,
    ) -> Result<Response<q::DeleteShardKeyResponse>, Status> {
        Err(unused("delete_shard_key"))
    }
    async fn list_shard_keys(
        &self,
        _: Request<q::ListShardKeysRequest>,
    ) -> Result<Response<q::ListShardKeysResponse>, Status> {
        Err(unused("list_shard_keys"))
    }
}

#[tonic::async_trait]
impl Points for FakeQdrant {
    async fn create_field_index(
        &self,
        request: Request<q::CreateFieldIndexCollection>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        let request = request.into_inner();
        self.with_collection(&request.collection_name, |c| {
            c.indexed_fields.push(request.field_name.clone());
            Ok(())
        })?;
        Ok(Response::new(q::PointsOperationResponse {
            result: completed(),
            time: 0.0,
            usage: None,
        }))
    }

    async fn upsert(
        &self,
        request: Request<q::UpsertPoints>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        let request = request.into_inner();
        self.with_collection(&request.collection_name, |c| {
            let mut staged = Vec::new();
            for point in &request.points {
                let vector = dense(&point.vectors)?;
                if vector.len() != c.dimension {
                    return Err(Status::invalid_argument(format!(
                        "Wrong input: Vector dimension error: expected dim: {}, got {}",
                        c.dimension,
                        vector.len()
                    )));
                }
                staged.push((id_string(&point.id)?, vector, point.payload.clone()));
            }
            // All or nothing, like one Qdrant operation.
            for (id, vector, payload) in staged {
                c.points.insert(id, (vector, payload));
            }
            Ok(())
        })?;
        Ok(Response::new(q::PointsOperationResponse {
            result: completed(),
            time: 0.0,
            usage: None,
        }))
    }

    async fn delete(
        &self,
        request: Request<q::DeletePoints>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        let request = request.into_inner();
        let selector = request
            .points
            .and_then(|p| p.points_selector_one_of)
            .ok_or_else(|| Status::invalid_argument("no points selector"))?;
        self.with_collection(&request.collection_name, |c| {
            match selector {
                q::points_selector::PointsSelectorOneOf::Filter(filter) => {
                    let mut doomed = Vec::new();
                    for (id, (_, payload)) in &c.points {
                        if filter_matches(Some(&filter), payload)? {
                            doomed.push(id.clone());
                        }
                    }
                    for id in doomed {
                        c.points.remove(&id);
                    }
                }
                q::points_selector::PointsSelectorOneOf::Points(list) => {
                    for id in &list.ids {
                        c.points.remove(&id_string(&Some(id.clone()))?);
                    }
                }
            }
            Ok(())
        })?;
        Ok(Response::new(q::PointsOperationResponse {
            result: completed(),
            time: 0.0,
            usage: None,
        }))
    }

    async fn search(
        &self,
        request: Request<q::SearchPoints>,
    ) -> Result<Response<q::SearchResponse>, Status> {
        let request = request.into_inner();
        if request.limit == 0 {
            return Err(Status::invalid_argument("limit must be positive"));
        }
        let with_payload = wants_payload(&request.with_payload);
        let result = self.with_collection(&request.collection_name, |c| {
            if request.vector.len() != c.dimension {
                return Err(Status::invalid_argument(format!(
                    "Wrong input: Vector dimension error: expected dim: {}, got {}",
                    c.dimension,
                    request.vector.len()
                )));
            }
            let mut scored = Vec::new();
            for (id, (vector, payload)) in &c.points {
                if filter_matches(request.filter.as_ref(), payload)? {
                    scored.push((cosine(&request.vector, vector), id, payload));
                }
            }
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            Ok(scored
                .into_iter()
                .skip(request.offset.unwrap_or(0) as usize)
                .take(request.limit as usize)
                .map(|(score, id, payload)| q::ScoredPoint {
                    id: Some(point_id(id)),
                    payload: if with_payload {
                        payload.clone()
                    } else {
                        HashMap::new()
                    },
                    score,
                    version: 0,
                    ..Default::default()
                })
                .collect())
        })?;
        Ok(Response::new(q::SearchResponse {
            result,
            time: 0.0,
            usage: None,
        }))
    }

    async fn scroll(
        &self,
        request: Request<q::ScrollPoints>,
    ) -> Result<Response<q::ScrollResponse>, Status> {
        let request = request.into_inner();
        let limit = request.limit.unwrap_or(10) as usize;
        if limit == 0 {
            return Err(Status::invalid_argument("limit must be positive"));
        }
        let with_payload = request
            .with_payload
            .as_ref()
            .map(|s| wants_payload(&Some(s.clone())))
            .unwrap_or(true);
        let start = match &request.offset {
            Some(offset) => Some(id_string(&Some(offset.clone()))?),
            None => None,
        };
        let (result, next) = self.with_collection(&request.collection_name, |c| {
            let mut page = Vec::new();
            let mut next = None;
            let range = match &start {
                Some(s) => c.points.range(s.clone()..),
                None => c.points.range(String::new()..),
            };
            for (id, (_, payload)) in range {
                if !filter_matches(request.filter.as_ref(), payload)? {
                    continue;
                }
                if page.len() == limit {
                    next = Some(point_id(id));
                    break;
                }
                page.push(q::RetrievedPoint {
                    id: Some(point_id(id)),
                    payload: if with_payload {
                        payload.clone()
                    } else {
                        HashMap::new()
                    },
                    ..Default::default()
                });
            }
            Ok((page, next))
        })?;
        Ok(Response::new(q::ScrollResponse {
            next_page_offset: next,
            result,
            time: 0.0,
            usage: None,
        }))
    }

    async fn count(
        &self,
        request: Request<q::CountPoints>,
    ) -> Result<Response<q::CountResponse>, Status> {
        let request = request.into_inner();
        let count = self.with_collection(&request.collection_name, |c| {
            let mut n = 0u64;
            for (_, payload) in c.points.values() {
                if filter_matches(request.filter.as_ref(), payload)? {
                    n += 1;
                }
            }
            Ok(n)
        })?;
        Ok(Response::new(q::CountResponse {
            result: Some(q::CountResult { count }),
            time: 0.0,
            usage: None,
        }))
    }

    async fn get(&self, _: Request<q::GetPoints>) -> Result<Response<q::GetResponse>, Status> {
        Err(unused("get"))
    }
    async fn update_vectors(
        &self,
        _: Request<q::UpdatePointVectors>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unused("update_vectors"))
    }
    async fn delete_vectors(
        &self,
        _: Request<q::DeletePointVectors>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unused("delete_vectors"))
    }
    async fn set_payload(
        &self,
        _: Request<q::SetPayloadPoints>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unused("set_payload"))
    }
    async fn overwrite_payload(
        &self,
        _: Request<q::SetPayloadPoints>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unused("overwrite_payload"))
    }
    async fn delete_payload(
        &self,
        _: Request<q::DeletePayloadPoints>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unused("delete_payload"))
    }
    async fn clear_payload(
        &self,
        _: Request<q::ClearPayloadPoints>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unused("clear_payload"))
    }
    async fn delete_field_index(
        &self,
        _: Request<q::DeleteFieldIndexCollection>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unused("delete_field_index"))
    }
    async fn create_vector_name(
        &self,
        _: Request<q::CreateVectorNameRequest>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unused("create_vector_name"))
    }
    async fn delete_vector_name(
        &self,
        _: Request<q::DeleteVectorNameRequest>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        Err(unused("delete_vector_name"))
    }
    async fn search_batch(
        &self,
        _: Request<q::SearchBatchPoints>,
    ) -> Result<Response<q::SearchBatchResponse>, Status> {
        Err(unused("search_batch"))
    }
    async fn search_groups(
        &self,
        _: Request<q::SearchPointGroups>,
    ) -> Result<Response<q::SearchGroupsResponse>, Status> {
        Err(unused("search_groups"))
    }
    async fn recommend(
        &self,
        _: Request<q::RecommendPoints>,
    ) -> Result<Response<q::RecommendResponse>, Status> {
        Err(unused("recommend"))
    }
    async fn recommend_batch(
        &self,
        _: Request<q::RecommendBatchPoints>,
    ) -> Result<Response<q::RecommendBatchResponse>, Status> {
        Err(unused("recommend_batch"))
    }
    async fn recommend_groups(
        &self,
        _: Request<q::RecommendPointGroups>,
    ) -> Result<Response<q::RecommendGroupsResponse>, Status> {
        Err(unused("recommend_groups"))
    }
    async fn discover(
        &self,
        _: Request<q::DiscoverPoints>,
    ) -> Result<Response<q::DiscoverResponse>, Status> {
        Err(unused("discover"))
    }
    async fn discover_batch(
        &self,
        _: Request<q::DiscoverBatchPoints>,
    ) -> Result<Response<q::DiscoverBatchResponse>, Status> {
        Err(unused("discover_batch"))
    }
    async fn update_batch(
        &self,
        _: Request<q::UpdateBatchPoints>,
    ) -> Result<Response<q::UpdateBatchResponse>, Status> {
        Err(unused("update_batch"))
    }
    async fn query(
        &self,
        _: Request<q::QueryPoints>,
    ) -> Result<Response<q::QueryResponse>, Status> {
        Err(unused("query"))
    }
    async fn query_batch(
        &self,
        _: Request<q::QueryBatchPoints>,
    ) -> Result<Response<q::QueryBatchResponse>, Status> {
        Err(unused("query_batch"))
    }
    async fn query_groups(
        &self,
        _: Request<q::QueryPointGroups>,
    ) -> Result<Response<q::QueryGroupsResponse>, Status> {
        Err(unused("query_groups"))
    }
    async fn facet(
        &self,
        _: Request<q::FacetCounts>,
    ) -> Result<Response<q::FacetResponse>, Status> {
        Err(unused("facet"))
    }
    async fn search_matrix_pairs(
        &self,
        _: Request<q::SearchMatrixPoints>,
    ) -> Result<Response<q::SearchMatrixPairsResponse>, Status> {
        Err(unused("search_matrix_pairs"))
    }
    async fn search_matrix_offsets(
        &self,
        _: Request<q::SearchMatrixPoints>,
    ) -> Result<Response<q::SearchMatrixOffsetsResponse>, Status> {
        Err(unused("search_matrix_offsets"))
    }
}
