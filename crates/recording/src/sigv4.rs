//! AWS Signature Version 4 for S3 requests in the `Authorization` header: the canonical request,
//! the string to sign, the derived signing key and the signature, as AWS documents them. Pure,
//! checked against the worked example in the S3 documentation.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The SHA-256 of an empty body, hex: what a GET or DELETE sends as `x-amz-content-sha256`.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A path encoded as S3 wants it in the canonical request and on the wire: every byte but
/// unreserved characters and `/` percent-encoded (S3 does not encode twice).
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What is signed of one request.
pub struct Request<'a> {
    pub method: &'a str,
    /// Already encoded ([`encode_path`]).
    pub path: &'a str,
    /// `(name, value)`; names in any case, all of them signed.
    pub headers: &'a [(&'a str, String)],
    /// Hex SHA-256 of the body (also sent as `x-amz-content-sha256`).
    pub payload_sha256: &'a str,
}

/// Credentials and where they apply.
pub struct Signer<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
}

impl Signer<'_> {
    /// The `Authorization` header for `request` at `amz_date` (`YYYYMMDDTHHMMSSZ`).
    pub fn authorization(&self, request: &Request<'_>, amz_date: &str) -> String {
        let (signed_headers, signature) = self.signature(request, amz_date);
        let date = &amz_date[..8.min(amz_date.len())];
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{date}/{}/s3/aws4_request, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key, self.region
        )
    }

    /// (signed header names, hex signature).
    pub fn signature(&self, request: &Request<'_>, amz_date: &str) -> (String, String) {
        let date = &amz_date[..8.min(amz_date.len())];
        let mut headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(name, value)| {
                let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
                (name.to_ascii_lowercase(), value)
            })
            .collect();
        headers.sort();
        let canonical_headers: String = headers
            .iter()
            .map(|(name, value)| format!("{name}:{value}\n"))
            .collect();
        let signed_headers = headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical_request = format!(
            "{}\n{}\n\n{canonical_headers}\n{signed_headers}\n{}",
            request.method, request.path, request.payload_sha256
        );
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            sha256_hex(canonical_request.as_bytes())
        );
        let key = hmac(format!("AWS4{}", self.secret_key).as_bytes(), date);
        let key = hmac(&key, self.region);
        let key = hmac(&key, "s3");
        let key = hmac(&key, "aws4_request");
        (signed_headers, hex::encode(hmac(&key, &string_to_sign)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "Example: GET Object" of the S3 documentation (Signature Version 4, header-based auth).
    #[test]
    fn the_documented_get_object_example_signs_alike() {
        let signer = Signer {
            access_key: "AKIAIOSFODNN7EXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
        };
        let headers = [
            ("Host", "examplebucket.s3.amazonaws.com".to_string()),
            ("Range", "bytes=0-9".to_string()),
            ("x-amz-content-sha256", EMPTY_SHA256.to_string()),
            ("x-amz-date", "20130524T000000Z".to_string()),
        ];
        let request = Request {
            method: "GET",
            path: "/test.txt",
            headers: &headers,
            payload_sha256: EMPTY_SHA256,
        };
        assert_eq!(
            signer.authorization(&request, "20130524T000000Z"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
    }

    #[test]
    fn paths_are_encoded_once() {
        assert_eq!(
            encode_path("/b/rec/cmp_1/call 1.wav"),
            "/b/rec/cmp_1/call%201.wav"
        );
        assert_eq!(encode_path("/b/a+b$c~d"), "/b/a%2Bb%24c~d");
        assert_eq!(
            encode_path("/b/звонок"),
            "/b/%D0%B7%D0%B2%D0%BE%D0%BD%D0%BE%D0%BA"
        );
    }
}
