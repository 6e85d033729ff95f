//! Phone numbers routed to a bot. Numbers are stored in E.164; a number belongs to one bot, and
//! assigning a taken number answers 409.

use super::bots::visible_bot;
use super::{Body, Id};
use crate::error::{ApiError, ApiResult, ErrorBody, NotFoundAs};
use crate::{ApiContext, Principal};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callfleet_core::phone::normalize_phone;
use callfleet_store::PhoneNumber;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(add_number, list_numbers))
        .routes(routes!(remove_number))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddNumber {
    /// E.164 (`+74951234567`) or national with `region`.
    number: String,
    /// ISO country for numbers written without a country code (`RU`, `US`, `GB`).
    region: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PhoneNumberOut {
    id: String,
    /// E.164.
    number: String,
    bot_id: String,
    company_id: String,
    created_at: i64,
}

impl From<PhoneNumber> for PhoneNumberOut {
    fn from(p: PhoneNumber) -> Self {
        PhoneNumberOut {
            id: p.id,
            number: p.number,
            bot_id: p.bot_id,
            company_id: p.company_id,
            created_at: p.created_at,
        }
    }
}

fn normalize(number: &str, region: Option<&str>) -> ApiResult<String> {
    normalize_phone(number, region).ok_or_else(|| {
        ApiError::invalid(
            "number",
            "not a phone number (write it as +<country code><number>, or give a region)",
        )
    })
}

/// Route a number to this bot.
#[utoipa::path(post, path = "/bots/{id}/phone-numbers", tag = "phone-numbers", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id")), request_body = AddNumber,
    responses((status = 201, body = PhoneNumberOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_number(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
    Body(body): Body<AddNumber>,
) -> ApiResult<(StatusCode, Json<PhoneNumberOut>)> {
    let bot = visible_bot(&ctx, &who, &id).await?;
    let number = normalize(&body.number, body.region.as_deref())?;
    let phone = ctx
        .store
        .add_phone_number(&bot.company_id, &bot.id, &number)
        .await?;
    Ok((StatusCode::CREATED, Json(phone.into())))
}

/// The numbers routed to this bot.
#[utoipa::path(get, path = "/bots/{id}/phone-numbers", tag = "phone-numbers", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = Vec<PhoneNumberOut>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_numbers(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<Json<Vec<PhoneNumberOut>>> {
    visible_bot(&ctx, &who, &id).await?;
    Ok(Json(
        ctx.store
            .list_phone_numbers(&id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Stop routing a number to this bot.
#[utoipa::path(delete, path = "/bots/{id}/phone-numbers/{number}", tag = "phone-numbers", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id"), ("number" = String, Path, description = "The number, E.164")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_number(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id((id, number)): Id<(String, String)>,
) -> ApiResult<StatusCode> {
    visible_bot(&ctx, &who, &id).await?;
    let number = normalize(&number, None).map_err(|_| ApiError::NotFound("phone number"))?;
    ctx.store
        .remove_phone_number(&id, &number)
        .await
        .not_found_as("phone number")?;
    Ok(StatusCode::NO_CONTENT)
}
