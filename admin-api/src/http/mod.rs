//! Routes by feature. Every route is registered through `utoipa_axum::routes!`, which records its
//! OpenAPI operation at the same time, so the document and the router cannot drift apart.

mod bots;
mod calls;
mod companies;
mod embed_keys;
mod health;
mod knowledge;
mod outbound;
mod phone_numbers;
mod sessions;
mod talk;
mod webhooks;

use crate::error::ErrorBody;
use crate::ApiContext;
use axum::extract::FromRequest;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

#[derive(OpenApi)]
#[openapi(
    info(title = "callfleet admin API", description = "Companies, API keys, bots and their configs, phone numbers, calls, webhooks."),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "companies", description = "Tenants and their API keys (admin key)"),
        (name = "bots", description = "Bots and versioned configs"),
        (name = "knowledge", description = "Bots' documents: upload, indexing progress, search"),
        (name = "phone-numbers", description = "Numbers routed to bots"),
        (name = "calls", description = "Call records, transcripts, outcomes; browser call sessions"),
        (name = "webhooks", description = "Where call events are sent"),
        (name = "system", description = "Health, metrics, this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

fn api_router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(companies::router())
        .merge(bots::router())
        .merge(knowledge::router())
        .merge(phone_numbers::router())
        .merge(sessions::router())
        .merge(embed_keys::router())
        .merge(talk::router())
        .merge(calls::router())
        .merge(outbound::router())
        .merge(webhooks::router())
}

pub(crate) fn routes(ctx: ApiContext) -> OpenApiRouter {
    api_router().with_state(ctx)
}

pub(crate) fn openapi_document() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

/// The document, rendered once.
pub(crate) fn openapi_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        openapi_document()
            .to_pretty_json()
            .expect("the OpenAPI document serialises")
    })
}

/// `Json` whose rejections are our JSON errors rather than axum's plain text.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(crate::ApiError))]
pub(crate) struct Body<T>(pub T);

/// `Query` with JSON errors.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(crate::ApiError))]
pub(crate) struct Params<T>(pub T);

/// `Path` with JSON errors.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(crate::ApiError))]
pub(crate) struct Id<T>(pub T);
