//! Traffic claims: a host name (an ingress host, an egress entry) belongs to one
//! namespace federation-wide. A claim is `host → namespace`; a claim that overlaps
//! another namespace's (the same name, or a wildcard covering it, either way) is refused,
//! and the first claimant keeps the host. Names in the clusterset zone are not claimed:
//! `<svc>.<ns>.svc.clusterset.local` belongs to `<ns>` by construction.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// A host claimed by a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// A DNS name, or `*.example.com` (one label under it).
    #[schemars(schema_with = "crate::schema::host_pattern")]
    pub host: String,
    /// The namespace that owns it.
    #[schemars(schema_with = "crate::schema::label")]
    pub namespace: String,
    /// Revision of the last change.
    #[serde(default)]
    pub revision: u64,
}

/// Why a text is not a host pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a DNS name of two or more labels (a-z 0-9 -), optionally starting with `*.`")]
pub struct NotAHostPattern(pub String);

/// A host pattern: an exact DNS name, or `*.suffix` for any one label before `suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `shop.example.com`.
    Exact(String),
    /// `*.example.com`, kept as `.example.com`.
    Wildcard(String),
}

impl HostPattern {
    /// Parses a host name or `*.`-wildcard (lower-cased).
    pub fn parse(text: &str) -> Result<Self, NotAHostPattern> {
        let lower = text.to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let labels: Vec<&str> = name.split('.').collect();
        if labels.len() < 2
            || name.len() > 253
            || labels
                .iter()
                .any(|l| isthmus_ca::spiffe::dns_label("host", l).is_err())
        {
            return Err(NotAHostPattern(text.to_owned()));
        }
        Ok(if wild {
            Self::Wildcard(format!(".{name}"))
        } else {
            Self::Exact(name.to_owned())
        })
    }

    /// Whether `host` (lower case, no port) matches: a wildcard matches exactly one
    /// more label.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => name == host,
            Self::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }

    /// Whether the two patterns can match a common host.
    pub fn overlaps(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Wildcard(a), Self::Wildcard(b)) => a == b,
            (Self::Wildcard(_), Self::Exact(e)) => self.matches(e),
            (Self::Exact(e), Self::Wildcard(_)) => other.matches(e),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// Checks a claim's fields.
pub fn check(claim: &Claim) -> Result<HostPattern, ApiError> {
    let pattern =
        HostPattern::parse(&claim.host).map_err(|e| ApiError::invalid("host", e.to_string()))?;
    if pattern.to_string() != claim.host {
        return Err(ApiError::invalid(
            "host",
            format!("write it in lower case: {pattern}"),
        ));
    }
    if pattern.to_string().ends_with(".svc.clusterset.local") {
        return Err(ApiError::invalid(
            "host",
            "names in svc.clusterset.local belong to the namespace that exports them; claim only names outside the mesh",
        ));
    }
    crate::validate::name("namespace", &claim.namespace)?;
    Ok(pattern)
}

/// The claim of another namespace that `claim` would overlap, if any (pure).
pub fn conflict<'a>(
    claims: impl IntoIterator<Item = &'a Claim>,
    claim: &Claim,
) -> Option<&'a Claim> {
    let pattern = HostPattern::parse(&claim.host).ok()?;
    claims.into_iter().find(|other| {
        other.namespace != claim.namespace
            && HostPattern::parse(&other.host).is_ok_and(|p| p.overlaps(&pattern))
    })
}

/// Whether `namespace` holds a claim covering every name `pattern` matches.
pub fn covered<'a>(
    claims: impl IntoIterator<Item = &'a Claim>,
    pattern: &HostPattern,
    namespace: &str,
) -> bool {
    claims.into_iter().any(|c| {
        c.namespace == namespace
            && HostPattern::parse(&c.host).is_ok_and(|p| match (&p, pattern) {
                (a, b) if a == b => true,
                (HostPattern::Wildcard(_), HostPattern::Exact(name)) => p.matches(name),
                _ => false,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(host: &str, ns: &str) -> Claim {
        Claim {
            host: host.into(),
            namespace: ns.into(),
            revision: 0,
        }
    }

    #[test]
    fn a_second_namespace_cannot_claim_an_overlapping_host() {
        let held = [
            claim("*.shop.example", "shop"),
            claim("pay.example", "payments"),
        ];
        let on = |c: Claim| conflict(&held, &c).map(|o| o.namespace.clone());
        assert_eq!(on(claim("api.shop.example", "bank")), Some("shop".into()));
        assert_eq!(on(claim("*.shop.example", "bank")), Some("shop".into()));
        assert_eq!(on(claim("pay.example", "shop")), Some("payments".into()));
        assert_eq!(
            on(claim("api.shop.example", "shop")),
            None,
            "its own namespace"
        );
        assert_eq!(
            on(claim("a.b.shop.example", "bank")),
            None,
            "a wildcard is one label"
        );
        assert_eq!(on(claim("bank.example", "bank")), None);
    }

    #[test]
    fn claims_are_checked_and_cover_what_they_name() {
        assert!(check(&claim("Shop.example", "shop")).is_err(), "lower case");
        assert!(check(&claim("api.demo.svc.clusterset.local", "demo")).is_err());
        assert!(check(&claim("shop.example", "Shop")).is_err());
        assert!(check(&claim("*.shop.example", "shop")).is_ok());
        let held = [claim("*.shop.example", "shop")];
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert!(covered(&held, &p("api.shop.example"), "shop"));
        assert!(covered(&held, &p("*.shop.example"), "shop"));
        assert!(!covered(&held, &p("api.shop.example"), "bank"));
        assert!(!covered(&held, &p("shop.example"), "shop"));
    }
}
