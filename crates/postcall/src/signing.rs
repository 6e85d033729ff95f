//! Standard Webhooks signatures: `v1,` + base64 HMAC-SHA256 over `{webhook-id}.{timestamp}.{body}`,
//! keyed with the secret's part after `whsec_`, base64-decoded.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The secret is not `whsec_` followed by base64.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the endpoint's secret is not whsec_ followed by base64")]
pub struct BadSecret;

/// An endpoint's signing key. Never printed.
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// The key of a `whsec_…` secret.
    pub fn from_secret(secret: &str) -> Result<SigningKey, BadSecret> {
        let encoded = secret.strip_prefix("whsec_").ok_or(BadSecret)?;
        let key = STANDARD.decode(encoded).map_err(|_| BadSecret)?;
        if key.is_empty() {
            return Err(BadSecret);
        }
        Ok(SigningKey(key))
    }

    /// The `webhook-signature` header's value for one attempt.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_example_signs_alike() {
        // The example of the Standard Webhooks specification.
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            key.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(format!("{key:?}"), "SigningKey([redacted])");
    }

    #[test]
    fn secrets_must_be_whsec_base64() {
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_",
            "whsec_not base64!",
        ] {
            assert_eq!(SigningKey::from_secret(bad).err(), Some(BadSecret), "{bad}");
        }
    }
}
