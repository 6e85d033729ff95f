//! Companies and their API keys. Creating, listing and deleting companies, and issuing keys, need
//! the admin key; a company key may read its own company and list its own keys.

use super::{Body, Id};
use crate::error::{ApiError, ApiResult, ErrorBody, NotFoundAs};
use crate::{ApiContext, Principal};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callfleet_store::{ApiKey, Company, NewCompany};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(create_company, list_companies))
        .routes(routes!(get_company, delete_company))
        .routes(routes!(create_api_key, list_api_keys))
        .routes(routes!(revoke_api_key))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateCompany {
    name: String,
    /// IANA timezone used to resolve dates callers say ("tomorrow"); default `UTC`.
    timezone: Option<String>,
    /// Calls this company may have at once; default 10.
    max_concurrent_calls: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CompanyOut {
    id: String,
    name: String,
    timezone: String,
    max_concurrent_calls: i64,
    created_at: i64,
    updated_at: i64,
}

impl From<Company> for CompanyOut {
    fn from(c: Company) -> Self {
        CompanyOut {
            id: c.id,
            name: c.name,
            timezone: c.timezone,
            max_concurrent_calls: c.max_concurrent_calls,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateApiKey {
    /// A label to tell keys apart.
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ApiKeyOut {
    id: String,
    company_id: String,
    name: String,
    /// The key's first characters.
    prefix: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<ApiKey> for ApiKeyOut {
    fn from(k: ApiKey) -> Self {
        ApiKeyOut {
            id: k.id,
            company_id: k.company_id,
            name: k.name,
            prefix: k.prefix,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedApiKey {
    #[serde(flatten)]
    info: ApiKeyOut,
    /// The key itself. Shown this once; only a hash is stored.
    key: String,
}

/// Checks that the company exists and the caller may see it.
pub(crate) async fn visible_company(
    ctx: &ApiContext,
    who: &Principal,
    id: &str,
) -> ApiResult<Company> {
    who.can_access(id, "company")?;
    ctx.store.get_company(id).await.not_found_as("company")
}

/// Create a company (admin key).
#[utoipa::path(post, path = "/companies", tag = "companies", request_body = CreateCompany,
    security(("bearer" = [])),
    responses((status = 201, body = CompanyOut), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_company(
    State(ctx): State<ApiContext>,
    who: Principal,
    Body(body): Body<CreateCompany>,
) -> ApiResult<(StatusCode, Json<CompanyOut>)> {
    who.require_admin()?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
    }
    let timezone = body.timezone.unwrap_or_else(|| "UTC".to_string());
    if timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(ApiError::invalid(
            "timezone",
            "unknown timezone (use an IANA name such as \"Europe/Moscow\")",
        ));
    }
    let max_concurrent_calls = body.max_concurrent_calls.unwrap_or(10);
    if !(1..=100_000).contains(&max_concurrent_calls) {
        return Err(ApiError::invalid(
            "max_concurrent_calls",
            "must be from 1 to 100000",
        ));
    }
    let company = ctx
        .store
        .create_company(NewCompany {
            name: name.to_string(),
            timezone,
            max_concurrent_calls,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(company.into())))
}

/// List every company (admin key).
#[utoipa::path(get, path = "/companies", tag = "companies", security(("bearer" = [])),
    responses((status = 200, body = Vec<CompanyOut>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_companies(
    State(ctx): State<ApiContext>,
    who: Principal,
) -> ApiResult<Json<Vec<CompanyOut>>> {
    who.require_admin()?;
    Ok(Json(
        ctx.store
            .list_companies()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// A company (admin key, or that company's key).
#[utoipa::path(get, path = "/companies/{id}", tag = "companies", security(("bearer" = [])),
    params(("id" = String, Path, description = "Company id")),
    responses((status = 200, body = CompanyOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_company(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<Json<CompanyOut>> {
    Ok(Json(visible_company(&ctx, &who, &id).await?.into()))
}

/// Delete a company and everything it owns (admin key).
#[utoipa::path(delete, path = "/companies/{id}", tag = "companies", security(("bearer" = [])),
    params(("id" = String, Path, description = "Company id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_company(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<StatusCode> {
    who.require_admin()?;
    // Recordings' bytes live outside the database: delete them before the rows cascade away.
    for recording in ctx.store.company_recordings(&id).await? {
        super::calls::delete_recording_of(&ctx, &recording.call_id).await?;
    }
    ctx.store
        .delete_company(&id)
        .await
        .not_found_as("company")?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issue an API key for a company (admin key). The key is in this response only.
#[utoipa::path(post, path = "/companies/{id}/api-keys", tag = "companies", security(("bearer" = [])),
    params(("id" = String, Path, description = "Company id")), request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_api_key(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    who.require_admin()?;
    visible_company(&ctx, &who, &id).await?;
    // The body is optional: an empty POST issues a key named "default".
    let body: CreateApiKey = if body.iter().all(u8::is_ascii_whitespace) {
        CreateApiKey::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    let name = body.name.unwrap_or_else(|| "default".to_string());
    let created = ctx.store.create_api_key(&id, name.trim()).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            info: created.key.into(),
            key: created.secret,
        }),
    ))
}

/// A company's keys, without the keys themselves.
#[utoipa::path(get, path = "/companies/{id}/api-keys", tag = "companies", security(("bearer" = [])),
    params(("id" = String, Path, description = "Company id")),
    responses((status = 200, body = Vec<ApiKeyOut>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_api_keys(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<Json<Vec<ApiKeyOut>>> {
    visible_company(&ctx, &who, &id).await?;
    Ok(Json(
        ctx.store
            .list_api_keys(&id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Revoke a key (admin key). It stops working at once.
#[utoipa::path(delete, path = "/companies/{id}/api-keys/{key_id}", tag = "companies", security(("bearer" = [])),
    params(("id" = String, Path, description = "Company id"), ("key_id" = String, Path, description = "Key id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_api_key(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id((id, key_id)): Id<(String, String)>,
) -> ApiResult<StatusCode> {
    who.require_admin()?;
    ctx.store
        .revoke_api_key(&id, &key_id)
        .await
        .not_found_as("api key")?;
    Ok(StatusCode::NO_CONTENT)
}
