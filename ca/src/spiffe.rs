//! SPIFFE IDs: syntax (the SPIFFE-ID spec) and the identity forms Isthmus issues.
//!
//! ```text
//! spiffe://TD/cluster/C/ns/NS/sa/SA   workload
//! spiffe://TD/cluster/C/gateway/NAME  gateway
//! spiffe://TD/federation/NODE         federation node
//! spiffe://TD                         signing certificates (roots, intermediates)
//! ```
//!
//! Parsing is pure and total: every input gets an `Ok` or a typed [`SpiffeIdError`].

use std::fmt;
use std::str::FromStr;

/// The SPIFFE spec's upper bound on a SPIFFE ID, in bytes.
pub const MAX_SPIFFE_ID_BYTES: usize = 2048;
/// The SPIFFE spec's upper bound on a trust domain name, in bytes.
pub const MAX_TRUST_DOMAIN_BYTES: usize = 255;

const SCHEME: &str = "spiffe://";

/// Why a string is not a SPIFFE ID Isthmus accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// Longer than [`MAX_SPIFFE_ID_BYTES`].
    #[error("SPIFFE ID is {0} bytes long; the limit is 2048")]
    TooLong(usize),
    /// Does not start with `spiffe://`.
    #[error("not a SPIFFE ID: it must start with spiffe://")]
    WrongScheme,
    /// The trust domain is empty, too long, or holds a character outside `[a-z0-9._-]`.
    #[error("invalid trust domain {0:?}: use 1 to 255 of a-z 0-9 . - _")]
    InvalidTrustDomain(String),
    /// A query, fragment, port or user info is present.
    #[error("a SPIFFE ID may not contain a query, fragment, port or user info")]
    ForbiddenPart,
    /// A path segment is empty, `.`/`..`, or holds a forbidden character.
    #[error("invalid path segment {0:?}: use a-z A-Z 0-9 . - _, not empty, not . or ..")]
    InvalidSegment(String),
    /// The path does not have one of the forms Isthmus issues.
    #[error(
        "unrecognised identity path {0:?}: expected cluster/C/ns/NS/sa/SA, cluster/C/gateway/NAME or federation/NODE"
    )]
    UnknownForm(String),
    /// A cluster, namespace, gateway or node name is not a DNS-1123 label.
    #[error(
        "invalid {what} {name:?}: use a DNS-1123 label (1-63 of a-z 0-9 -, starting and ending with a letter or digit)"
    )]
    InvalidName {
        /// Which name (cluster, namespace, gateway, node, service account).
        what: &'static str,
        /// The name found.
        name: String,
    },
}

/// A trust domain name, for example `mesh.example`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Validates a trust domain name.
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_TRUST_DOMAIN_BYTES
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(SpiffeIdError::InvalidTrustDomain(name.to_owned()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself (`spiffe://TD`), used by signing certificates.
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            text: format!("{SCHEME}{}", self.0),
            trust_domain: self.clone(),
            path_start: SCHEME.len() + self.0.len(),
        }
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A syntactically valid SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    text: String,
    trust_domain: TrustDomain,
    path_start: usize,
}

impl SpiffeId {
    /// Parses a SPIFFE ID per the SPIFFE-ID spec (lower-case trust domain, no query,
    /// fragment, port or user info, no empty, `.` or `..` segments, at most 2048 bytes).
    pub fn parse(text: &str) -> Result<Self, SpiffeIdError> {
        if text.len() > MAX_SPIFFE_ID_BYTES {
            return Err(SpiffeIdError::TooLong(text.len()));
        }
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or(SpiffeIdError::WrongScheme)?;
        if rest.contains(['?', '#', '@']) {
            return Err(SpiffeIdError::ForbiddenPart);
        }
        let (domain, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if domain.contains(':') {
            return Err(SpiffeIdError::ForbiddenPart);
        }
        let trust_domain = TrustDomain::new(domain)?;
        if !path.is_empty() {
            for segment in path[1..].split('/') {
                let valid = !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !valid {
                    return Err(SpiffeIdError::InvalidSegment(segment.to_owned()));
                }
            }
        }
        Ok(Self {
            text: text.to_owned(),
            trust_domain,
            path_start: SCHEME.len() + domain.len(),
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path, empty or starting with `/`.
    pub fn path(&self) -> &str {
        &self.text[self.path_start..]
    }

    /// The full ID as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Which Isthmus identity this ID names.
    pub fn identity(&self) -> Result<Identity, SpiffeIdError> {
        Identity::from_path(self.path())
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The identity forms Isthmus issues, taken from a SPIFFE ID's path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// `cluster/C/ns/NS/sa/SA`: a workload's service account.
    Workload {
        /// Cluster name.
        cluster: String,
        /// Namespace.
        namespace: String,
        /// Service account.
        service_account: String,
    },
    /// `cluster/C/gateway/NAME`: a gateway of cluster C.
    Gateway {
        /// Cluster name.
        cluster: String,
        /// Gateway name.
        name: String,
    },
    /// `federation/NODE`: a federation node.
    FederationNode {
        /// Node name.
        node: String,
    },
}

impl Identity {
    fn from_path(path: &str) -> Result<Self, SpiffeIdError> {
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let identity = match segments.as_slice() {
            ["cluster", cluster, "ns", namespace, "sa", sa] => Self::Workload {
                cluster: dns_label("cluster", cluster)?,
                namespace: dns_label("namespace", namespace)?,
                service_account: dns_subdomain("service account", sa)?,
            },
            ["cluster", cluster, "gateway", name] => Self::Gateway {
                cluster: dns_label("cluster", cluster)?,
                name: dns_label("gateway", name)?,
            },
            ["federation", node] => Self::FederationNode {
                node: dns_label("node", node)?,
            },
            _ => return Err(SpiffeIdError::UnknownForm(path.to_owned())),
        };
        Ok(identity)
    }

    /// The cluster this identity belongs to; `None` for federation nodes.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Self::Workload { cluster, .. } | Self::Gateway { cluster, .. } => Some(cluster),
            Self::FederationNode { .. } => None,
        }
    }

    /// The SPIFFE ID of this identity in `trust_domain`.
    pub fn to_spiffe_id(&self, trust_domain: &TrustDomain) -> SpiffeId {
        let path = match self {
            Self::Workload {
                cluster,
                namespace,
                service_account,
            } => format!("/cluster/{cluster}/ns/{namespace}/sa/{service_account}"),
            Self::Gateway { cluster, name } => format!("/cluster/{cluster}/gateway/{name}"),
            Self::FederationNode { node } => format!("/federation/{node}"),
        };
        SpiffeId {
            text: format!("{SCHEME}{trust_domain}{path}"),
            trust_domain: trust_domain.clone(),
            path_start: SCHEME.len() + trust_domain.as_str().len(),
        }
    }
}

/// Checks a DNS-1123 label: 1-63 of `a-z0-9-`, starting and ending alphanumeric.
pub fn dns_label(what: &'static str, name: &str) -> Result<String, SpiffeIdError> {
    let bytes = name.as_bytes();
    let valid = (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    if valid {
        Ok(name.to_owned())
    } else {
        Err(SpiffeIdError::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

/// Checks a DNS-1123 subdomain: dot-separated labels, at most 253 bytes.
fn dns_subdomain(what: &'static str, name: &str) -> Result<String, SpiffeIdError> {
    let valid = name.len() <= 253 && name.split('.').all(|label| dns_label(what, label).is_ok());
    if valid {
        Ok(name.to_owned())
    } else {
        Err(SpiffeIdError::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_identity_form() {
        let id = SpiffeId::parse("spiffe://mesh.example/cluster/east/ns/shop/sa/reviews").unwrap();
        assert_eq!(id.trust_domain().as_str(), "mesh.example");
        assert_eq!(id.path(), "/cluster/east/ns/shop/sa/reviews");
        assert_eq!(
            id.identity().unwrap(),
            Identity::Workload {
                cluster: "east".into(),
                namespace: "shop".into(),
                service_account: "reviews".into()
            }
        );
        let gw = SpiffeId::parse("spiffe://mesh.example/cluster/west/gateway/ew-1").unwrap();
        assert_eq!(gw.identity().unwrap().cluster(), Some("west"));
        let node = SpiffeId::parse("spiffe://mesh.example/federation/node-1").unwrap();
        assert_eq!(
            node.identity().unwrap(),
            Identity::FederationNode {
                node: "node-1".into()
            }
        );
    }

    #[test]
    fn identity_round_trips_through_spiffe_id() {
        let td = TrustDomain::new("td").unwrap();
        for text in [
            "spiffe://td/cluster/a/ns/b/sa/c.d",
            "spiffe://td/cluster/a/gateway/g",
            "spiffe://td/federation/n",
        ] {
            let id = SpiffeId::parse(text).unwrap();
            let again = id.identity().unwrap().to_spiffe_id(&td);
            assert_eq!(again, id);
            assert_eq!(again.path(), id.path());
        }
        assert_eq!(td.id().as_str(), "spiffe://td");
        assert_eq!(td.id().path(), "");
    }

    /// An input and a check of the error it must produce.
    type Case = (&'static str, fn(&SpiffeIdError) -> bool);

    #[test]
    fn refuses_bad_syntax_with_a_reason() {
        let cases: &[Case] = &[
            ("https://td/x", |e| matches!(e, SpiffeIdError::WrongScheme)),
            ("SPIFFE://td/x", |e| matches!(e, SpiffeIdError::WrongScheme)),
            ("spiffe://", |e| {
                matches!(e, SpiffeIdError::InvalidTrustDomain(_))
            }),
            ("spiffe://TD/x", |e| {
                matches!(e, SpiffeIdError::InvalidTrustDomain(_))
            }),
            ("spiffe://td:8080/x", |e| {
                matches!(e, SpiffeIdError::ForbiddenPart)
            }),
            ("spiffe://u@td/x", |e| {
                matches!(e, SpiffeIdError::ForbiddenPart)
            }),
            ("spiffe://td/x?y", |e| {
                matches!(e, SpiffeIdError::ForbiddenPart)
            }),
            ("spiffe://td/x#y", |e| {
                matches!(e, SpiffeIdError::ForbiddenPart)
            }),
            ("spiffe://td/", |e| {
                matches!(e, SpiffeIdError::InvalidSegment(_))
            }),
            ("spiffe://td/a//b", |e| {
                matches!(e, SpiffeIdError::InvalidSegment(_))
            }),
            ("spiffe://td/a/../b", |e| {
                matches!(e, SpiffeIdError::InvalidSegment(_))
            }),
            ("spiffe://td/a/./b", |e| {
                matches!(e, SpiffeIdError::InvalidSegment(_))
            }),
            ("spiffe://td/a%20b", |e| {
                matches!(e, SpiffeIdError::InvalidSegment(_))
            }),
        ];
        for (text, expected) in cases {
            let err = SpiffeId::parse(text).unwrap_err();
            assert!(expected(&err), "{text}: {err:?}");
        }
        let long = format!("spiffe://td/{}", "a".repeat(2040));
        assert_eq!(
            SpiffeId::parse(&long).unwrap_err(),
            SpiffeIdError::TooLong(long.len())
        );
        let at_limit = format!("spiffe://td/{}", "a".repeat(2048 - 12));
        assert!(SpiffeId::parse(&at_limit).is_ok());
    }

    #[test]
    fn refuses_unknown_forms_and_bad_names() {
        for text in [
            "spiffe://td",
            "spiffe://td/cluster/a",
            "spiffe://td/cluster/a/ns/b",
            "spiffe://td/cluster/a/gateway/g/extra",
            "spiffe://td/federation",
            "spiffe://td/ns/b/sa/c",
        ] {
            let err = SpiffeId::parse(text).unwrap().identity().unwrap_err();
            assert!(
                matches!(err, SpiffeIdError::UnknownForm(_)),
                "{text}: {err:?}"
            );
        }
        for text in [
            "spiffe://td/cluster/East/gateway/g",
            "spiffe://td/cluster/-a/gateway/g",
            "spiffe://td/cluster/a/ns/b_c/sa/d",
            "spiffe://td/federation/n.1",
        ] {
            let err = SpiffeId::parse(text).unwrap().identity().unwrap_err();
            assert!(
                matches!(err, SpiffeIdError::InvalidName { .. }),
                "{text}: {err:?}"
            );
        }
        let long_label = format!("spiffe://td/cluster/{}/gateway/g", "a".repeat(64));
        assert!(SpiffeId::parse(&long_label).unwrap().identity().is_err());
    }
}
