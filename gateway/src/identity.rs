//! This gateway's identity: its SVID chain and key, and the trust bundle it checks peers
//! against. Loaded once at start; the files are checked so that a wrong certificate is
//! reported at start, naming the config field, not at the first peer's handshake.

use std::path::Path;
use std::time::SystemTime;

use isthmus_ca::verify::{ExpectedIdentity, VerifyError};
use isthmus_ca::{SpiffeId, Svid, SvidFileError, SvidFiles, TrustBundle};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// Why the gateway's certificate files cannot be used.
pub type IdentityError = SvidFileError;

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
        let expected = ExpectedIdentity::GatewayOf(cluster.to_owned());
        Svid::new(bundle, chain, key, &expected, now).map(Self::from)
    }

    /// Loads the files named in `files`, relative to `base`, for a gateway of `cluster`.
    pub fn load(files: &TlsFiles, base: &Path, cluster: &str) -> Result<Self, IdentityError> {
        let (bundle, cert, key) = (
            base.join(&files.bundle),
            base.join(&files.cert),
            base.join(&files.key),
        );
        let files = SvidFiles {
            bundle: (&bundle, "tls.bundle"),
            cert: (&cert, "tls.cert"),
            key: (&key, "tls.key"),
        };
        let expected = ExpectedIdentity::GatewayOf(cluster.to_owned());
        Svid::load(files, &expected).map(Self::from)
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

impl From<Svid> for GatewayIdentity {
    fn from(svid: Svid) -> Self {
        Self {
            bundle: svid.bundle,
            chain: svid.chain,
            key: svid.key,
            id: svid.id,
        }
    }
}
