//! A fake S3-compatible object store for PUT, GET and DELETE of objects in path style
//! (`/{bucket}/{key}`), enforcing what S3 enforces on them: an `Authorization` header signed
//! with AWS Signature Version 4 that it recomputes from the request it received (its own
//! implementation of the canonical request, string to sign and key derivation), a known access
//! key, `x-amz-date` within 15 minutes, `x-amz-content-sha256` present, signed and equal to the
//! body's hash (or `UNSIGNED-PAYLOAD`). Errors are S3's XML (`<Error><Code>…</Code>`) with S3's
//! status codes; a missing object is `404 NoSuchKey` (a bare 404 to a HEAD), deleting one is
//! still `204`.

use crate::server::{percent_decode, AbortOnDrop};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const TEST_ACCESS_KEY: &str = "AKIDTESTFAKES3";
pub const TEST_SECRET_KEY: &str = "fake/s3+secret/KEY";
pub const TEST_REGION: &str = "us-east-1";

struct S3State {
    bucket: String,
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    /// `(status, code)` answered to the next requests instead of serving them.
    failures: Mutex<Vec<(u16, String)>>,
    /// `METHOD /path` of every request, as received.
    requests: Mutex<Vec<String>>,
}

pub struct FakeS3 {
    addr: SocketAddr,
    state: Arc<S3State>,
    _server: AbortOnDrop,
}

impl FakeS3 {
    /// A server holding one empty bucket, accepting [`TEST_ACCESS_KEY`] in [`TEST_REGION`].
    pub async fn start(bucket: &str) -> FakeS3 {
        let state = Arc::new(S3State {
            bucket: bucket.to_string(),
            objects: Mutex::new(BTreeMap::new()),
            failures: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
        });
        let router = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let addr = listener.local_addr().expect("bound");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeS3 {
            addr,
            state,
            _server: AbortOnDrop(task),
        }
    }

    /// The endpoint, as clients are configured (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.state.objects.lock().expect("lock").get(key).cloned()
    }

    pub fn keys(&self) -> Vec<String> {
        self.state
            .objects
            .lock()
            .expect("lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Answers the next request with `status` and S3 error `code` (e.g. 503 `SlowDown`).
    pub fn fail_next(&self, status: u16, code: &str) {
        self.state
            .failures
            .lock()
            .expect("lock")
            .push((status, code.to_string()));
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().expect("lock").clone()
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fake</RequestId></Error>"
    );
    (status, [("content-type", "application/xml")], body).into_response()
}

/// An S3 error as a refusal of [`verify`].
fn refuse(status: StatusCode, code: &str, message: &str) -> Box<Response> {
    Box::new(error(status, code, message))
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn mac(key: &[u8], text: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(text.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// `Credential=…, SignedHeaders=…, Signature=…` of a SigV4 `Authorization` header.
fn parse_authorization(value: &str) -> Option<(Vec<String>, Vec<String>, String)> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (name, v) = part.trim().split_once('=')?;
        match name {
            "Credential" => credential = Some(v.split('/').map(str::to_string).collect()),
            "SignedHeaders" => signed = Some(v.split(';').map(str::to_string).collect()),
            "Signature" => signature = Some(v.to_string()),
            _ => return None,
        }
    }
    Some((credential?, signed?, signature?))
}

fn canonical_query(query: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Checks the request's signature; `Err` is the S3 error to answer.
/// (Boxed: a refusal is the rare path, and a `Response` is large.)
fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Box<Response>> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let Some(authorization) = header("authorization") else {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Access Denied",
        ));
    };
    let Some((credential, signed, signature)) = parse_authorization(&authorization) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "AuthorizationHeaderMalformed",
            "The authorization header is malformed",
        ));
    };
    let [access_key, date, region, service, terminal] = credential.as_slice() else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "AuthorizationHeaderMalformed",
            "Credential",
        ));
    };
    if access_key != TEST_ACCESS_KEY {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        ));
    }
    if region != TEST_REGION || service != "s3" || terminal != "aws4_request" {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "AuthorizationHeaderMalformed",
            "the region, service or terminal of the credential is wrong",
        ));
    }
    for needed in ["host", "x-amz-date", "x-amz-content-sha256"] {
        if !signed.iter().any(|s| s == needed) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                &format!("{needed} must be signed"),
            ));
        }
    }
    let Some(amz_date) = header("x-amz-date") else {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "no x-amz-date",
        ));
    };
    let when = chrono::NaiveDateTime::parse_from_str(&amz_date, "%Y%m%dT%H%M%SZ")
        .map(|t| t.and_utc().timestamp());
    let skew = when.map(|t| (chrono::Utc::now().timestamp() - t).abs());
    if !skew.is_ok_and(|s| s <= 15 * 60) || !amz_date.starts_with(date.as_str()) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        ));
    }
    let Some(payload) = header("x-amz-content-sha256") else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Missing required header for this request: x-amz-content-sha256",
        ));
    };
    if payload != "UNSIGNED-PAYLOAD" && payload != hex_sha256(body) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }
    let mut canonical_headers = String::new();
    for name in &signed {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                &format!("signed header {name} is missing"),
            ));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let canonical_request = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{}\n{payload}",
        uri.path(),
        canonical_query(uri.query()),
        signed.join(";")
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/s3/aws4_request\n{}",
        hex_sha256(canonical_request.as_bytes())
    );
    let mut key = mac(format!("AWS4{TEST_SECRET_KEY}").as_bytes(), date);
    for part in [region.as_str(), "s3", "aws4_request"] {
        key = mac(&key, part);
    }
    let expected: String = mac(&key, &string_to_sign)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if expected != signature {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    Ok(())
}

async fn handle(
    State(state): State<Arc<S3State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .requests
        .lock()
        .expect("lock")
        .push(format!("{method} {}", uri.path()));
    if let Err(refusal) = verify(&method, &uri, &headers, &body) {
        return *refusal;
    }
    let failure = {
        let mut failures = state.failures.lock().expect("lock");
        (!failures.is_empty()).then(|| failures.remove(0))
    };
    if let Some((status, code)) = failure {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(status, &code, "scripted failure");
    }
    let path = uri.path().trim_start_matches('/');
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    if bucket != state.bucket {
        return error(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist",
        );
    }
    // Keys are stored as S3 does: decoded.
    let key = percent_decode(key);
    if key.is_empty() {
        return error(StatusCode::BAD_REQUEST, "InvalidRequest", "no key");
    }
    let mut objects = state.objects.lock().expect("lock");
    match method {
        Method::PUT => {
            let etag = format!("\"{}\"", &hex_sha256(&body)[..32]);
            objects.insert(key, body.to_vec());
            (StatusCode::OK, [("etag", etag)]).into_response()
        }
        // A HEAD is answered as a GET without the body (its length stays in Content-Length).
        Method::GET | Method::HEAD => match objects.get(&key) {
            Some(bytes) => (
                StatusCode::OK,
                [("content-type", "application/octet-stream")],
                bytes.clone(),
            )
                .into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            ),
        },
        Method::DELETE => {
            objects.remove(&key);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
        ),
    }
}
