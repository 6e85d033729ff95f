//! Posting JSON to an HTTP provider with retries, and reading its error body.

use crate::types::LlmError;
use crate::Backoff;
use callfleet_core::secret::Secret;

/// Posts `body` to `url` (Bearer `key` where given), retrying what [`LlmError::retryable`]
/// allows. A refusal's message is taken from the body by `message`, else the body itself.
pub(crate) async fn post_json(
    http: &reqwest::Client,
    url: &str,
    key: Option<&Secret>,
    body: &serde_json::Value,
    backoff: Backoff,
    provider: &str,
    message: fn(&str) -> Option<String>,
) -> Result<reqwest::Response, LlmError> {
    let send = || async {
        let mut req = http.post(url).json(body);
        if let Some(key) = key {
            req = req.bearer_auth(key.expose());
        }
        let resp = req.send().await.map_err(|e| LlmError::Connect {
            provider: provider.into(),
            message: e.to_string(),
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        if status == 401 {
            return Err(LlmError::Auth {
                provider: provider.into(),
            });
        }
        let text = resp.text().await.unwrap_or_default();
        let message = message(&text).unwrap_or(text);
        Err(LlmError::Status {
            provider: provider.into(),
            status,
            message,
        })
    };
    backoff.retry(send, LlmError::retryable).await
}
