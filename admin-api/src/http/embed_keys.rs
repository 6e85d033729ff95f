//! Embed keys: what a public web page holds to start browser calls with chosen bots
//! (`POST /bots/{id}/sessions`) and nothing else. A company key issues them for its own bots
//! (the admin key for any company's); the key is in the create response only.

use super::bots::visible_bot;
use super::{Body, Id, Params};
use crate::error::{ApiError, ApiResult, ErrorBody, NotFoundAs};
use crate::{ApiContext, Principal};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callfleet_store::EmbedKey;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Bots and origins one key may name.
const MAX_LISTED: usize = 50;

pub(super) fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(create_embed_key, list_embed_keys))
        .routes(routes!(revoke_embed_key))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateEmbedKey {
    /// Required with the admin key; a company key issues keys for its own company.
    company_id: Option<String>,
    name: Option<String>,
    /// The bots the key may start calls with (at least one, all of the company).
    bot_ids: Vec<String>,
    /// Page origins allowed to use the key, e.g. `https://www.example.com`; empty: any page.
    #[serde(default)]
    allowed_origins: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EmbedKeyOut {
    id: String,
    company_id: String,
    name: String,
    /// The key's first characters.
    prefix: String,
    bot_ids: Vec<String>,
    allowed_origins: Vec<String>,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<EmbedKey> for EmbedKeyOut {
    fn from(k: EmbedKey) -> Self {
        EmbedKeyOut {
            id: k.id,
            company_id: k.company_id,
            name: k.name,
            prefix: k.prefix,
            bot_ids: k.bot_ids,
            allowed_origins: k.allowed_origins,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedEmbedKey {
    #[serde(flatten)]
    info: EmbedKeyOut,
    /// The key (`cfe_…`); shown only now. Safe to put in a public page.
    key: String,
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct EmbedKeyQuery {
    /// With the admin key: whose keys.
    company_id: Option<String>,
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn check_origin(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '@']) {
        return Err("must be scheme://host[:port] with no path".into());
    }
    Ok(())
}

/// Issue an embed key. The key is in this response only.
#[utoipa::path(post, path = "/embed-keys", tag = "calls", security(("bearer" = [])),
    request_body = CreateEmbedKey,
    responses((status = 201, body = CreatedEmbedKey), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn create_embed_key(
    State(ctx): State<ApiContext>,
    who: Principal,
    Body(body): Body<CreateEmbedKey>,
) -> ApiResult<(StatusCode, Json<CreatedEmbedKey>)> {
    let company = who.company_for_create(body.company_id.as_deref())?;
    if body.bot_ids.is_empty() || body.bot_ids.len() > MAX_LISTED {
        return Err(ApiError::invalid(
            "bot_ids",
            format!("name between 1 and {MAX_LISTED} bots"),
        ));
    }
    if body.allowed_origins.len() > MAX_LISTED {
        return Err(ApiError::invalid(
            "allowed_origins",
            format!("at most {MAX_LISTED} origins"),
        ));
    }
    for (i, origin) in body.allowed_origins.iter().enumerate() {
        check_origin(origin).map_err(|m| ApiError::invalid(&format!("allowed_origins[{i}]"), m))?;
    }
    for id in &body.bot_ids {
        let bot = visible_bot(&ctx, &who, id).await?;
        if bot.company_id != company {
            return Err(ApiError::NotFound("bot"));
        }
    }
    let name = body.name.as_deref().unwrap_or("embed").trim();
    let created = ctx
        .store
        .create_embed_key(&company, name, &body.bot_ids, &body.allowed_origins)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedEmbedKey {
            info: created.key.into(),
            key: created.secret,
        }),
    ))
}

/// A company's embed keys, without the keys themselves.
#[utoipa::path(get, path = "/embed-keys", tag = "calls", security(("bearer" = [])),
    params(EmbedKeyQuery),
    responses((status = 200, body = Vec<EmbedKeyOut>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn list_embed_keys(
    State(ctx): State<ApiContext>,
    who: Principal,
    Params(query): Params<EmbedKeyQuery>,
) -> ApiResult<Json<Vec<EmbedKeyOut>>> {
    let company = who.company_for_create(query.company_id.as_deref())?;
    Ok(Json(
        ctx.store
            .list_embed_keys(&company)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Revoke an embed key; it stops working at once.
#[utoipa::path(delete, path = "/embed-keys/{id}", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path, description = "Embed key id"), EmbedKeyQuery),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_embed_key(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
    Params(query): Params<EmbedKeyQuery>,
) -> ApiResult<StatusCode> {
    let company = who.company_for_create(query.company_id.as_deref())?;
    ctx.store
        .revoke_embed_key(&company, &id)
        .await
        .not_found_as("embed key")?;
    Ok(StatusCode::NO_CONTENT)
}
