//! Phone numbers. Numbers are stored in E.164 and belong to one company: the admin key gives a
//! number to a company (`POST /companies/{id}/phone-numbers`) and takes it back; the company routes
//! its own numbers to its bots (`POST /bots/{id}/phone-numbers`) and sets each number's SIP trunk
//! (`PUT /companies/{id}/phone-numbers/{number}/trunk`). A company key naming a number that is not
//! its own gets 404, exactly as for a number nobody has, so holders are never revealed.
//!
//! When LiveKit SIP provisioning is configured, every change is carried to LiveKit at once (an
//! inbound trunk and dispatch rule per routed number, an outbound trunk per number with a provider
//! host); if LiveKit cannot be reached the change stays stored, the answer is 503, and the
//! dispatcher's reconciliation at start finishes it.

use super::bots::visible_bot;
use super::companies::visible_company;
use super::{Body, Id};
use crate::error::{ApiError, ApiResult, ErrorBody, NotFoundAs};
use crate::{ApiContext, Principal};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callfleet_core::phone::normalize_phone;
use callfleet_core::secret::Secret;
use callfleet_store::{PhoneNumber, StoreError, TrunkSettings};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(add_number, list_numbers))
        .routes(routes!(remove_number))
        .routes(routes!(give_company_number, list_company_numbers))
        .routes(routes!(take_company_number))
        .routes(routes!(put_trunk))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddNumber {
    /// E.164 (`+74951234567`) or national with `region`.
    number: String,
    /// ISO country for numbers written without a country code (`RU`, `US`, `GB`).
    region: Option<String>,
}

/// A number's SIP trunk. Passwords are write-only: answers say whether one is set.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrunkIn {
    /// Addresses or CIDRs the provider calls in from (`203.0.113.7`, `198.51.100.0/24`); empty
    /// accepts any source (then set a username and password).
    #[serde(default)]
    allowed_addresses: Vec<String>,
    auth_username: Option<String>,
    auth_password: Option<String>,
    /// The provider's SIP host for calls placed from this number (`sip.example.net[:5060]`).
    outbound_address: Option<String>,
    outbound_username: Option<String>,
    outbound_password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TrunkOut {
    allowed_addresses: Vec<String>,
    auth_username: Option<String>,
    auth_password_set: bool,
    outbound_address: Option<String>,
    outbound_username: Option<String>,
    outbound_password_set: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PhoneNumberOut {
    id: String,
    /// E.164.
    number: String,
    /// The bot calls to it reach; null while routed nowhere.
    bot_id: Option<String>,
    company_id: String,
    trunk: TrunkOut,
    created_at: i64,
}

impl From<PhoneNumber> for PhoneNumberOut {
    fn from(p: PhoneNumber) -> Self {
        let t = p.trunk;
        PhoneNumberOut {
            id: p.id,
            number: p.number,
            bot_id: p.bot_id,
            company_id: p.company_id,
            trunk: TrunkOut {
                allowed_addresses: t.allowed_addresses,
                auth_username: t.auth_username,
                auth_password_set: t.auth_password.is_some_and(|s| !s.is_empty()),
                outbound_address: t.outbound_address,
                outbound_username: t.outbound_username,
                outbound_password_set: t.outbound_password.is_some_and(|s| !s.is_empty()),
            },
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

/// A number in a path: one that does not parse is, to the caller, not there.
fn path_number(number: &str) -> ApiResult<String> {
    normalize(number, None).map_err(|_| ApiError::NotFound("phone number"))
}

/// Carries a number's change to LiveKit SIP, when provisioning is configured.
async fn provision(ctx: &ApiContext, number: &str) -> ApiResult<()> {
    let Some(sip) = &ctx.sip else {
        return Ok(());
    };
    sip.sync_number(number).await.map_err(|e| {
        tracing::error!(number = %number, error = %e, "SIP provisioning failed");
        ApiError::Unavailable {
            code: "sip_provisioning_failed",
            message: "the change is saved, but LiveKit SIP could not be updated; it is retried \
                      when the dispatcher starts, or send the request again"
                .into(),
        }
    })?;
    Ok(())
}

/// Route one of the company's numbers to this bot. With the admin key, a number no company has is
/// given to the bot's company first.
#[utoipa::path(post, path = "/bots/{id}/phone-numbers", tag = "phone-numbers", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id")), request_body = AddNumber,
    responses((status = 201, body = PhoneNumberOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn add_number(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
    Body(body): Body<AddNumber>,
) -> ApiResult<(StatusCode, Json<PhoneNumberOut>)> {
    let bot = visible_bot(&ctx, &who, &id).await?;
    let number = normalize(&body.number, body.region.as_deref())?;
    let phone = match ctx
        .store
        .assign_phone_number(&bot.company_id, &bot.id, &number)
        .await
    {
        Err(StoreError::NotFound) if who == Principal::Admin => ctx
            .store
            .add_phone_number(&bot.company_id, &bot.id, &number)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    ApiError::Conflict(format!("phone number {number} belongs to another company"))
                }
                e => e.into(),
            })?,
        other => other.not_found_as("phone number")?,
    };
    provision(&ctx, &number).await?;
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

/// Stop routing a number to this bot (the company keeps it).
#[utoipa::path(delete, path = "/bots/{id}/phone-numbers/{number}", tag = "phone-numbers", security(("bearer" = [])),
    params(("id" = String, Path, description = "Bot id"), ("number" = String, Path, description = "The number, E.164")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn remove_number(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id((id, number)): Id<(String, String)>,
) -> ApiResult<StatusCode> {
    visible_bot(&ctx, &who, &id).await?;
    let number = path_number(&number)?;
    ctx.store
        .remove_phone_number(&id, &number)
        .await
        .not_found_as("phone number")?;
    provision(&ctx, &number).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Give a number to a company (admin key).
#[utoipa::path(post, path = "/companies/{id}/phone-numbers", tag = "phone-numbers", security(("bearer" = [])),
    params(("id" = String, Path, description = "Company id")), request_body = AddNumber,
    responses((status = 201, body = PhoneNumberOut), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn give_company_number(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
    Body(body): Body<AddNumber>,
) -> ApiResult<(StatusCode, Json<PhoneNumberOut>)> {
    who.require_admin()?;
    let company = visible_company(&ctx, &who, &id).await?;
    let number = normalize(&body.number, body.region.as_deref())?;
    let phone = ctx.store.add_company_number(&company.id, &number).await?;
    Ok((StatusCode::CREATED, Json(phone.into())))
}

/// A company's numbers, routed or not.
#[utoipa::path(get, path = "/companies/{id}/phone-numbers", tag = "phone-numbers", security(("bearer" = [])),
    params(("id" = String, Path, description = "Company id")),
    responses((status = 200, body = Vec<PhoneNumberOut>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_company_numbers(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id(id): Id<String>,
) -> ApiResult<Json<Vec<PhoneNumberOut>>> {
    let company = visible_company(&ctx, &who, &id).await?;
    Ok(Json(
        ctx.store
            .list_company_numbers(&company.id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Take a number back from a company (admin key); its trunks in LiveKit go with it.
#[utoipa::path(delete, path = "/companies/{id}/phone-numbers/{number}", tag = "phone-numbers", security(("bearer" = [])),
    params(("id" = String, Path, description = "Company id"), ("number" = String, Path, description = "The number, E.164")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn take_company_number(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id((id, number)): Id<(String, String)>,
) -> ApiResult<StatusCode> {
    who.require_admin()?;
    let number = path_number(&number)?;
    ctx.store
        .remove_company_number(&id, &number)
        .await
        .not_found_as("phone number")?;
    provision(&ctx, &number).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn checked_trunk(body: TrunkIn) -> ApiResult<TrunkSettings> {
    for (i, address) in body.allowed_addresses.iter().enumerate() {
        let (ip, prefix) = address.split_once('/').unwrap_or((address, ""));
        let ip: Option<std::net::IpAddr> = ip.parse().ok();
        let prefix_ok = prefix.is_empty()
            || prefix.parse::<u8>().is_ok_and(|p| match ip {
                Some(std::net::IpAddr::V4(_)) => p <= 32,
                _ => p <= 128,
            });
        if ip.is_none() || !prefix_ok {
            return Err(ApiError::invalid(
                &format!("allowed_addresses[{i}]"),
                "not an IP address or CIDR",
            ));
        }
    }
    let host_ok = |h: &str| {
        !h.is_empty()
            && h.len() <= 253
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    };
    if let Some(host) = &body.outbound_address {
        if !host_ok(host) {
            return Err(ApiError::invalid(
                "outbound_address",
                "a SIP host, host:port (no scheme, no path)",
            ));
        }
    }
    let no_empty = |field: &str, value: &Option<String>| match value {
        Some(v) if v.is_empty() => Err(ApiError::invalid(field, "empty; leave it out instead")),
        _ => Ok(()),
    };
    no_empty("auth_username", &body.auth_username)?;
    no_empty("outbound_username", &body.outbound_username)?;
    if body.auth_password.is_some() && body.auth_username.is_none() {
        return Err(ApiError::invalid(
            "auth_username",
            "required with auth_password",
        ));
    }
    if body.outbound_password.is_some() && body.outbound_username.is_none() {
        return Err(ApiError::invalid(
            "outbound_username",
            "required with outbound_password",
        ));
    }
    Ok(TrunkSettings {
        allowed_addresses: body.allowed_addresses,
        auth_username: body.auth_username,
        auth_password: body.auth_password.map(Secret::new),
        outbound_address: body.outbound_address,
        outbound_username: body.outbound_username,
        outbound_password: body.outbound_password.map(Secret::new),
    })
}

/// Set a number's SIP trunk (replaces all its settings; passwords left out are cleared).
#[utoipa::path(put, path = "/companies/{id}/phone-numbers/{number}/trunk", tag = "phone-numbers", security(("bearer" = [])),
    params(("id" = String, Path, description = "Company id"), ("number" = String, Path, description = "The number, E.164")),
    request_body = TrunkIn,
    responses((status = 200, body = PhoneNumberOut), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn put_trunk(
    State(ctx): State<ApiContext>,
    who: Principal,
    Id((id, number)): Id<(String, String)>,
    Body(body): Body<TrunkIn>,
) -> ApiResult<Json<PhoneNumberOut>> {
    let company = visible_company(&ctx, &who, &id).await?;
    let number = path_number(&number)?;
    let trunk = checked_trunk(body)?;
    let phone = ctx
        .store
        .set_trunk_settings(&company.id, &number, &trunk)
        .await
        .not_found_as("phone number")?;
    provision(&ctx, &number).await?;
    Ok(Json(phone.into()))
}
