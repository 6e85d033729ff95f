//! One error type for every handler. Each variant maps to a status and a stable `code`; the body is
//! always `{"error": {"code", "message", "details"}}`. Database failures are logged with context and
//! answered with a plain 500 that reveals nothing.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use callfleet_core::config::ConfigIssue;
use callfleet_store::StoreError;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The body is within its size but what it holds expands past a limit (a document).
    #[error("{0}")]
    ContentTooLarge(String),
    /// The tenant is at one of its quotas (documents, config versions).
    #[error("{0}")]
    QuotaExceeded(String),
    /// The request is well-formed but its content is not acceptable; `details` names each problem.
    #[error("{message}")]
    Unprocessable {
        message: String,
        details: Vec<ConfigIssue>,
    },
    /// A dependency (LiveKit, the fleet) cannot serve this now; `code` says which.
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    #[error("rate limit exceeded")]
    RateLimited { retry_after_secs: u64 },
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `unauthorized`, `not_found`, `validation_failed`, …
    pub code: String,
    pub message: String,
    /// For `validation_failed`: `[{"path": "scenarios[0].name", "message": "required"}]`.
    #[schema(value_type = Object)]
    pub details: Value,
}

impl ApiError {
    pub fn invalid(path: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::Unprocessable {
            message: format!("{path}: {message}"),
            details: vec![ConfigIssue {
                path: path.to_string(),
                message,
            }],
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) | ApiError::ContentTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::QuotaExceeded(_) => (StatusCode::FORBIDDEN, "quota_exceeded"),
            ApiError::Unprocessable { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            }
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound("resource"),
            StoreError::Conflict(what) => ApiError::Conflict(what),
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(source) = &self {
            tracing::error!(error = %source, "request failed");
        }
        let details = match &self {
            ApiError::Unprocessable { details, .. } => json!(details),
            _ => Value::Null,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: self.to_string(),
                details,
            },
        };
        let mut response = (status, Json(body)).into_response();
        match self {
            ApiError::RateLimited { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Names what was not found, so a 404 says "bot not found" rather than "resource not found".
pub(crate) trait NotFoundAs<T> {
    fn not_found_as(self, what: &'static str) -> ApiResult<T>;
}

impl<T> NotFoundAs<T> for Result<T, StoreError> {
    fn not_found_as(self, what: &'static str) -> ApiResult<T> {
        self.map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound(what),
            other => other.into(),
        })
    }
}
