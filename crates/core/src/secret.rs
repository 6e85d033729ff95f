//! A string that must never reach a log: API keys, provider keys, tokens, passwords.

use std::fmt;

/// Holds a secret; `Debug` and `Display` print `[redacted]`. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// A connection URL that may carry a password (`postgres://app:pw@db/cf`,
/// `redis://:pw@redis:6379`, `…?password=pw`); `Debug` and `Display` show it with every
/// credential replaced by `***`. Read the real one with [`SecretUrl::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(value: impl Into<String>) -> SecretUrl {
        SecretUrl(value.into())
    }

    /// The URL itself, for the one place that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl(s.to_string()))
    }
}

/// Query parameters that carry credentials in connection URLs (libpq's `password` and
/// `sslpassword`, tokens and keys of HTTP services).
const SECRET_PARAMS: &[&str] = &[
    "password",
    "sslpassword",
    "pass",
    "pwd",
    "secret",
    "token",
    "access_token",
    "key",
    "api_key",
    "apikey",
];

/// `url` with the password of its user info and the values of credential query parameters
/// replaced by `***`; a URL without them is returned as it is.
pub fn redact_url(url: &str) -> String {
    let (main, fragment) = match url.split_once('#') {
        Some((m, f)) => (m, Some(f)),
        None => (url, None),
    };
    let (base, query) = match main.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (main, None),
    };
    let mut out = match base.find("://") {
        Some(scheme_end) => {
            let authority_end = base[scheme_end + 3..]
                .find('/')
                .map_or(base.len(), |i| scheme_end + 3 + i);
            match base[scheme_end + 3..authority_end].rfind('@') {
                Some(at) => {
                    let userinfo = &base[scheme_end + 3..scheme_end + 3 + at];
                    let user = userinfo.split(':').next().unwrap_or("");
                    let hidden = if userinfo.contains(':') {
                        format!("{user}:***")
                    } else {
                        user.to_string()
                    };
                    format!(
                        "{}://{hidden}@{}",
                        &base[..scheme_end],
                        &base[scheme_end + 3 + at + 1..]
                    )
                }
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str()) => {
                    format!("{name}=***")
                }
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{redact_url, Secret, SecretUrl};

    #[test]
    fn urls_lose_every_credential() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db:5432/cf",
                "postgres://app:***@db:5432/cf",
            ),
            ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
            ("redis://default@redis:6379", "redis://default@redis:6379"),
            (
                "postgres://db/cf?user=app&password=s3cret&sslmode=require",
                "postgres://db/cf?user=app&password=***&sslmode=require",
            ),
            (
                "https://q.example/x?API_KEY=s3cret#top",
                "https://q.example/x?API_KEY=***#top",
            ),
            // An @ in the path is not user info.
            ("http://host/a@b", "http://host/a@b"),
            ("sqlite://data/callfleet.db", "sqlite://data/callfleet.db"),
            ("p@ss:word", "p@ss:word"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        let url = SecretUrl::new("postgres://app:s3cret@db/cf?sslpassword=s3cret");
        assert!(!format!("{url:?} {url}").contains("s3cret"));
        assert_eq!(
            url.expose(),
            "postgres://app:s3cret@db/cf?sslpassword=s3cret"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("cfk_abc");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "cfk_abc");
    }
}
