//! This gateway's identity: its SVID chain and key, and the trust bundle it checks peers
//! against. Loaded once at start; the files are checked so that a wrong certificate is
//! reported at start, naming the config field, not at the first peer's handshake.

use std::path::Path;
use std::time::SystemTime;

use isthmus_ca::verify::{ExpectedIdentity, PeerRole, VerifyError, verify_chain};
use isthmus_ca::{CertFacts, SpiffeId, TrustBundle};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// Why the gateway's certificate files cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: field `{field}`: {reason}")]
pub struct IdentityError {
    /// The file.
    pub file: String,
    /// The config field that names it.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// A gateway's certificate chain, key and trust bundle.
#[derive(Debug)]
pub struct GatewayIdentity {
    /// Roots that peers must chain to.
    pub bundle: TrustBundle,
    /// Leaf first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// The leaf's SPIFFE ID.
    pub id: SpiffeId,
}

impl GatewayIdentity {
    /// Checks that `chain` is a gateway SVID of `cluster` that verifies against `bundle`
    /// at `now`, for use both as a TLS server and as a client.
    pub fn new(
        bundle: TrustBundle,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        cluster: &str,
        now: SystemTime,
    ) -> Result<Self, VerifyError> {
        let (leaf, intermediates) = chain.split_first().ok_or(VerifyError::NoCertificate)?;
        let now = isthmus_ca::time::unix_seconds(now);
        let expected = ExpectedIdentity::GatewayOf(cluster.to_owned());
        let check = |role| verify_chain(&bundle, leaf, intermediates, now, role, &expected);
        check(PeerRole::Client)?;
        let id = check(PeerRole::Server)?.id;
        Ok(Self {
            bundle,
            chain,
            key,
            id,
        })
    }

    /// Loads the files named in `files`, relative to `base`, for a gateway of `cluster`.
    pub fn load(files: &TlsFiles, base: &Path, cluster: &str) -> Result<Self, IdentityError> {
        let path = |p: &Path| base.join(p);
        let fail = |field: &'static str, p: &Path, reason: String| IdentityError {
            file: path(p).display().to_string(),
            field,
            reason,
        };
        let read = |field: &'static str, p: &Path| {
            std::fs::read_to_string(path(p))
                .map_err(|e| fail(field, p, format!("cannot read: {e}")))
        };
        let chain = isthmus_ca::pem::certs_from_pem(&read("tls.cert", &files.cert)?)
            .map_err(|e| fail("tls.cert", &files.cert, e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(read("tls.key", &files.key)?.as_bytes())
            .map_err(|e| fail("tls.key", &files.key, format!("not a PEM private key: {e}")))?;
        let own_domain = chain
            .first()
            .and_then(|leaf| CertFacts::parse(leaf).ok())
            .and_then(|facts| facts.uris.first().cloned())
            .and_then(|uri| SpiffeId::parse(&uri).ok())
            .map(|id| id.trust_domain().clone())
            .ok_or_else(|| {
                fail(
                    "tls.cert",
                    &files.cert,
                    "the first certificate carries no SPIFFE ID".into(),
                )
            })?;
        let bundle = TrustBundle::from_pem(own_domain, &read("tls.bundle", &files.bundle)?)
            .map_err(|e| fail("tls.bundle", &files.bundle, e.to_string()))?;
        Self::new(bundle, chain, key, cluster, SystemTime::now()).map_err(|e| {
            let reason = format!("this gateway's own certificate is not usable: {e}");
            fail("tls.cert", &files.cert, reason)
        })
    }

    /// A stateless-reset key derived from the private key, so that a restarted gateway
    /// can reset its peers' stale connections at once instead of letting them time out.
    pub fn reset_key(&self) -> ring::hmac::Key {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            &[
                b"isthmus stateless reset v1".as_slice(),
                self.key.secret_der(),
            ]
            .concat(),
        );
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, digest.as_ref())
    }
}
