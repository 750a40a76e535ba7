//! Errors of issuing and loading certificates (verification has its own, in `verify`).

use std::time::SystemTime;

use crate::spiffe::SpiffeIdError;
use crate::time::Rfc3339;

/// Why the CA could not issue, sign or load something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A cryptographic operation in rcgen failed.
    #[error("{action}: {source}")]
    Crypto {
        /// What was being done.
        action: &'static str,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// A private key could not be used.
    #[error("bad private key: {0}")]
    BadKey(String),
    /// A certificate could not be parsed or is not what it was taken for.
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    /// A certificate signing request could not be used.
    #[error("bad certificate signing request: {0}")]
    BadCsr(String),
    /// A SPIFFE ID or name is invalid.
    #[error(transparent)]
    Identity(#[from] SpiffeIdError),
    /// The requested identity is not one this issuer may sign.
    #[error("{id} cannot be issued by {issuer}: {why}")]
    OutsideIssuer {
        /// The requested SPIFFE ID.
        id: String,
        /// Which CA was asked.
        issuer: String,
        /// Why the two do not fit.
        why: String,
    },
    /// The requested lifetime ends after the issuer's.
    #[error(
        "the requested lifetime ends at {} but the issuing CA expires at {}; ask for a shorter lifetime or renew the CA first",
        Rfc3339(*.requested_end), Rfc3339(*.issuer_end)
    )]
    OutlivesIssuer {
        /// Requested end of validity.
        requested_end: SystemTime,
        /// The issuer's end of validity.
        issuer_end: SystemTime,
    },
    /// A lifetime is zero or does not fit in a timestamp.
    #[error("invalid lifetime: {0}")]
    BadLifetime(String),
    /// A DNS name for a gateway certificate is invalid.
    #[error("invalid DNS name {0:?} for a subject alternative name")]
    BadDnsName(String),
}
