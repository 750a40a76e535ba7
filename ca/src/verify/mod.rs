//! Verifying a peer's X.509-SVID chain against a trust bundle, at a given `now`.
//!
//! ```text
//! leaf checks ─▶ SPIFFE ID checks ─▶ key usage ─▶ validity ─▶ build chain to a root
//!   (CA? self-signed?  (one URI SAN, spiffe,    (digitalSignature,   (issuer by name + signature,
//!    critical exts)     ≤2048 B, syntax, TD,     no keyCertSign,      CA + keyCertSign, validity,
//!                       known form)              EKU for the role)    path length, retired roots)
//!          ─▶ name constraints ─▶ issuer path (cluster intermediate ⇒ its cluster;
//!                                              root ⇒ federation nodes) ─▶ expected identity
//! ```
//!
//! Pure: no clock, no IO. rustls glue lives in [`tls`]. Each refusal is a
//! [`VerifyError`] variant, checked in the order above, so a chain with several faults
//! is refused for the first.

mod error;
mod expected;
pub mod tls;

pub use error::VerifyError;
pub use expected::ExpectedIdentity;

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::X509Certificate;

use crate::authority::parse_x509;
use crate::bundle::TrustBundle;
use crate::cert::{CaRole, CertFacts, Constraints};
use crate::spiffe::{Identity, MAX_SPIFFE_ID_BYTES, SpiffeId};

/// The longest chain accepted, leaf and root included.
pub const MAX_CHAIN_LEN: usize = 5;

/// Which side of a handshake the peer is; decides the extKeyUsage it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// The peer is a TLS server (needs serverAuth).
    Server,
    /// The peer is a TLS client (needs clientAuth).
    Client,
}

/// A peer whose chain verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPeer {
    /// The leaf's SPIFFE ID.
    pub id: SpiffeId,
    /// Its identity form.
    pub identity: Identity,
    /// End of the leaf's validity, Unix seconds.
    pub not_after: i64,
    /// SHA-256 fingerprint of the root the chain ends in.
    pub root_fingerprint: String,
}

struct Link<'a> {
    x509: X509Certificate<'a>,
    facts: CertFacts,
}

/// Verifies `leaf` with the `presented` intermediates (any order) against `bundle`.
pub fn verify_chain(
    bundle: &TrustBundle,
    leaf: &CertificateDer<'_>,
    presented: &[CertificateDer<'_>],
    now: i64,
    role: PeerRole,
    expected: &ExpectedIdentity,
) -> Result<VerifiedPeer, VerifyError> {
    let leaf = parse_link(leaf, 0)?;
    let (id, identity) = check_leaf(bundle, &leaf.facts, role)?;
    check_validity(&leaf.facts, now)?;

    if presented.len() > MAX_CHAIN_LEN - 1 {
        return Err(VerifyError::PathTooLong {
            subject: format!("the presented chain ({} certificates)", presented.len() + 1),
        });
    }
    let presented = presented
        .iter()
        .enumerate()
        .map(|(i, der)| parse_link(der, i + 1))
        .collect::<Result<Vec<_>, _>>()?;
    let (intermediates, root) = build_chain(bundle, &leaf, &presented, now)?;

    // Constraints of each CA apply to every certificate below it.
    let mut below: Vec<&CertFacts> = vec![&leaf.facts];
    for ca in intermediates.iter().map(|l| &l.facts).chain([&root.facts]) {
        if let Some(constraints) = &ca.constraints {
            for cert in &below {
                check_constraints(constraints, cert, &ca.subject)?;
            }
        }
        below.push(ca);
    }
    for ca in &intermediates {
        match ca.facts.signing_trust_domain() {
            Ok(Some(domain)) if domain != *bundle.trust_domain() => {
                return Err(VerifyError::WrongTrustDomain {
                    expected: bundle.trust_domain().clone(),
                    found: domain,
                });
            }
            Ok(_) => {}
            Err(e) => {
                return Err(VerifyError::Malformed {
                    position: 1,
                    detail: e.to_string(),
                });
            }
        }
    }

    // A cluster intermediate signs leaves only: one found higher up would let its key
    // holder mint a sub-CA outside the cluster, whatever its pathLen says.
    if intermediates
        .iter()
        .skip(1)
        .any(|ca| matches!(ca.facts.ca_role(), CaRole::Cluster(_)))
    {
        return Err(VerifyError::OutsideIssuerPath {
            id: id.to_string(),
            allowed: "a cluster intermediate may only sign leaves, not other CAs".into(),
        });
    }
    let issuer = intermediates.first().map_or(&root.facts, |l| &l.facts);
    check_issuer_path(issuer, intermediates.is_empty(), &id, &identity)?;

    if !expected.matches(&id, &identity) {
        return Err(VerifyError::UnexpectedIdentity {
            expected: expected.to_string(),
            found: id.to_string(),
        });
    }
    Ok(VerifiedPeer {
        id,
        identity,
        not_after: leaf.facts.not_after,
        root_fingerprint: root.facts.fingerprint.clone(),
    })
}

fn parse_link<'a>(der: &'a CertificateDer<'_>, position: usize) -> Result<Link<'a>, VerifyError> {
    let malformed = |e: crate::cert::CertParseError| VerifyError::Malformed {
        position,
        detail: e.to_string(),
    };
    let x509 = parse_x509(der).map_err(malformed)?;
    let facts = CertFacts::from_x509(&x509, der).map_err(malformed)?;
    if let Some(oid) = facts.unknown_critical.first() {
        return Err(VerifyError::UnsupportedCriticalExtension {
            subject: facts.subject.clone(),
            oid: oid.clone(),
        });
    }
    Ok(Link { x509, facts })
}

fn check_leaf(
    bundle: &TrustBundle,
    leaf: &CertFacts,
    role: PeerRole,
) -> Result<(SpiffeId, Identity), VerifyError> {
    if leaf.is_ca {
        return Err(VerifyError::LeafIsCa {
            subject: leaf.subject.clone(),
        });
    }
    if leaf.self_signed {
        return Err(VerifyError::SelfSignedLeaf {
            subject: leaf.subject.clone(),
        });
    }
    let [uri] = leaf.uris.as_slice() else {
        return Err(VerifyError::UriSanCount {
            found: leaf.uris.len(),
        });
    };
    if !uri.starts_with("spiffe://") {
        return Err(VerifyError::NotSpiffe { uri: uri.clone() });
    }
    if uri.len() > MAX_SPIFFE_ID_BYTES {
        return Err(VerifyError::SpiffeIdTooLong { bytes: uri.len() });
    }
    let invalid = |reason| VerifyError::InvalidSpiffeId {
        id: uri.clone(),
        reason,
    };
    let id = SpiffeId::parse(uri).map_err(invalid)?;
    if id.trust_domain() != bundle.trust_domain() {
        return Err(VerifyError::WrongTrustDomain {
            expected: bundle.trust_domain().clone(),
            found: id.trust_domain().clone(),
        });
    }
    let identity = id.identity().map_err(invalid)?;

    let usage = |detail| Err(VerifyError::WrongKeyUsage { detail });
    if !leaf.key_usage_present || !leaf.digital_signature {
        return usage("an SVID needs keyUsage digitalSignature");
    }
    if !leaf.key_usage_critical {
        return usage("an SVID's keyUsage must be critical");
    }
    if leaf.key_cert_sign || leaf.crl_sign {
        return usage("an SVID may not have keyCertSign or cRLSign");
    }
    if let Some(eku) = leaf.eku {
        match role {
            PeerRole::Server if !eku.server_auth && !eku.any => {
                return usage("extKeyUsage lacks serverAuth, needed by a TLS server");
            }
            PeerRole::Client if !eku.client_auth && !eku.any => {
                return usage("extKeyUsage lacks clientAuth, needed by a TLS client");
            }
            _ => {}
        }
    }
    Ok((id, identity))
}

fn check_validity(facts: &CertFacts, now: i64) -> Result<(), VerifyError> {
    if now < facts.not_before {
        return Err(VerifyError::NotYetValid {
            subject: facts.subject.clone(),
            not_before: facts.not_before,
        });
    }
    if now > facts.not_after {
        return Err(VerifyError::Expired {
            subject: facts.subject.clone(),
            not_after: facts.not_after,
        });
    }
    Ok(())
}

/// Walks from the leaf up to a root of the bundle; returns the intermediates (nearest
/// first) and the root.
fn build_chain<'a>(
    bundle: &'a TrustBundle,
    leaf: &'a Link<'a>,
    presented: &'a [Link<'a>],
    now: i64,
) -> Result<(Vec<&'a Link<'a>>, Link<'a>), VerifyError> {
    let mut intermediates: Vec<&Link<'_>> = Vec::new();
    let mut current = leaf;
    loop {
        let (roots, root_named) = find_roots(bundle.roots(), current)?;
        // Of several roots that signed (a renewed root with the same key), the first
        // that is usable now wins; if none is, the first one's fault is reported.
        let mut first_fault = None;
        for root in roots {
            match check_ca(&root.facts, now, intermediates.len()) {
                Ok(()) => return Ok((intermediates, root)),
                Err(fault) => {
                    first_fault.get_or_insert(fault);
                }
            }
        }
        if let Some(fault) = first_fault {
            return Err(fault);
        }
        if let Some(retired) = find_roots(bundle.retired(), current)?.0.into_iter().next() {
            return Err(VerifyError::RootRemoved {
                subject: retired.facts.subject.clone(),
                fingerprint: retired.facts.fingerprint.clone(),
            });
        }
        let mut named = root_named;
        let issuer = presented.iter().find(|l| {
            let fits = l.facts.subject_raw == current.facts.issuer_raw
                && !std::ptr::eq(*l, current)
                && !intermediates.iter().any(|used| std::ptr::eq(*used, *l));
            named |= fits;
            fits && signed_by(&current.x509, &l.x509)
        });
        let Some(issuer) = issuer else {
            let issuer = current.facts.issuer.clone();
            return Err(if named {
                VerifyError::BadSignature {
                    subject: current.facts.subject.clone(),
                }
            } else if std::ptr::eq(current, leaf) {
                VerifyError::MissingIntermediate { issuer }
            } else {
                VerifyError::UnknownRoot { issuer }
            });
        };
        if issuer.facts.self_signed {
            // A presented root that the bundle does not hold.
            return Err(VerifyError::UnknownRoot {
                issuer: issuer.facts.subject.clone(),
            });
        }
        check_ca(&issuer.facts, now, intermediates.len())?;
        intermediates.push(issuer);
        if intermediates.len() + 2 > MAX_CHAIN_LEN {
            return Err(VerifyError::PathTooLong {
                subject: issuer.facts.subject.clone(),
            });
        }
        current = issuer;
    }
}

/// The roots in `roots` that issued `child`, checked by name and signature; also says
/// whether any root carried the issuer's name (a name match whose key did not sign is a
/// bad signature unless another candidate did).
fn find_roots<'r>(
    roots: &'r [crate::bundle::Root],
    child: &Link<'_>,
) -> Result<(Vec<Link<'r>>, bool), VerifyError> {
    let mut named = false;
    let mut found = Vec::new();
    for root in roots
        .iter()
        .filter(|r| r.facts.subject_raw == child.facts.issuer_raw)
    {
        named = true;
        let x509 = parse_x509(&root.der).map_err(|e| VerifyError::Malformed {
            position: usize::MAX,
            detail: e.to_string(),
        })?;
        if signed_by(&child.x509, &x509) {
            found.push(Link {
                x509,
                facts: root.facts.clone(),
            });
        }
    }
    Ok((found, named))
}

/// Signature algorithms accepted on certificates: SHA-1 and anything exotic are not.
const SIGNATURE_ALGORITHMS: [&str; 6] = [
    "1.2.840.10045.4.3.2",   // ecdsa-with-SHA256
    "1.2.840.10045.4.3.3",   // ecdsa-with-SHA384
    "1.3.101.112",           // Ed25519
    "1.2.840.113549.1.1.11", // sha256WithRSAEncryption (imported operator roots)
    "1.2.840.113549.1.1.12", // sha384WithRSAEncryption
    "1.2.840.113549.1.1.13", // sha512WithRSAEncryption
];

/// Whether `issuer`'s key signed `child`. The outer signature algorithm is not covered
/// by the signature, so it must equal the signed one and be on the allow-list.
fn signed_by(child: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    let outer = &child.signature_algorithm.algorithm;
    let inner = &child.tbs_certificate.signature.algorithm;
    outer == inner
        && SIGNATURE_ALGORITHMS.contains(&outer.to_id_string().as_str())
        && child.verify_signature(Some(issuer.public_key())).is_ok()
}

/// An issuer must be a CA allowed to sign, valid now, and allow `below` intermediates
/// under it.
fn check_ca(ca: &CertFacts, now: i64, below: usize) -> Result<(), VerifyError> {
    if !ca.is_ca || !ca.key_cert_sign {
        return Err(VerifyError::IssuerNotCa {
            subject: ca.subject.clone(),
        });
    }
    check_validity(ca, now)?;
    if ca.path_len.is_some_and(|max| below > max as usize) {
        return Err(VerifyError::PathTooLong {
            subject: ca.subject.clone(),
        });
    }
    Ok(())
}

fn check_constraints(
    constraints: &Constraints,
    cert: &CertFacts,
    issuer: &str,
) -> Result<(), VerifyError> {
    let violation = |name: &str| VerifyError::NameConstraintViolation {
        name: name.to_owned(),
        issuer: issuer.to_owned(),
    };
    for uri in &cert.uris {
        let host = uri_host(uri).ok_or_else(|| violation(uri))?;
        let (permitted, excluded) = (
            constraints.permitted_uri.as_deref(),
            &constraints.excluded_uri,
        );
        if !allowed(host, permitted, excluded, uri_host_matches) {
            return Err(violation(uri));
        }
    }
    for dns in &cert.dns_names {
        let (permitted, excluded) = (
            constraints.permitted_dns.as_deref(),
            &constraints.excluded_dns,
        );
        if !allowed(dns, permitted, excluded, dns_matches) {
            return Err(violation(dns));
        }
    }
    if constraints.unchecked_forms {
        // Constraints on forms Isthmus does not evaluate (directory names, e-mail, IP)
        // fail closed for everything below, subjects included.
        return Err(violation(&cert.subject));
    }
    Ok(())
}

fn allowed(
    name: &str,
    permitted: Option<&[String]>,
    excluded: &[String],
    matches: fn(&str, &str) -> bool,
) -> bool {
    let within = |base: &String| matches(name, base);
    permitted.is_none_or(|p| p.iter().any(within)) && !excluded.iter().any(within)
}

/// RFC 5280 §4.2.1.10 for URIs: `base` names one host, or with a leading `.` any
/// host below that domain.
fn uri_host_matches(host: &str, base: &str) -> bool {
    let (host, base) = (normalize(host), normalize(base));
    if base.starts_with('.') {
        host.ends_with(&base)
    } else {
        host == base
    }
}

/// RFC 5280 §4.2.1.10 for DNS names: `base` and any name with labels added on its left.
fn dns_matches(name: &str, base: &str) -> bool {
    let (name, base) = (normalize(name), normalize(base));
    let base = base.trim_start_matches('.');
    base.is_empty() || name == base || name.ends_with(&format!(".{base}"))
}

/// Lower case, without the root's trailing dot, so `a.example.` cannot dodge `example`.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn uri_host(uri: &str) -> Option<&str> {
    let rest = &uri[uri.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return None; // user info could hide the real host from a naive reader
    }
    let host = &authority[..authority.find(':').unwrap_or(authority.len())];
    (!host.is_empty()).then_some(host)
}

/// The leaf's ID must sit under what its direct issuer may sign: a cluster intermediate
/// signs `cluster/<its cluster>/…`; a root (or any CA that is not a cluster
/// intermediate) signs federation nodes only.
fn check_issuer_path(
    issuer: &CertFacts,
    issued_by_root: bool,
    id: &SpiffeId,
    identity: &Identity,
) -> Result<(), VerifyError> {
    let (fits, allowed) = match issuer.ca_role() {
        CaRole::Cluster(cluster) => (
            identity.cluster() == Some(cluster.as_str()),
            format!("spiffe://{}/cluster/{cluster}/…", id.trust_domain()),
        ),
        CaRole::Root => (
            matches!(identity, Identity::FederationNode { .. }),
            format!(
                "federation nodes only, as {}",
                if issued_by_root {
                    "a root"
                } else {
                    "a non-cluster intermediate"
                }
            ),
        ),
    };
    if fits {
        Ok(())
    } else {
        Err(VerifyError::OutsideIssuerPath {
            id: id.to_string(),
            allowed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_matching_follows_rfc5280() {
        assert!(uri_host_matches("mesh.example", "mesh.example"));
        assert!(uri_host_matches("MESH.example", "mesh.EXAMPLE"));
        assert!(!uri_host_matches("evil.mesh.example", "mesh.example"));
        assert!(uri_host_matches("a.mesh.example", ".mesh.example"));
        assert!(!uri_host_matches("mesh.example", ".mesh.example"));
        assert!(!uri_host_matches("xmesh.example", "mesh.example"));
        assert!(dns_matches("gw.mesh.example", "mesh.example"));
        assert!(dns_matches("mesh.example", "mesh.example"));
        assert!(!dns_matches("xmesh.example", "mesh.example"));
    }

    #[test]
    fn uri_host_stops_at_path_and_port() {
        assert_eq!(uri_host("spiffe://td/cluster/a"), Some("td"));
        assert_eq!(uri_host("spiffe://td"), Some("td"));
        assert_eq!(uri_host("https://h:443/x"), Some("h"));
        assert_eq!(uri_host("spiffe:///x"), None);
        assert_eq!(uri_host("urn:x"), None);
        assert_eq!(uri_host("https://mesh.example:x@evil.com/"), None);
        assert!(dns_matches("x.evil.com.", "evil.com"));
        assert!(dns_matches("anything.example", ""));
    }
}
