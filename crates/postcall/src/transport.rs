//! Sending one signed request. [`HttpTransport`] checks the URL, resolves the host itself and
//! refuses if any address it gets is not allowed, then connects to exactly the addresses it
//! checked (its resolver is the client's), follows no redirects and uses no proxy — so neither
//! DNS rebinding nor a redirect nor an environment proxy can carry a webhook inside the network.

use crate::address::AddressPolicy;
use crate::retry::parse_retry_after;
use async_trait::async_trait;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What came of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The receiver answered.
    Answered {
        status: u16,
        retry_after: Option<Duration>,
        /// The start of the answer's body.
        excerpt: String,
    },
    /// No answer: refused destination, connection refused, timeout.
    NoAnswer { error: String },
}

/// Sends one webhook request.
#[async_trait]
pub trait WebhookTransport: Send + Sync + 'static {
    async fn send(&self, url: &str, headers: &[(&str, String)], body: &[u8]) -> SendOutcome;
}

/// How much of an answer is kept in the delivery log.
pub const EXCERPT_CHARS: usize = 512;

/// The production transport (reqwest, rustls).
pub struct HttpTransport {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

impl HttpTransport {
    /// A transport whose requests give up after `timeout` (connect, send, answer).
    pub fn new(policy: AddressPolicy, timeout: Duration) -> Result<HttpTransport, reqwest::Error> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("callfleet-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(CheckedResolver {
                policy: policy.clone(),
            }))
            .build()?;
        Ok(HttpTransport { client, policy })
    }
}

/// Resolves a host and refuses it when any of its addresses is not allowed.
struct CheckedResolver {
    policy: Arc<AddressPolicy>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no address").into());
            }
            for addr in &addrs {
                policy
                    .check_ip(addr.ip())
                    .map_err(|refused| format!("{host} resolves to {}: {refused}", addr.ip()))?;
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The chain of an error's causes, which is where reqwest says what went wrong.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "could not connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait]
impl WebhookTransport for HttpTransport {
    async fn send(&self, url: &str, headers: &[(&str, String)], body: &[u8]) -> SendOutcome {
        // An address written in the URL is never resolved, so it is checked here.
        if let Err(refused) = self.policy.check_url(url) {
            return SendOutcome::NoAnswer {
                error: format!("refused: {refused}"),
            };
        }
        let mut request = self.client.post(url).body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return SendOutcome::NoAnswer {
                    error: describe(&e),
                }
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now().timestamp_millis()));
        let mut bytes = Vec::new();
        while bytes.len() < EXCERPT_CHARS * 4 {
            match response.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                // An answer cut short still answered; its status decides.
                Ok(None) | Err(_) => break,
            }
        }
        let excerpt: String = String::from_utf8_lossy(&bytes)
            .chars()
            .take(EXCERPT_CHARS)
            .collect();
        SendOutcome::Answered {
            status,
            retry_after,
            excerpt,
        }
    }
}
