//! Why a peer's certificate chain was refused: one variant per reason, each with the
//! context an operator needs, and a stable label for metrics.

use crate::spiffe::{SpiffeIdError, TrustDomain};
use crate::time::{Rfc3339, from_unix_seconds};

/// A refused chain. Every check fails closed with one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The peer presented no certificate.
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// A certificate could not be parsed.
    #[error("certificate #{position} of the chain is malformed: {detail}")]
    Malformed {
        /// 0 is the leaf.
        position: usize,
        /// The parser's message.
        detail: String,
    },
    /// The leaf is a CA certificate.
    #[error("the leaf {subject} is a CA certificate; an SVID must have CA:FALSE")]
    LeafIsCa {
        /// The leaf's subject.
        subject: String,
    },
    /// The leaf signs itself.
    #[error("the leaf {subject} is self-signed; it must chain to a root of the bundle")]
    SelfSignedLeaf {
        /// The leaf's subject.
        subject: String,
    },
    /// Not exactly one URI SAN.
    #[error("an SVID carries exactly one URI SAN; this leaf has {found}")]
    UriSanCount {
        /// How many URI SANs were found.
        found: usize,
    },
    /// The URI SAN is not a `spiffe://` URI.
    #[error("the URI SAN {uri:?} is not a SPIFFE ID")]
    NotSpiffe {
        /// The URI found.
        uri: String,
    },
    /// The SPIFFE ID is longer than 2048 bytes.
    #[error("the SPIFFE ID is {bytes} bytes long; the limit is 2048")]
    SpiffeIdTooLong {
        /// Its length.
        bytes: usize,
    },
    /// The SPIFFE ID is malformed or not one of the forms Isthmus issues.
    #[error("invalid SPIFFE ID {id:?}: {reason}")]
    InvalidSpiffeId {
        /// The ID found.
        id: String,
        /// What is wrong with it.
        reason: SpiffeIdError,
    },
    /// A certificate of the chain belongs to another trust domain.
    #[error("{found} is not the trust domain of this bundle ({expected})")]
    WrongTrustDomain {
        /// The bundle's trust domain.
        expected: TrustDomain,
        /// The one found.
        found: TrustDomain,
    },
    /// keyUsage or extKeyUsage does not allow this use.
    #[error("wrong key usage: {detail}")]
    WrongKeyUsage {
        /// What is missing or forbidden.
        detail: &'static str,
    },
    /// A certificate has expired.
    #[error("{subject} expired at {}", Rfc3339(from_unix_seconds(*.not_after)))]
    Expired {
        /// Its subject.
        subject: String,
        /// End of validity, Unix seconds.
        not_after: i64,
    },
    /// A certificate is not valid yet.
    #[error("{subject} is not valid before {}", Rfc3339(from_unix_seconds(*.not_before)))]
    NotYetValid {
        /// Its subject.
        subject: String,
        /// Start of validity, Unix seconds.
        not_before: i64,
    },
    /// The leaf's issuer is neither presented nor a root: the peer left out its intermediate.
    #[error(
        "the leaf's issuer {issuer} is neither in the presented chain nor a root of the bundle"
    )]
    MissingIntermediate {
        /// The issuer DN that was looked for.
        issuer: String,
    },
    /// The chain leads to a CA that is not a root of the bundle.
    #[error("the chain ends at {issuer}, which is not a root of the trust bundle")]
    UnknownRoot {
        /// The issuer DN that was looked for.
        issuer: String,
    },
    /// The chain leads to a root that was removed from the bundle.
    #[error(
        "the chain ends at root {subject} (sha256 {fingerprint}), which was removed from the trust bundle"
    )]
    RootRemoved {
        /// The retired root's subject.
        subject: String,
        /// Its SHA-256 fingerprint.
        fingerprint: String,
    },
    /// A signature does not verify.
    #[error("the signature of {subject} does not verify with its issuer's key")]
    BadSignature {
        /// The certificate whose signature failed.
        subject: String,
    },
    /// An issuer is not allowed to sign certificates.
    #[error("{subject} signs certificates but is not a CA with keyCertSign")]
    IssuerNotCa {
        /// The issuer's subject.
        subject: String,
    },
    /// A CA's pathLenConstraint is exceeded, or the chain is too long.
    #[error("the chain is too long for {subject}'s path length constraint")]
    PathTooLong {
        /// The CA whose constraint was exceeded.
        subject: String,
    },
    /// A name is outside a CA's name constraints.
    #[error("{name} is outside the name constraints of {issuer}")]
    NameConstraintViolation {
        /// The offending name.
        name: String,
        /// The constraining CA.
        issuer: String,
    },
    /// The leaf's ID is outside the path its issuing CA may sign.
    #[error("{id} is outside the identities its issuer may sign ({allowed})")]
    OutsideIssuerPath {
        /// The leaf's SPIFFE ID.
        id: String,
        /// What the issuer may sign.
        allowed: String,
    },
    /// A valid identity, but not the one this connection expects.
    #[error("the peer is {found}, expected {expected}")]
    UnexpectedIdentity {
        /// What was expected.
        expected: String,
        /// The peer's SPIFFE ID.
        found: String,
    },
    /// A critical extension Isthmus does not understand.
    #[error("{subject} has a critical extension {oid} that is not understood")]
    UnsupportedCriticalExtension {
        /// The certificate's subject.
        subject: String,
        /// The extension's OID.
        oid: String,
    },
}

impl VerifyError {
    /// A stable, low-cardinality label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoCertificate => "no_certificate",
            Self::Malformed { .. } => "malformed",
            Self::LeafIsCa { .. } => "leaf_is_ca",
            Self::SelfSignedLeaf { .. } => "self_signed_leaf",
            Self::UriSanCount { .. } => "uri_san_count",
            Self::NotSpiffe { .. } => "not_spiffe",
            Self::SpiffeIdTooLong { .. } => "spiffe_id_too_long",
            Self::InvalidSpiffeId { .. } => "invalid_spiffe_id",
            Self::WrongTrustDomain { .. } => "wrong_trust_domain",
            Self::WrongKeyUsage { .. } => "wrong_key_usage",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::MissingIntermediate { .. } => "missing_intermediate",
            Self::UnknownRoot { .. } => "unknown_root",
            Self::RootRemoved { .. } => "root_removed",
            Self::BadSignature { .. } => "bad_signature",
            Self::IssuerNotCa { .. } => "issuer_not_ca",
            Self::PathTooLong { .. } => "path_too_long",
            Self::NameConstraintViolation { .. } => "name_constraint_violation",
            Self::OutsideIssuerPath { .. } => "outside_issuer_path",
            Self::UnexpectedIdentity { .. } => "unexpected_identity",
            Self::UnsupportedCriticalExtension { .. } => "unsupported_critical_extension",
        }
    }
}
