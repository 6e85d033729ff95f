//! Bots and their configs. A config is sent as YAML or JSON (same schema); every save is a new
//! version, and an invalid one is refused with 422 listing each problem with its path.

use super::companies::visible_company;
use super::{Body, Id};
use crate::error::{ApiError, ApiResult, ErrorBody, NotFoundAs};
use crate::{ApiContext, Principal};
use axum::extract::rejection::StringRejection;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use callfleet_core::config::{BotConfig, ConfigError, ConfigFormat};
use callfleet_core::domain::BotStatus;
use callfleet_store::{Bot, BotPatch, BotVersion, NewBot};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_company_bots))
        .routes(routes!(create_bot))
        .routes(routes!(get_bot, update_bot, delete_bot))
        .routes(routes!(put_config, get_config))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BotOut {
    id: String,
    company_id: String,
    name: String,
    /// `active` or `disabled`.
    #[schema(value_type = String)]
    status: BotStatus,
    current_version: i64,
    created_at: i64,
    updated_at: i64,
}

impl From<Bot> for BotOut {
    fn from(b: Bot) -> Self {
        BotOut {
            id: b.id,
            company_id: b.company_id,
            name: b.name,
            status: b.status,
            current_version: b.current_version,
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBot {
    /// Required with the admin key; implied by a company key.
    company_id: Option<String>,
    /// Default: the config's `name` or `bot_id`.
    name: Option<String>,
    /// The bot config: a JSON object, or a string holding YAML or JSON.
    #[schema(value_type = Object)]
    config: Value,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedBot {
    #[serde(flatten)]
    bot: BotOut,
    config: ConfigVersionOut,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateBot {
    name: Option<String>,
    /// `active` or `disabled`.
    status: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ConfigVersionOut {
    version: i64,
    /// The validated config, with defaults and inferred field types filled in.
    #[schema(value_type = Object)]
    config: Value,
    /// `yaml` or `json`: how it was sent.
    source_format: String,
    /// The text as sent (YAML comments included).
    source_text: String,
    created_at: i64,
}

impl From<BotVersion> for ConfigVersionOut {
    fn from(v: BotVersion) -> Self {
        ConfigVersionOut {
            version: v.version,
            config: v.config,
            source_format: v.source_format,
            source_text: v.source_text,
            created_at: v.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct VersionInfo {
    version: i64,
    source_format: String,
    created_at: i64,
    /// True for the version new calls use.
    current: bool,
}

fn invalid_config(err: ConfigError) -> ApiError {
    let count = err.issues.len();
    ApiError::Unprocessable {
        message: format!(
            "invalid bot config: {count} problem{}",
            if count == 1 { "" } else { "s" }
        ),
        details: err.issues,
    }
}

/// The config text, its format name and the validated config. Parsing runs off the async
/// runtime: it is bounded (`callfleet_core::yaml::Limits::CONFIG`), but a megabyte of YAML is
/// still milliseconds of CPU that other requests should not wait behind.
async fn parse_config_text(
    text: String,
    format: Option<ConfigFormat>,
) -> ApiResult<(BotConfig, &'static str)> {
    let format = format.unwrap_or(if text.trim_start().starts_with('{') {
        ConfigFormat::Json
    } else {
        ConfigFormat::Yaml
    });
    let config = tokio::task::spawn_blocking(move || BotConfig::parse(&text, format))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?
        .map_err(invalid_config)?;
    Ok((
        config,
        if format == ConfigFormat::Json {
            "json"
        } else {
            "yaml"
        },
    ))
}

/// Checks that the bot exists and the caller may see it.
pub(crate) async fn visible_bot(ctx: &ApiContext, who: &Principal, id: &str) -> ApiResult<Bot> {
    let bot = ctx.store.get_bot(id).await.not_found_as("bot")?;
    who.can_access(&bot.company_id, "bot")?;
    Ok(bot)
}

/// A company's bots.
#[utoipa::path(get, path = "/companies/{id}/bots", tag = "bots", security(("bearer" = [])),
    params(("id" = String, Path, description = "Company id")),
    responses((status = 200, body = Vec<BotOut>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_company_bots(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<Json<Vec<BotOut>>> {
    visible_company(&ctx, &who, &id).await?;
    Ok(Json(
        ctx.store
            .list_bots(&id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Create a bot with its first config version.
#[utoipa::path(post, path = "/bots", tag = "bots", security(("bearer" = [])), request_body = CreateBot,
    responses((status = 201, body = CreatedBot), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_bot(
    State(ctx): State<ApiContext>,
    who: Principal,
    Body(body): Body<CreateBot>,
) -> ApiResult<(StatusCode, Json<CreatedBot>)> {
    let company_id = who.company_for_create(body.company_id.as_deref())?;
    visible_company(&ctx, &who, &company_id).await?;
    let (config, source_text, format) = match &body.config {
        Value::String(text) => {
            let (config, format) = parse_config_text(text.clone(), None).await?;
            (config, text.clone(), format)
        }
        Value::Object(_) => {
            let config = BotConfig::from_value(&body.config).map_err(invalid_config)?;
            let text = serde_json::to_string_pretty(&body.config).expect("a JSON value serialises");
            (config, text, "json")
        }
        _ => {
            return Err(ApiError::invalid(
                "config",
                "must be an object or a string of YAML/JSON",
            ))
        }
    };
    let name = body
        .name
        .or_else(|| config.name.clone())
        .or_else(|| config.bot_id.clone())
        .unwrap_or_else(|| "bot".to_string());
    if name.trim().is_empty() || name.len() > 200 {
        return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
    }
    let new = NewBot {
        company_id: &company_id,
        name: name.trim(),
        config: &config,
        source_text: &source_text,
        source_format: format,
    };
    let (bot, version) = ctx.store.create_bot(new).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedBot {
            bot: bot.into(),
            config: version.into(),
        }),
    ))
}

/// A bot.
#[utoipa::path(get, path = "/bots/{id}", tag = "bots", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = BotOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_bot(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<Json<BotOut>> {
    Ok(Json(visible_bot(&ctx, &who, &id).await?.into()))
}

/// Rename, disable or re-enable a bot.
#[utoipa::path(patch, path = "/bots/{id}", tag = "bots", security(("bearer" = [])), request_body = UpdateBot,
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = BotOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_bot(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
    Body(body): Body<UpdateBot>,
) -> ApiResult<Json<BotOut>> {
    visible_bot(&ctx, &who, &id).await?;
    let status = match body.status.as_deref() {
        None => None,
        Some(text) => Some(
            BotStatus::parse(text)
                .ok_or_else(|| ApiError::invalid("status", "must be \"active\" or \"disabled\""))?,
        ),
    };
    if let Some(name) = &body.name {
        if name.trim().is_empty() || name.len() > 200 {
            return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
        }
    }
    let patch = BotPatch {
        name: body.name.map(|n| n.trim().to_string()),
        status,
    };
    Ok(Json(
        ctx.store
            .update_bot(&id, patch)
            .await
            .not_found_as("bot")?
            .into(),
    ))
}

/// Delete a bot. Its numbers are released, its documents and their vectors removed; its calls stay.
#[utoipa::path(delete, path = "/bots/{id}", tag = "bots", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_bot(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<StatusCode> {
    visible_bot(&ctx, &who, &id).await?;
    // The rows would cascade, but the vectors live in the index: clear them first.
    if let Some(knowledge) = &ctx.knowledge {
        knowledge.clear_bot(&id).await?;
    }
    ctx.store.delete_bot(&id).await.not_found_as("bot")?;
    Ok(StatusCode::NO_CONTENT)
}

/// Save a new config version. The body is YAML (`Content-Type: application/yaml`) or JSON
/// (`application/json`); without a known type, JSON is recognised by its leading `{`.
/// New calls use it at once; running calls keep theirs.
#[utoipa::path(put, path = "/bots/{id}/config", tag = "bots", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id")),
    request_body(content = String, content_type = "application/yaml", description = "The config, as YAML or JSON"),
    responses((status = 200, body = ConfigVersionOut), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "The bot is at its config-version quota"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_config(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
    headers: HeaderMap,
    body: Result<String, StringRejection>,
) -> ApiResult<Json<ConfigVersionOut>> {
    visible_bot(&ctx, &who, &id).await?;
    let text = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(ctx.config.max_body_bytes),
        _ => ApiError::BadRequest(rejection.body_text()),
    })?;
    let format = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(ConfigFormat::from_media_type);
    let (config, format) = parse_config_text(text.clone(), format).await?;
    let saved = ctx.store.count_bot_versions(&id).await?;
    if saved >= ctx.config.max_config_versions_per_bot {
        return Err(ApiError::QuotaExceeded(format!(
            "the bot has saved {saved} config versions, the limit is {}; create a new bot for a fresh history",
            ctx.config.max_config_versions_per_bot
        )));
    }
    let version = ctx
        .store
        .put_bot_config(&id, &config, &text, format)
        .await
        .not_found_as("bot")?;
    Ok(Json(version.into()))
}

/// The config new calls use.
#[utoipa::path(get, path = "/bots/{id}/config", tag = "bots", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = ConfigVersionOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_config(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<Json<ConfigVersionOut>> {
    visible_bot(&ctx, &who, &id).await?;
    Ok(Json(
        ctx.store
            .get_bot_version(&id, None)
            .await
            .not_found_as("config")?
            .into(),
    ))
}

/// Every saved version, newest first.
#[utoipa::path(get, path = "/bots/{id}/config/versions", tag = "bots", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = Vec<VersionInfo>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_versions(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<Json<Vec<VersionInfo>>> {
    let bot = visible_bot(&ctx, &who, &id).await?;
    let versions = ctx.store.list_bot_versions(&id).await?;
    Ok(Json(
        versions
            .into_iter()
            .map(|v| VersionInfo {
                current: v.version == bot.current_version,
                version: v.version,
                source_format: v.source_format,
                created_at: v.created_at,
            })
            .collect(),
    ))
}

/// One saved version.
#[utoipa::path(get, path = "/bots/{id}/config/versions/{version}", tag = "bots", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id"), ("version" = i64, Path, description = "Version number")),
    responses((status = 200, body = ConfigVersionOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_version(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id((id, version)): Id<(String, i64)>,
) -> ApiResult<Json<ConfigVersionOut>> {
    visible_bot(&ctx, &who, &id).await?;
    Ok(Json(
        ctx.store
            .get_bot_version(&id, Some(version))
            .await
            .not_found_as("config version")?
            .into(),
    ))
}
