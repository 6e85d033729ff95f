//! A bot's knowledge base: upload documents (multipart), watch them index, list, delete, clear,
//! and search them as the bot would. Parsing, indexing and search are the knowledge crate's;
//! this module checks who may touch which bot and translates errors.

use super::bots::visible_bot;
use super::{Body, Id};
use crate::error::{ApiError, ApiResult, ErrorBody, NotFoundAs};
use crate::{ApiContext, Principal};
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::Json;
use callfleet_core::config::ConfigIssue;
use callfleet_core::domain::DocumentStatus;
use callfleet_knowledge::{citation, KnowledgeError, KnowledgeService, ParseError, SearchHit};
use callfleet_store::{Bot, KnowledgeDocument};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<ApiContext> {
    // Uploads have their own limit (`ApiConfig::max_upload_bytes`), enforced while the file
    // streams in; the API-wide JSON body limit would refuse any real document.
    let uploads = OpenApiRouter::new()
        .routes(routes!(upload_document))
        .layer(DefaultBodyLimit::disable());
    OpenApiRouter::new()
        .merge(uploads)
        .routes(routes!(list_documents, clear_documents))
        .routes(routes!(get_document, delete_document))
        .routes(routes!(search))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DocumentOut {
    id: String,
    bot_id: String,
    filename: String,
    /// Detected from the content, not the name.
    content_type: String,
    size_bytes: i64,
    sha256: String,
    /// `pending`, `indexing`, `ready` or `failed`.
    #[schema(value_type = String)]
    status: DocumentStatus,
    pages: Option<i64>,
    chunks_total: i64,
    chunks_done: i64,
    /// Why the document failed.
    error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<KnowledgeDocument> for DocumentOut {
    fn from(d: KnowledgeDocument) -> Self {
        DocumentOut {
            id: d.id,
            bot_id: d.bot_id,
            filename: d.filename,
            content_type: d.content_type,
            size_bytes: d.size_bytes,
            sha256: d.sha256,
            status: d.status,
            pages: d.pages,
            chunks_total: d.chunks_total,
            chunks_done: d.chunks_done,
            error: d.error,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchRequest {
    query: String,
    /// How many chunks to return (1–50, default 5).
    #[serde(default = "default_top_k")]
    top_k: usize,
}

fn default_top_k() -> usize {
    5
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SearchHitOut {
    document_id: String,
    /// The file the chunk came from.
    source: String,
    /// How the bot cites it: file, then page or section.
    citation: String,
    text: String,
    page: Option<u32>,
    heading: Option<String>,
    /// Fused rank score, 0..1.
    score: f32,
    /// Cosine similarity, when the vector search found it.
    vector_score: Option<f32>,
    /// BM25 score, when the keyword search found it.
    keyword_score: Option<f32>,
}

impl From<SearchHit> for SearchHitOut {
    fn from(hit: SearchHit) -> Self {
        SearchHitOut {
            citation: citation(&hit),
            document_id: hit.chunk.document_id,
            source: hit.chunk.source,
            text: hit.chunk.text,
            page: hit.chunk.page,
            heading: hit.chunk.heading,
            score: hit.score,
            vector_score: hit.vector_score,
            keyword_score: hit.keyword_score,
        }
    }
}

fn service(ctx: &ApiContext) -> ApiResult<&KnowledgeService> {
    ctx.knowledge.as_ref().ok_or_else(|| ApiError::Unavailable {
        code: "knowledge_disabled",
        message: "the knowledge base is not configured on this server".into(),
    })
}

impl From<KnowledgeError> for ApiError {
    fn from(err: KnowledgeError) -> Self {
        match err {
            KnowledgeError::Parse(ParseError::TooLarge { limit, .. }) => ApiError::TooLarge(limit),
            KnowledgeError::Parse(e @ ParseError::Exceeds { .. }) => {
                ApiError::ContentTooLarge(e.to_string())
            }
            KnowledgeError::Quota(message) => ApiError::QuotaExceeded(message),
            KnowledgeError::Busy => ApiError::RateLimited {
                retry_after_secs: 5,
            },
            KnowledgeError::Parse(e) => ApiError::Unprocessable {
                message: e.to_string(),
                details: Vec::new(),
            },
            KnowledgeError::Store(e) => e.into(),
            KnowledgeError::NotFound => ApiError::NotFound("document"),
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

/// The bot's document with this id, or 404 (also for another bot's document).
async fn visible_document(
    ctx: &ApiContext,
    bot: &Bot,
    doc_id: &str,
) -> ApiResult<KnowledgeDocument> {
    let doc = ctx
        .store
        .get_knowledge_document(doc_id)
        .await
        .not_found_as("document")?;
    if doc.bot_id != bot.id {
        return Err(ApiError::NotFound("document"));
    }
    Ok(doc)
}

/// Upload a document (multipart field `file`; PDF, DOCX, TXT, MD or CSV, the type judged by
/// content). Indexing continues in the background: poll the document for `status` and
/// `chunks_done/chunks_total`. A file that cannot be read is kept as `failed` and answered 422.
#[utoipa::path(post, path = "/bots/{id}/knowledge", tag = "knowledge", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id")),
    request_body(content_type = "multipart/form-data", description = "Field `file`: the document"),
    responses((status = 202, body = DocumentOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The bot is at its document or chunk quota"),
        (status = 413, body = ErrorBody, description = "The file, or what it expands into, is over a limit"),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody, description = "Too many uploads in progress"),
        (status = 503, body = ErrorBody)))]
async fn upload_document(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
    mut multipart: Multipart,
) -> ApiResult<(StatusCode, Json<DocumentOut>)> {
    let bot = visible_bot(&ctx, &who, &id).await?;
    let service = service(&ctx)?;
    let limit = ctx.config.max_upload_bytes;
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::BadRequest(format!("multipart body: {}", e.body_text()))
    };
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        if field.name() != Some("file") {
            continue;
        }
        let filename = field.file_name().unwrap_or("document").to_string();
        let mut bytes = Vec::new();
        while let Some(piece) = field.chunk().await.map_err(bad)? {
            if bytes.len() + piece.len() > limit {
                return Err(ApiError::TooLarge(limit));
            }
            bytes.extend_from_slice(&piece);
        }
        let doc = service
            .upload(&bot.company_id, &bot.id, &filename, bytes)
            .await?;
        if doc.status == DocumentStatus::Failed {
            let message = doc
                .error
                .clone()
                .unwrap_or_else(|| "the file could not be read".into());
            return Err(ApiError::Unprocessable {
                message: format!("{filename}: {message}"),
                details: vec![ConfigIssue {
                    path: "file".into(),
                    message: format!("document {} failed: {message}", doc.id),
                }],
            });
        }
        return Ok((StatusCode::ACCEPTED, Json(doc.into())));
    }
    Err(ApiError::invalid(
        "file",
        "the multipart body has no `file` field",
    ))
}

/// The bot's documents with their status and progress.
#[utoipa::path(get, path = "/bots/{id}/knowledge", tag = "knowledge", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = Vec<DocumentOut>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_documents(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<Json<Vec<DocumentOut>>> {
    let bot = visible_bot(&ctx, &who, &id).await?;
    Ok(Json(
        ctx.store
            .list_knowledge_documents(&bot.id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Remove every document of the bot and all their chunks.
#[utoipa::path(delete, path = "/bots/{id}/knowledge", tag = "knowledge", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn clear_documents(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<StatusCode> {
    let bot = visible_bot(&ctx, &who, &id).await?;
    service(&ctx)?.clear_bot(&bot.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One document with its status and progress.
#[utoipa::path(get, path = "/bots/{id}/knowledge/{doc_id}", tag = "knowledge", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id"), ("doc_id" = String, Path, description = "Document id")),
    responses((status = 200, body = DocumentOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_document(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id((id, doc_id)): Id<(String, String)>,
) -> ApiResult<Json<DocumentOut>> {
    let bot = visible_bot(&ctx, &who, &id).await?;
    Ok(Json(visible_document(&ctx, &bot, &doc_id).await?.into()))
}

/// Remove a document and its chunks.
#[utoipa::path(delete, path = "/bots/{id}/knowledge/{doc_id}", tag = "knowledge", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id"), ("doc_id" = String, Path, description = "Document id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn delete_document(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id((id, doc_id)): Id<(String, String)>,
) -> ApiResult<StatusCode> {
    let bot = visible_bot(&ctx, &who, &id).await?;
    let doc = visible_document(&ctx, &bot, &doc_id).await?;
    service(&ctx)?.delete_document(&bot.id, &doc.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Search the bot's documents as the bot does (hybrid: vectors + keywords).
#[utoipa::path(post, path = "/bots/{id}/knowledge/search", tag = "knowledge", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id")), request_body = SearchRequest,
    responses((status = 200, body = Vec<SearchHitOut>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn search(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
    Body(request): Body<SearchRequest>,
) -> ApiResult<Json<Vec<SearchHitOut>>> {
    let bot = visible_bot(&ctx, &who, &id).await?;
    if request.query.trim().is_empty() {
        return Err(ApiError::invalid("query", "must not be empty"));
    }
    if !(1..=50).contains(&request.top_k) {
        return Err(ApiError::invalid("top_k", "must be between 1 and 50"));
    }
    let hits = service(&ctx)?
        .search(&bot.id, &request.query, request.top_k)
        .await?;
    Ok(Json(hits.into_iter().map(Into::into).collect()))
}
