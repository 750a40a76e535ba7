//! Loading a process's own SVID from files (chain, key, trust bundle) and checking it
//! once at start, so that a wrong certificate is reported naming the config field, not
//! at the first peer's handshake. Gateways and federation nodes both use it.

use std::path::Path;
use std::time::SystemTime;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::verify::{ExpectedIdentity, PeerRole, VerifyError, verify_chain};
use crate::{CertFacts, SpiffeId, TrustBundle};

/// The three files of an SVID, each with the config field that names it.
#[derive(Debug, Clone, Copy)]
pub struct SvidFiles<'a> {
    /// The roots (PEM) and its field, for example `tls.bundle`.
    pub bundle: (&'a Path, &'static str),
    /// Leaf then intermediates (PEM) and its field.
    pub cert: (&'a Path, &'static str),
    /// The leaf's private key (PKCS#8 PEM) and its field.
    pub key: (&'a Path, &'static str),
}

/// Why an SVID's files cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: field `{field}`: {reason}")]
pub struct SvidFileError {
    /// The file.
    pub file: String,
    /// The config field that names it.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// A process's own certificate chain, key and trust bundle, checked.
#[derive(Debug)]
pub struct Svid {
    /// Roots that peers must chain to.
    pub bundle: TrustBundle,
    /// Leaf first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// The leaf's SPIFFE ID.
    pub id: SpiffeId,
}

impl Svid {
    /// Checks that `chain` matches `expected` and verifies against `bundle` at `now`, for
    /// use both as a TLS server and as a client.
    pub fn new(
        bundle: TrustBundle,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        expected: &ExpectedIdentity,
        now: SystemTime,
    ) -> Result<Self, VerifyError> {
        let (leaf, intermediates) = chain.split_first().ok_or(VerifyError::NoCertificate)?;
        let now = crate::time::unix_seconds(now);
        let check = |role| verify_chain(&bundle, leaf, intermediates, now, role, expected);
        check(PeerRole::Client)?;
        let id = check(PeerRole::Server)?.id;
        Ok(Self {
            bundle,
            chain,
            key,
            id,
        })
    }

    /// Loads `files` and checks them against `expected` now.
    pub fn load(files: SvidFiles<'_>, expected: &ExpectedIdentity) -> Result<Self, SvidFileError> {
        let fail = |(path, field): (&Path, &'static str), reason: String| SvidFileError {
            file: path.display().to_string(),
            field,
            reason,
        };
        let read = |file: (&Path, &'static str)| {
            std::fs::read_to_string(file.0).map_err(|e| fail(file, format!("cannot read: {e}")))
        };
        let chain = crate::pem::certs_from_pem(&read(files.cert)?)
            .map_err(|e| fail(files.cert, e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(read(files.key)?.as_bytes())
            .map_err(|e| fail(files.key, format!("not a PEM private key: {e}")))?;
        let own_domain = chain
            .first()
            .and_then(|leaf| CertFacts::parse(leaf).ok())
            .and_then(|facts| facts.uris.first().cloned())
            .and_then(|uri| SpiffeId::parse(&uri).ok())
            .map(|id| id.trust_domain().clone())
            .ok_or_else(|| {
                fail(
                    files.cert,
                    "the first certificate carries no SPIFFE ID".into(),
                )
            })?;
        let bundle = TrustBundle::from_pem(own_domain, &read(files.bundle)?)
            .map_err(|e| fail(files.bundle, e.to_string()))?;
        Self::new(bundle, chain, key, expected, SystemTime::now()).map_err(|e| {
            fail(
                files.cert,
                format!("this process's own certificate is not usable: {e}"),
            )
        })
    }
}
