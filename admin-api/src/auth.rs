//! Who is calling. `Authorization: Bearer <key>` is either the admin key (everything) or a company
//! key (that company's resources only). A company key asking for another company's resource gets
//! 404, exactly as if it did not exist, so ids of other tenants leak nothing.
//!
//! An embed key (`cfe_…`, [`SessionCaller`]) is for public web pages: it is accepted only where a
//! browser call starts, for the bots it names, from the origins it names, rate limited per key
//! and per source address. [`Principal`] never accepts one, so every other route refuses it.

use crate::error::ApiError;
use crate::ApiContext;
use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, ORIGIN};
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Company { company_id: String, key_id: String },
}

impl Principal {
    /// Passes when the caller may act on a resource of `company_id`; otherwise the resource is,
    /// for this caller, not there.
    pub fn can_access(&self, company_id: &str, what: &'static str) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Company {
                company_id: own, ..
            } if own == company_id => Ok(()),
            Principal::Company { .. } => Err(ApiError::NotFound(what)),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Company { .. } => {
                Err(ApiError::Forbidden("this action needs the admin key"))
            }
        }
    }

    /// The company a create request acts for: a company key's own, or the one an admin names.
    pub fn company_for_create(&self, requested: Option<&str>) -> Result<String, ApiError> {
        match (self, requested) {
            (Principal::Company { company_id, .. }, None) => Ok(company_id.clone()),
            (Principal::Company { company_id, .. }, Some(asked)) if asked == company_id => {
                Ok(company_id.clone())
            }
            (Principal::Company { .. }, Some(_)) => Err(ApiError::NotFound("company")),
            (Principal::Admin, Some(asked)) => Ok(asked.to_string()),
            (Principal::Admin, None) => Err(ApiError::invalid(
                "company_id",
                "required when using the admin key",
            )),
        }
    }

    /// The company a list request is limited to (`None`: an admin sees all).
    pub fn company_filter(&self, requested: Option<String>) -> Result<Option<String>, ApiError> {
        match (self, requested) {
            (Principal::Admin, requested) => Ok(requested),
            (Principal::Company { company_id, .. }, None) => Ok(Some(company_id.clone())),
            (Principal::Company { company_id, .. }, Some(asked)) if &asked == company_id => {
                Ok(Some(asked))
            }
            (Principal::Company { .. }, Some(_)) => Err(ApiError::NotFound("company")),
        }
    }

    fn rate_limit_key(&self) -> &str {
        match self {
            Principal::Admin => "admin",
            Principal::Company { key_id, .. } => key_id,
        }
    }
}

/// The source address a request is counted against.
fn source_of(parts: &Parts) -> String {
    crate::peer_of(&parts.extensions)
        .map_or_else(|| "unknown".to_string(), |peer| peer.ip().to_string())
}

/// The bearer token of a request; a request without one counts as a failed authentication.
fn bearer<'a>(parts: &'a Parts, ctx: &ApiContext, source: &str) -> Result<&'a str, ApiError> {
    // Guessing keys costs a source address its budget of failures; once spent, it is refused
    // before any key is looked up.
    ctx.auth_failures
        .available(source)
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| auth_failed(ctx, source))
}

fn auth_failed(ctx: &ApiContext, source: &str) -> ApiError {
    match ctx.auth_failures.check(source) {
        Ok(()) => ApiError::Unauthorized,
        Err(retry_after_secs) => ApiError::RateLimited { retry_after_secs },
    }
}

impl Principal {
    /// The principal of a presented key (the admin key, or a company's API key), past the
    /// per-key rate limit.
    async fn of_key(ctx: &ApiContext, presented: &str, source: &str) -> Result<Self, ApiError> {
        let admin = ctx.config.admin_key.expose();
        let principal =
            if !admin.is_empty() && bool::from(presented.as_bytes().ct_eq(admin.as_bytes())) {
                Principal::Admin
            } else {
                let owner = ctx
                    .store
                    .find_api_key(presented)
                    .await?
                    .ok_or_else(|| auth_failed(ctx, source))?;
                Principal::Company {
                    company_id: owner.company_id,
                    key_id: owner.key_id,
                }
            };
        ctx.limiter
            .check(principal.rate_limit_key())
            .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
        Ok(principal)
    }
}

impl FromRequestParts<ApiContext> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let source = source_of(parts);
        let presented = bearer(parts, ctx, &source)?;
        Principal::of_key(ctx, presented, &source).await
    }
}

/// Who may start a browser call: an API key (as [`Principal`]) or an embed key.
#[derive(Debug)]
pub enum SessionCaller {
    Principal(Principal),
    Embed {
        key: callfleet_store::EmbedKey,
        /// The page's origin, when the request came from a browser and the key allows it;
        /// echoed in `Access-Control-Allow-Origin`.
        origin: Option<String>,
    },
}

impl FromRequestParts<ApiContext> for SessionCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let source = source_of(parts);
        let presented = bearer(parts, ctx, &source)?;
        if !presented.starts_with(callfleet_store::EMBED_KEY_PREFIX) {
            return Principal::of_key(ctx, presented, &source)
                .await
                .map(SessionCaller::Principal);
        }
        let key = ctx
            .store
            .find_embed_key(presented)
            .await?
            .ok_or_else(|| auth_failed(ctx, &source))?;
        // Browsers always send Origin on a cross-origin POST (and on same-origin POSTs too);
        // a request without one is not from a page and the origin rule does not apply.
        let origin = parts
            .headers
            .get(ORIGIN)
            .map(|v| v.to_str().unwrap_or_default().to_string());
        if let Some(origin) = &origin {
            if !key.allowed_origins.is_empty() && !key.allowed_origins.iter().any(|o| o == origin) {
                return Err(ApiError::Forbidden(
                    "this embed key may not be used from this page's origin",
                ));
            }
        }
        // Per key and per visitor: one visitor cannot spend the page's whole budget, and a
        // leaked key cannot start more than its budget from many addresses.
        for bucket in [format!("key:{}", key.id), format!("ip:{source}")] {
            ctx.embed_sessions
                .check(&bucket)
                .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
        }
        Ok(SessionCaller::Embed { key, origin })
    }
}
