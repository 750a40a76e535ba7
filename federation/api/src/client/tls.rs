//! What a client presents and trusts: a rustls config that verifies federation nodes
//! with the SPIFFE verifier and presents a certificate (fixed, or live for a gateway
//! whose leaf rotates), or none (bearer-token callers).

use std::path::Path;
use std::sync::Arc;

use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::verify::tls::{
    SpiffeVerifier, client_config, client_config_without_cert, provider,
};
use isthmus_ca::{SharedBundle, Svid, SvidFileError, SvidFiles, TrustBundle};

/// Why a client's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientTlsError {
    /// The certificate files are unusable.
    #[error(transparent)]
    Files(#[from] SvidFileError),
    /// The bundle file is unusable.
    #[error("{file}: {reason}")]
    Bundle {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration (a key it cannot use, for example).
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS side of a [`super::FederationClient`].
#[derive(Debug, Clone)]
pub struct ClientTls(pub(crate) Arc<rustls::ClientConfig>);

fn verifier(bundle: SharedBundle) -> Arc<SpiffeVerifier> {
    SpiffeVerifier::new(bundle, ExpectedIdentity::AnyFederationNode)
}

impl ClientTls {
    /// Presents `svid`'s certificate; trusts federation nodes that chain to its bundle.
    pub fn from_svid(svid: Svid) -> Result<Self, ClientTlsError> {
        let config = client_config(
            verifier(SharedBundle::new(svid.bundle)),
            svid.chain,
            svid.key,
            &[b"h2"],
        )?;
        Ok(Self(Arc::new(config)))
    }

    /// [`Self::from_svid`] from PEM files (`fields` name them in errors, for example
    /// `--bundle`).
    pub fn from_files(
        bundle: (&Path, &'static str),
        cert: (&Path, &'static str),
        key: (&Path, &'static str),
    ) -> Result<Self, ClientTlsError> {
        let svid = Svid::load(SvidFiles { bundle, cert, key }, &ExpectedIdentity::Any)?;
        Self::from_svid(svid)
    }

    /// Presents no certificate (the caller authenticates with a bearer token); trusts
    /// federation nodes that chain to `bundle`.
    pub fn anonymous(bundle: TrustBundle) -> Result<Self, ClientTlsError> {
        let config = client_config_without_cert(verifier(SharedBundle::new(bundle)), &[b"h2"])?;
        Ok(Self(Arc::new(config)))
    }

    /// Presents whatever `certificate` holds at each handshake (a gateway's leaf, which
    /// rotates) and trusts federation nodes that chain to the live `bundle`.
    pub fn live(
        bundle: SharedBundle,
        certificate: Arc<dyn rustls::client::ResolvesClientCert>,
    ) -> Result<Self, ClientTlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier(bundle))
            .with_client_cert_resolver(certificate);
        // Every connection is verified afresh, against the bundle in force now.
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self(Arc::new(config)))
    }

    /// A config made elsewhere (it must offer ALPN `h2`).
    pub fn from_config(config: Arc<rustls::ClientConfig>) -> Self {
        Self(config)
    }
}

/// The trust domain a bundle's roots name (their `spiffe://TD` URI SAN), for a caller
/// that has only a bundle file.
pub fn bundle_from_pem(pem: &str, file: &Path) -> Result<TrustBundle, ClientTlsError> {
    let bad = |reason: String| ClientTlsError::Bundle {
        file: file.display().to_string(),
        reason,
    };
    let domain = isthmus_ca::pem::certs_from_pem(pem)
        .ok()
        .and_then(|certs| certs.into_iter().next())
        .and_then(|root| isthmus_ca::CertFacts::parse(&root).ok())
        .and_then(|facts| facts.uris.into_iter().next())
        .and_then(|uri| isthmus_ca::SpiffeId::parse(&uri).ok())
        .map(|id| id.trust_domain().clone())
        .ok_or_else(|| {
            bad("its first root names no trust domain (no spiffe://TD URI SAN)".into())
        })?;
    TrustBundle::from_pem(domain, pem).map_err(|e| bad(e.to_string()))
}
