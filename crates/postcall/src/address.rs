//! The SSRF guard: where a webhook may be sent. Loopback, private, link-local (cloud metadata at
//! 169.254.169.254), shared, documentation, multicast and reserved addresses are refused, and so
//! are host names that only mean something inside a network (`localhost`, `redis`,
//! `metadata.google.internal`). Checked when an endpoint is registered and again at every send,
//! on the addresses DNS gave — and the connection goes to exactly those (see `transport`).
//!
//! A self-hosted user may allow private destinations explicitly: `CALLFLEET_WEBHOOK_ALLOW_PRIVATE`
//! is `all`, or a comma-separated list of CIDRs (`10.1.0.0/16,127.0.0.1/32`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The setting that allows private destinations.
pub const ALLOW_PRIVATE_ENV: &str = "CALLFLEET_WEBHOOK_ALLOW_PRIVATE";

/// Why a destination is refused, said to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// A block of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `::1/128`, or a bare address (a block of one).
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr {
            network: addr,
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Which destinations are allowed beyond the public internet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow_all_private: bool,
    allowed: Vec<Cidr>,
}

/// The setting could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ALLOW_PRIVATE_ENV}: {0:?} is neither `all` nor a list of CIDRs")]
pub struct BadPolicy(pub String);

impl AddressPolicy {
    /// Public destinations only: the default.
    pub fn public_only() -> AddressPolicy {
        AddressPolicy::default()
    }

    /// `""` (public only), `all`/`true`/`1`, or comma-separated CIDRs.
    pub fn parse(spec: &str) -> Result<AddressPolicy, BadPolicy> {
        let spec = spec.trim();
        match spec.to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "none" => return Ok(AddressPolicy::default()),
            "all" | "true" | "1" | "yes" => {
                return Ok(AddressPolicy {
                    allow_all_private: true,
                    allowed: Vec::new(),
                })
            }
            _ => {}
        }
        let allowed = spec
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| Cidr::parse(p).ok_or_else(|| BadPolicy(spec.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AddressPolicy {
            allow_all_private: false,
            allowed,
        })
    }

    /// The policy `CALLFLEET_WEBHOOK_ALLOW_PRIVATE` sets (public only when unset).
    pub fn from_env() -> Result<AddressPolicy, BadPolicy> {
        AddressPolicy::parse(&std::env::var(ALLOW_PRIVATE_ENV).unwrap_or_default())
    }

    fn allows_something_private(&self) -> bool {
        self.allow_all_private || !self.allowed.is_empty()
    }

    /// Whether a webhook may connect to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        let Some(kind) = non_public(ip) else {
            return Ok(());
        };
        if self.allow_all_private || self.allowed.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        Err(Refused(format!(
            "{ip} is a {kind} address; webhooks go to public addresses only (allow it with {ALLOW_PRIVATE_ENV})"
        )))
    }

    /// What can be decided from the URL alone: scheme, host, an address written as the host, a
    /// host name that means something only inside a network. Returns the host.
    pub fn check_url(&self, url: &str) -> Result<Target, Refused> {
        let parsed = reqwest::Url::parse(url).map_err(|e| Refused(format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Refused("must be an http:// or https:// URL".into()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Refused("must not carry a user name or password".into()));
        }
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| Refused("has no port".into()))?;
        match parsed.host() {
            None => Err(Refused("must name a host".into())),
            Some(url::Host::Ipv4(ip)) => {
                self.check_ip(IpAddr::V4(ip))?;
                Ok(Target::Address(IpAddr::V4(ip), port))
            }
            Some(url::Host::Ipv6(ip)) => {
                self.check_ip(IpAddr::V6(ip))?;
                Ok(Target::Address(IpAddr::V6(ip), port))
            }
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if let Some(why) = internal_name(&name) {
                    if !self.allows_something_private() {
                        return Err(Refused(format!(
                            "{name} is {why}; webhooks go to public hosts only (allow private destinations with {ALLOW_PRIVATE_ENV})"
                        )));
                    }
                }
                Ok(Target::Name(name, port))
            }
        }
    }
}

/// Where a URL points, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Address(IpAddr, u16),
    Name(String, u16),
}

/// Why a host name is internal, if it is.
fn internal_name(name: &str) -> Option<&'static str> {
    const SUFFIXES: &[&str] = &[
        ".localhost",
        ".local",
        ".internal",
        ".intranet",
        ".lan",
        ".home",
        ".corp",
        ".home.arpa",
        ".localdomain",
        ".svc",
        ".cluster.local",
    ];
    if name == "localhost" {
        Some("the local machine")
    } else if !name.contains('.') {
        Some("a name without a domain (an internal service name)")
    } else if SUFFIXES.iter().any(|s| name.ends_with(s)) {
        Some("an internal network name")
    } else {
        None
    }
}

/// The kind of non-public address `ip` is, if it is one.
fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4);
            }
            non_public_v6(v6)
        }
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const BLOCKS: &[(&str, &str)] = &[
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    ];
    BLOCKS.iter().find_map(|(block, kind)| {
        Cidr::parse(block)
            .expect("the table's blocks parse")
            .contains(IpAddr::V4(ip))
            .then_some(*kind)
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    const BLOCKS: &[(&str, &str)] = &[
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "NAT64"),
        ("100::/64", "discard"),
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    ];
    BLOCKS.iter().find_map(|(block, kind)| {
        Cidr::parse(block)
            .expect("the table's blocks parse")
            .contains(IpAddr::V6(ip))
            .then_some(*kind)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(policy: &AddressPolicy, url: &str, allowed: bool) {
        let got = policy.check_url(url);
        assert_eq!(got.is_ok(), allowed, "{url}: {got:?}");
    }

    #[test]
    fn the_default_refuses_everything_internal() {
        let p = AddressPolicy::public_only();
        for (url, ok) in [
            ("https://crm.example.com/hook", true),
            ("http://93.184.216.34:8080/x", true),
            ("https://[2606:2800:220:1:248:1893:25c8:1946]/", true),
            ("http://127.0.0.1:9000/hook", false),
            ("http://127.1.2.3/", false),
            ("http://[::1]/", false),
            ("http://[::ffff:127.0.0.1]/", false),
            ("http://[::ffff:169.254.169.254]/", false),
            ("http://169.254.169.254/latest/meta-data/", false),
            ("http://10.0.0.5/", false),
            ("http://172.20.1.1/", false),
            ("http://192.168.1.1/", false),
            ("http://100.64.0.1/", false),
            ("http://0.0.0.0/", false),
            ("http://[fd00::1]/", false),
            ("http://[fe80::1]/", false),
            ("http://localhost:8080/", false),
            ("http://api.localhost/", false),
            ("http://redis:6379/", false),
            ("http://postgres/", false),
            ("http://metadata.google.internal/computeMetadata/v1/", false),
            ("http://printer.local/", false),
            ("http://user:pw@crm.example.com/", false),
            ("ftp://crm.example.com/", false),
            ("not a url", false),
        ] {
            check(&p, url, ok);
        }
        let refused = p.check_url("http://169.254.169.254/").unwrap_err();
        assert!(refused.0.contains("link-local"), "{refused}");
    }

    #[test]
    fn the_allow_list_opens_what_it_names() {
        let loopback = AddressPolicy::parse("127.0.0.0/8, ::1").unwrap();
        check(&loopback, "http://127.0.0.1:9000/hook", true);
        check(&loopback, "http://[::1]:9000/hook", true);
        check(&loopback, "http://localhost:9000/", true);
        check(&loopback, "http://10.0.0.5/", false);
        check(&loopback, "http://169.254.169.254/", false);
        let all = AddressPolicy::parse("all").unwrap();
        check(&all, "http://10.0.0.5/", true);
        check(&all, "http://redis:6379/", true);
        assert_eq!(
            AddressPolicy::parse("").unwrap(),
            AddressPolicy::public_only()
        );
        assert!(AddressPolicy::parse("10.0.0.0/33").is_err());
        assert!(AddressPolicy::parse("intranet").is_err());
    }

    #[test]
    fn cidrs() {
        for (block, ip, inside) in [
            ("10.0.0.0/8", "10.255.0.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("fc00::/7", "fdff::1", true),
            ("fc00::/7", "::1", false),
            ("10.0.0.0/8", "::1", false),
        ] {
            let cidr = Cidr::parse(block).unwrap();
            assert_eq!(cidr.contains(ip.parse().unwrap()), inside, "{block} ∋ {ip}");
        }
    }
}
