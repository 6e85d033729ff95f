//! A fake Qdrant server speaking the gRPC API that `qdrant-client` uses (no Qdrant binary can be
//! installed here). It keeps collections in memory and implements exactly the RPCs the knowledge
//! crate calls — health check, collection exists/create/info/list/delete, create field index,
//! create vector name, upsert, update vectors, delete (by filter or ids), search, query, scroll,
//! count — with the checks the real server makes (unknown collection → NOT_FOUND, wrong vector
//! size or an unknown vector name → INVALID_ARGUMENT, a limit of 0 is invalid).
//!
//! Points hold the unnamed dense vector and any named sparse vectors the collection declares.
//! A sparse query scores as Qdrant does: the dot product over shared indices, each query weight
//! multiplied by the index's IDF, ln((N − df + 0.5)/(df + 0.5) + 1), when the vector's modifier
//! is `Idf` (N: points holding the vector, df: those with a weight at that index); points that
//! share no index with the query are not returned. The Query API is served for one `nearest`
//! query (dense or sparse, `using` naming the vector) with no prefetch, which is all the crate
//! sends. Filters support `must`/`must_not`/`should` of keyword matches. Anything else is
//! refused loudly so a change in the crate cannot pass unnoticed; every other RPC answers
//! UNIMPLEMENTED.

use qdrant_client::qdrant as q;
use qdrant_client::qdrant::collections_server::{Collections, CollectionsServer};
use qdrant_client::qdrant::points_server::{Points, PointsServer};
use qdrant_client::qdrant::qdrant_server::{Qdrant, QdrantServer};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};

/// A sparse vector as stored: index → weight.
type Sparse = BTreeMap<u32, f32>;

struct Point {
    dense: Vec<f32>,
    sparse: HashMap<String, Sparse>,
    payload: HashMap<String, q::Value>,
}

#[derive(Default)]
struct Collection {
    dimension: usize,
    /// Declared sparse vectors: name → whether the IDF modifier applies.
    sparse_vectors: BTreeMap<String, bool>,
    /// Ordered by id, as Qdrant scrolls.
    points: BTreeMap<String, Point>,
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

/// One vector of a point as sent: dense or sparse.
enum Sent {
    Dense(Vec<f32>),
    Sparse(Sparse),
}

fn sparse_of(values: &[f32], indices: &[u32]) -> Result<Sparse, Status> {
    if values.len() != indices.len() {
        return Err(Status::invalid_argument(
            "Wrong input: Sparse vector indices and values must have the same length",
        ));
    }
    let mut out = Sparse::new();
    for (i, v) in indices.iter().zip(values) {
        if out.insert(*i, *v).is_some() {
            return Err(Status::invalid_argument(
                "Wrong input: Sparse vector indices must be unique",
            ));
        }
    }
    Ok(out)
}

fn sent(vector: &q::Vector) -> Result<Sent, Status> {
    match &vector.vector {
        Some(q::vector::Vector::Dense(d)) => Ok(Sent::Dense(d.data.clone())),
        Some(q::vector::Vector::Sparse(s)) => Ok(Sent::Sparse(sparse_of(&s.values, &s.indices)?)),
        Some(_) => Err(Status::invalid_argument(
            "the fake supports dense and sparse vectors only",
        )),
        #[allow(deprecated)] // older clients send the flat fields
        None => match &vector.indices {
            Some(indices) => Ok(Sent::Sparse(sparse_of(&vector.data, &indices.data)?)),
            None => Ok(Sent::Dense(vector.data.clone())),
        },
    }
}

/// A point's vectors by name ("" is the unnamed dense vector).
fn named(vectors: &Option<q::Vectors>) -> Result<Vec<(String, Sent)>, Status> {
    match vectors.as_ref().and_then(|v| v.vectors_options.as_ref()) {
        Some(q::vectors::VectorsOptions::Vector(v)) => Ok(vec![(String::new(), sent(v)?)]),
        Some(q::vectors::VectorsOptions::Vectors(map)) => map
            .vectors
            .iter()
            .map(|(name, v)| Ok((name.clone(), sent(v)?)))
            .collect(),
        None => Err(Status::invalid_argument("point without vectors")),
    }
}

fn wrong_dimension(expected: usize, got: usize) -> Status {
    Status::invalid_argument(format!(
        "Wrong input: Vector dimension error: expected dim: {expected}, got {got}"
    ))
}

fn unknown_vector(name: &str) -> Status {
    Status::invalid_argument(format!(
        "Wrong input: Not existing vector name error: {name}"
    ))
}

impl Collection {
    /// Checks one named vector against the collection's schema.
    fn check(&self, name: &str, vector: &Sent) -> Result<(), Status> {
        match (name, vector) {
            ("", Sent::Dense(d)) if d.len() == self.dimension => Ok(()),
            ("", Sent::Dense(d)) => Err(wrong_dimension(self.dimension, d.len())),
            (name, Sent::Sparse(_)) if self.sparse_vectors.contains_key(name) => Ok(()),
            (name, _) => Err(unknown_vector(name)),
        }
    }

    /// A sparse query's weights with IDF applied when the vector's modifier asks for it.
    fn weighted(&self, name: &str, query: &Sparse) -> Sparse {
        if self.sparse_vectors.get(name) != Some(&true) {
            return query.clone();
        }
        let holders: Vec<&Sparse> = self
            .points
            .values()
            .filter_map(|p| p.sparse.get(name))
            .collect();
        let n = holders.len() as f32;
        query
            .iter()
            .map(|(index, weight)| {
                let df = holders.iter().filter(|s| s.contains_key(index)).count() as f32;
                (*index, weight * ((n - df + 0.5) / (df + 0.5) + 1.0).ln())
            })
            .collect()
    }
}

fn dot(query: &Sparse, stored: &Sparse) -> Option<f32> {
    let mut score = None;
    for (index, weight) in query {
        if let Some(w) = stored.get(index) {
            *score.get_or_insert(0.0) += weight * w;
        }
    }
    score
}

fn scored(id: &str, point: &Point, score: f32, with_payload: bool) -> q::ScoredPoint {
    q::ScoredPoint {
        id: Some(point_id(id)),
        payload: if with_payload {
            point.payload.clone()
        } else {
            HashMap::new()
        },
        score,
        version: 0,
        ..Default::default()
    }
}

fn keyword_of(value: &q::Value) -> Option<&str> {
    match &value.kind {
        Some(q::value::Kind::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn condition_matches(condition: &q::Condition, point: &Point) -> Result<bool, Status> {
    match &condition.condition_one_of {
        Some(q::condition::ConditionOneOf::Field(field)) => {
            match field.r#match.as_ref().and_then(|m| m.match_value.as_ref()) {
                Some(q::r#match::MatchValue::Keyword(k)) => {
                    Ok(point.payload.get(&field.key).and_then(keyword_of) == Some(k.as_str()))
                }
                _ => Err(Status::invalid_argument(
                    "the fake supports keyword matches only",
                )),
            }
        }
        // The unnamed dense vector is required, so every point has it.
        Some(q::condition::ConditionOneOf::HasVector(has)) => {
            Ok(has.has_vector.is_empty() || point.sparse.contains_key(&has.has_vector))
        }
        Some(q::condition::ConditionOneOf::Filter(f)) => filter_matches(Some(f), point),
        _ => Err(Status::invalid_argument(
            "the fake supports field and has_vector conditions only",
        )),
    }
}

fn filter_matches(filter: Option<&q::Filter>, point: &Point) -> Result<bool, Status> {
    let Some(filter) = filter else {
        return Ok(true);
    };
    if filter.min_should.is_some() {
        return Err(Status::invalid_argument(
            "the fake does not support min_should",
        ));
    }
    for c in &filter.must {
        if !condition_matches(c, point)? {
            return Ok(false);
        }
    }
    for c in &filter.must_not {
        if condition_matches(c, point)? {
            return Ok(false);
        }
    }
    if !filter.should.is_empty() {
        let mut any = false;
        for c in &filter.should {
            any |= condition_matches(c, point)?;
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

/// The answer to a points operation that was applied.
fn operation_done() -> Response<q::PointsOperationResponse> {
    Response::new(q::PointsOperationResponse {
        result: Some(q::UpdateResult {
            operation_id: Some(0),
            status: q::UpdateStatus::Completed as i32,
        }),
        time: 0.0,
        usage: None,
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
        let mut sparse_vectors = BTreeMap::new();
        for (name, params) in request
            .sparse_vectors_config
            .map(|c| c.map)
            .unwrap_or_default()
        {
            if name.is_empty() {
                return Err(Status::invalid_argument(
                    "Wrong input: the unnamed vector is the dense one",
                ));
            }
            sparse_vectors.insert(name, params.modifier == Some(q::Modifier::Idf as i32));
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
                sparse_vectors,
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

    /// The collection's schema and point count (what a client checks before using it).
    async fn get(
        &self,
        request: Request<q::GetCollectionInfoRequest>,
    ) -> Result<Response<q::GetCollectionInfoResponse>, Status> {
        let info = self.with_collection(&request.get_ref().collection_name, |c| {
            let sparse = q::SparseVectorConfig {
                map: c
                    .sparse_vectors
                    .iter()
                    .map(|(name, idf)| {
                        let modifier = if *idf {
                            q::Modifier::Idf
                        } else {
                            q::Modifier::None
                        };
                        (
                            name.clone(),
                            q::SparseVectorParams {
                                index: None,
                                modifier: Some(modifier as i32),
                            },
                        )
                    })
                    .collect(),
            };
            #[allow(deprecated)] // a required field of the message
            let params = q::CollectionParams {
                shard_number: 1,
                on_disk_payload: true,
                vectors_config: Some(q::VectorsConfig {
                    config: Some(q::vectors_config::Config::Params(q::VectorParams {
                        size: c.dimension as u64,
                        distance: q::Distance::Cosine as i32,
                        ..Default::default()
                    })),
                }),
                replication_factor: Some(1),
                write_consistency_factor: Some(1),
                sparse_vectors_config: (!sparse.map.is_empty()).then_some(sparse),
                ..Default::default()
            };
            Ok(q::CollectionInfo {
                status: q::CollectionStatus::Green as i32,
                optimizer_status: Some(q::OptimizerStatus {
                    ok: true,
                    error: String::new(),
                }),
                segments_count: 1,
                config: Some(q::CollectionConfig {
                    params: Some(params),
                    ..Default::default()
                }),
                points_count: Some(c.points.len() as u64),
                indexed_vectors_count: Some(0),
                ..Default::default()
            })
        })?;
        Ok(Response::new(q::GetCollectionInfoResponse {
            result: Some(info),
            time: 0.0,
        }))
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
        Ok(operation_done())
    }

    async fn upsert(
        &self,
        request: Request<q::UpsertPoints>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        let request = request.into_inner();
        self.with_collection(&request.collection_name, |c| {
            let mut staged = Vec::new();
            for point in &request.points {
                let mut dense = None;
                let mut sparse = HashMap::new();
                for (name, vector) in named(&point.vectors)? {
                    c.check(&name, &vector)?;
                    match vector {
                        Sent::Dense(d) => dense = Some(d),
                        Sent::Sparse(v) => {
                            sparse.insert(name, v);
                        }
                    }
                }
                // The collection's dense vector is not optional.
                let dense = dense.ok_or_else(|| wrong_dimension(c.dimension, 0))?;
                staged.push((
                    id_string(&point.id)?,
                    Point {
                        dense,
                        sparse,
                        payload: point.payload.clone(),
                    },
                ));
            }
            // All or nothing, like one Qdrant operation.
            for (id, point) in staged {
                c.points.insert(id, point);
            }
            Ok(())
        })?;
        Ok(operation_done())
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
                    for (id, point) in &c.points {
                        if filter_matches(Some(&filter), point)? {
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
        Ok(operation_done())
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
            if let Some(name) = request.vector_name.as_deref().filter(|n| !n.is_empty()) {
                return Err(unknown_vector(name));
            }
            if request.vector.len() != c.dimension {
                return Err(wrong_dimension(c.dimension, request.vector.len()));
            }
            let mut found = Vec::new();
            for (id, point) in &c.points {
                if filter_matches(request.filter.as_ref(), point)? {
                    found.push((cosine(&request.vector, &point.dense), id, point));
                }
            }
            found.sort_by(|a, b| b.0.total_cmp(&a.0));
            Ok(found
                .into_iter()
                .skip(request.offset.unwrap_or(0) as usize)
                .take(request.limit as usize)
                .map(|(score, id, point)| scored(id, point, score, with_payload))
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
            for (id, point) in range {
                if !filter_matches(request.filter.as_ref(), point)? {
                    continue;
                }
                if page.len() == limit {
                    next = Some(point_id(id));
                    break;
                }
                page.push(q::RetrievedPoint {
                    id: Some(point_id(id)),
                    payload: if with_payload {
                        point.payload.clone()
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
            for point in c.points.values() {
                if filter_matches(request.filter.as_ref(), point)? {
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
    /// Replaces the named vectors given for each point and keeps its others.
    async fn update_vectors(
        &self,
        request: Request<q::UpdatePointVectors>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        let request = request.into_inner();
        if request.update_filter.is_some() {
            return Err(Status::invalid_argument(
                "the fake does not support update_filter",
            ));
        }
        self.with_collection(&request.collection_name, |c| {
            let mut staged = Vec::new();
            for point in &request.points {
                let id = id_string(&point.id)?;
                if !c.points.contains_key(&id) {
                    return Err(Status::not_found(format!("No point with id {id} found")));
                }
                for (name, vector) in named(&point.vectors)? {
                    c.check(&name, &vector)?;
                    staged.push((id.clone(), name, vector));
                }
            }
            for (id, name, vector) in staged {
                if let Some(point) = c.points.get_mut(&id) {
                    match vector {
                        Sent::Dense(d) => point.dense = d,
                        Sent::Sparse(v) => {
                            point.sparse.insert(name, v);
                        }
                    }
                }
            }
            Ok(())
        })?;
        Ok(operation_done())
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
    /// Adds a sparse vector to an existing collection; its points hold none until given one.
    async fn create_vector_name(
        &self,
        request: Request<q::CreateVectorNameRequest>,
    ) -> Result<Response<q::PointsOperationResponse>, Status> {
        let request = request.into_inner();
        let idf = match request.vector_config {
            Some(q::create_vector_name_request::VectorConfig::SparseConfig(config)) => {
                config.modifier == Some(q::Modifier::Idf as i32)
            }
            _ => {
                return Err(Status::invalid_argument(
                    "the fake adds sparse vectors only",
                ))
            }
        };
        self.with_collection(&request.collection_name, |c| {
            if request.vector_name.is_empty() || c.sparse_vectors.contains_key(&request.vector_name)
            {
                return Err(Status::invalid_argument(format!(
                    "Wrong input: Vector with name {} already exists",
                    request.vector_name
                )));
            }
            c.sparse_vectors.insert(request.vector_name.clone(), idf);
            Ok(())
        })?;
        Ok(operation_done())
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
    /// One `nearest` query, dense or sparse, on the vector `using` names.
    async fn query(
        &self,
        request: Request<q::QueryPoints>,
    ) -> Result<Response<q::QueryResponse>, Status> {
        let request = request.into_inner();
        if !request.prefetch.is_empty() || request.score_threshold.is_some() {
            return Err(Status::invalid_argument(
                "the fake serves a nearest query without prefetch or threshold",
            ));
        }
        let input = match request.query.and_then(|q| q.variant) {
            Some(q::query::Variant::Nearest(input)) => input.variant,
            _ => {
                return Err(Status::invalid_argument(
                    "the fake serves nearest queries only",
                ))
            }
        };
        // Qdrant's default limit for the Query API.
        let limit = request.limit.unwrap_or(10) as usize;
        if limit == 0 {
            return Err(Status::invalid_argument("limit must be positive"));
        }
        let with_payload = wants_payload(&request.with_payload);
        let using = request.using.unwrap_or_default();
        let result = self.with_collection(&request.collection_name, |c| {
            let mut found = Vec::new();
            match input {
                Some(q::vector_input::Variant::Dense(d)) => {
                    c.check(&using, &Sent::Dense(d.data.clone()))?;
                    for (id, point) in &c.points {
                        if filter_matches(request.filter.as_ref(), point)? {
                            found.push((cosine(&d.data, &point.dense), id, point));
                        }
                    }
                }
                Some(q::vector_input::Variant::Sparse(s)) => {
                    let query = sparse_of(&s.values, &s.indices)?;
                    if !c.sparse_vectors.contains_key(&using) {
                        return Err(unknown_vector(&using));
                    }
                    let query = c.weighted(&using, &query);
                    for (id, point) in &c.points {
                        let Some(score) = point.sparse.get(&using).and_then(|v| dot(&query, v))
                        else {
                            continue;
                        };
                        if filter_matches(request.filter.as_ref(), point)? {
                            found.push((score, id, point));
                        }
                    }
                }
                _ => {
                    return Err(Status::invalid_argument(
                        "the fake queries by dense or sparse vector only",
                    ))
                }
            }
            found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
            Ok(found
                .into_iter()
                .skip(request.offset.unwrap_or(0) as usize)
                .take(limit)
                .map(|(score, id, point)| scored(id, point, score, with_payload))
                .collect())
        })?;
        Ok(Response::new(q::QueryResponse {
            result,
            time: 0.0,
            usage: None,
        }))
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
