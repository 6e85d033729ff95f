//! Call recordings: the two-channel WAV an agent makes from the audio it already has (left the
//! caller, right the bot), and where it is kept — behind [`RecordingStore`], a directory under
//! the data dir ([`DirStore`]) or an S3-compatible bucket ([`S3Store`], path-style requests
//! signed with AWS Signature Version 4). Keys are `recordings/{company}/{call}.wav`, so a
//! company's recordings can never be read under another company's key.
//!
//! Architecture invariant: stores bytes under keys; who may read a recording and how long it is
//! kept are decided by the admin API and the store.

pub mod sigv4;

use async_trait::async_trait;
use callfleet_core::secret::Secret;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("recording file: {0}")]
    Io(#[from] std::io::Error),
    #[error("recording bucket unreachable: {0}")]
    Connect(String),
    #[error("recording bucket answered {status}: {code}")]
    Status { status: u16, code: String },
    #[error("invalid recording key {0:?}")]
    Key(String),
    #[error("recording storage settings: {0}")]
    Settings(String),
}

pub type Result<T, E = RecordingError> = std::result::Result<T, E>;

/// Where recordings are kept.
#[async_trait]
pub trait RecordingStore: Send + Sync + 'static {
    /// Stores `bytes` under `key`, replacing what was there.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()>;
    /// The bytes under `key`; `None` when there are none.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Removes `key`; removing what is not there is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// How many bytes are under `key` (without reading them); `None` when there are none.
    async fn size(&self, key: &str) -> Result<Option<u64>>;
}

/// The key of a call's recording.
pub fn recording_key(company_id: &str, call_id: &str) -> String {
    format!("recordings/{company_id}/{call_id}.wav")
}

/// Keys are relative paths of plain segments: no `..`, no empty or hidden segments, no
/// backslashes, so a key can never leave the directory or bucket prefix it is given.
fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        });
    if ok {
        Ok(())
    } else {
        Err(RecordingError::Key(key.to_string()))
    }
}

/// Interleaves the caller (left) and the bot (right) into a 16-bit stereo WAV at `sample_rate`;
/// the shorter channel is padded with silence.
pub fn stereo_wav(caller: &[i16], bot: &[i16], sample_rate: u32) -> Vec<u8> {
    callfleet_audio::wav::encode_stereo(caller, bot, sample_rate)
}

// ---------------------------------------------------------------------------------------------

/// Recordings as files under a directory (the data dir's `recordings/` by default).
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn new(root: &Path) -> DirStore {
        DirStore {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

#[async_trait]
impl RecordingStore for DirStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(key)?;
        let dir = path
            .parent()
            .ok_or_else(|| RecordingError::Key(key.to_string()))?;
        tokio::fs::create_dir_all(dir).await?;
        // Written aside and renamed, so a reader never sees half a recording.
        let partial = path.with_extension("partial");
        tokio::fs::write(&partial, &bytes).await?;
        tokio::fs::rename(&partial, &path).await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Where an S3-compatible bucket is and the keys to it.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `https://s3.eu-central-1.amazonaws.com`, `http://127.0.0.1:9000` (MinIO), …
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: Secret,
}

/// Recordings in an S3-compatible bucket, over path-style requests (`{endpoint}/{bucket}/{key}`)
/// signed with SigV4; the body's SHA-256 is signed too.
pub struct S3Store {
    settings: S3Settings,
    http: reqwest::Client,
}

/// How long one request to the bucket may take.
const S3_TIMEOUT: Duration = Duration::from_secs(60);

impl S3Store {
    pub fn new(settings: S3Settings) -> Result<S3Store> {
        let endpoint = settings.endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(RecordingError::Settings(format!(
                "S3 endpoint {endpoint:?} is not an http(s) URL"
            )));
        }
        if settings.bucket.is_empty() || settings.bucket.contains('/') {
            return Err(RecordingError::Settings(format!(
                "bucket name {:?}",
                settings.bucket
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(S3_TIMEOUT)
            .build()
            .map_err(|e| RecordingError::Settings(e.to_string()))?;
        Ok(S3Store {
            settings: S3Settings {
                endpoint,
                ..settings
            },
            http,
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        key: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response> {
        check_key(key)?;
        let path = sigv4::encode_path(&format!("/{}/{key}", self.settings.bucket));
        let host = self
            .settings
            .endpoint
            .split("://")
            .nth(1)
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let payload = if body.is_empty() {
            sigv4::EMPTY_SHA256.to_string()
        } else {
            sigv4::sha256_hex(&body)
        };
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let headers = [
            ("host", host),
            ("x-amz-content-sha256", payload.clone()),
            ("x-amz-date", amz_date.clone()),
        ];
        let signer = sigv4::Signer {
            access_key: &self.settings.access_key,
            secret_key: self.settings.secret_key.expose(),
            region: &self.settings.region,
        };
        let authorization = signer.authorization(
            &sigv4::Request {
                method: method.as_str(),
                path: &path,
                headers: &headers,
                payload_sha256: &payload,
            },
            &amz_date,
        );
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.settings.endpoint))
            .header("x-amz-content-sha256", payload)
            .header("x-amz-date", amz_date)
            .header("authorization", authorization);
        if !body.is_empty() {
            request = request.header("content-type", "audio/wav").body(body);
        }
        request
            .send()
            .await
            .map_err(|e| RecordingError::Connect(e.without_url().to_string()))
    }
}

/// The `<Code>` of an S3 error body, or the status text.
async fn error_of(response: reqwest::Response) -> RecordingError {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    let code = body
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.to_string())
        .unwrap_or_else(|| format!("HTTP {status}"));
    RecordingError::Status { status, code }
}

#[async_trait]
impl RecordingStore for S3Store {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let response = self.send(reqwest::Method::PUT, key, bytes).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(error_of(response).await)
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let response = self.send(reqwest::Method::GET, key, Vec::new()).await?;
        match response.status().as_u16() {
            200 => Ok(Some(
                response
                    .bytes()
                    .await
                    .map_err(|e| RecordingError::Connect(e.without_url().to_string()))?
                    .to_vec(),
            )),
            404 => {
                let error = error_of(response).await;
                match &error {
                    RecordingError::Status { code, .. } if code == "NoSuchKey" => Ok(None),
                    _ => Err(error),
                }
            }
            _ => Err(error_of(response).await),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let response = self.send(reqwest::Method::DELETE, key, Vec::new()).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(error_of(response).await)
        }
    }

    /// HEAD: S3 answers a missing key with a bare 404 (a HEAD response has no body).
    async fn size(&self, key: &str) -> Result<Option<u64>> {
        let response = self.send(reqwest::Method::HEAD, key, Vec::new()).await?;
        match response.status().as_u16() {
            200 => Ok(Some(
                response
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            404 => Ok(None),
            status => Err(RecordingError::Status {
                status,
                code: format!("HTTP {status}"),
            }),
        }
    }
}

/// The store the environment asks for: `CALLFLEET_RECORDINGS_S3_BUCKET` (with
/// `CALLFLEET_RECORDINGS_S3_ENDPOINT`, `CALLFLEET_RECORDINGS_S3_REGION` (default `us-east-1`),
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`) for a bucket, else files under
/// `data_dir/recordings`.
pub fn from_env(
    get: impl Fn(&str) -> Option<String>,
    data_dir: &Path,
) -> Result<std::sync::Arc<dyn RecordingStore>> {
    let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let Some(bucket) = get("CALLFLEET_RECORDINGS_S3_BUCKET") else {
        return Ok(std::sync::Arc::new(DirStore::new(
            &data_dir.join("recordings"),
        )));
    };
    let need = |name: &str| {
        get(name).ok_or_else(|| {
            RecordingError::Settings(format!(
                "{name} is needed with CALLFLEET_RECORDINGS_S3_BUCKET"
            ))
        })
    };
    Ok(std::sync::Arc::new(S3Store::new(S3Settings {
        endpoint: need("CALLFLEET_RECORDINGS_S3_ENDPOINT")?,
        bucket,
        region: get("CALLFLEET_RECORDINGS_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
        access_key: need("AWS_ACCESS_KEY_ID")?,
        secret_key: Secret::new(need("AWS_SECRET_ACCESS_KEY")?),
    })?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_their_prefix() {
        for (key, ok) in [
            ("recordings/cmp_1/call_1.wav", true),
            ("recordings/../etc/passwd", false),
            ("recordings//x.wav", false),
            ("/abs.wav", false),
            ("recordings/.hidden", false),
            ("recordings/a b.wav", false),
            ("recordings\\x.wav", false),
            ("", false),
        ] {
            assert_eq!(check_key(key).is_ok(), ok, "{key}");
        }
        assert_eq!(
            recording_key("cmp_1", "call_2"),
            "recordings/cmp_1/call_2.wav"
        );
    }

    #[test]
    fn a_recording_is_caller_left_bot_right() {
        let wav = stereo_wav(&[1, 2, 3], &[-1], 16_000);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 2, "two channels");
        assert_eq!(
            u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
            16_000
        );
        assert_eq!(u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]), 12);
        let samples: Vec<i16> = wav[44..]
            .chunks(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(samples, [1, -1, 2, 0, 3, 0]);
    }

    #[test]
    fn the_environment_picks_the_store() {
        let dir = tempfile::tempdir().unwrap();
        assert!(from_env(|_| None, dir.path()).is_ok());
        let missing = from_env(
            |n| (n == "CALLFLEET_RECORDINGS_S3_BUCKET").then(|| "b".to_string()),
            dir.path(),
        );
        assert!(
            matches!(missing, Err(RecordingError::Settings(m)) if m.contains("CALLFLEET_RECORDINGS_S3_ENDPOINT"))
        );
    }
}
