//! rustls glue: [`SpiffeVerifier`] checks peers as both a server and a client
//! certificate verifier, and [`server_config`] / [`client_config`] build mutual-TLS
//! configs on the `ring` provider that quinn, tonic and tokio-rustls share.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::{ExpectedIdentity, PeerRole, VerifiedPeer, VerifyError, verify_chain};
use crate::bundle::SharedBundle;

/// The crypto provider of every Isthmus TLS config: rustls on `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Called with every refusal and the end-entity certificate refused (unverified: what
/// it claims is only a hint, such as whose edge a failure belongs to), for counting and
/// logging.
pub type RefusalObserver = Arc<dyn Fn(&VerifyError, &CertificateDer<'_>) + Send + Sync>;

/// Verifies peers' SVIDs against a (live-replaceable) trust bundle.
pub struct SpiffeVerifier {
    bundle: SharedBundle,
    expected: ExpectedIdentity,
    algorithms: WebPkiSupportedAlgorithms,
    observer: Option<RefusalObserver>,
    /// As a server: whether a client must present a certificate.
    client_mandatory: bool,
}

impl std::fmt::Debug for SpiffeVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpiffeVerifier")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl SpiffeVerifier {
    /// A verifier that accepts peers matching `expected` under `bundle`.
    pub fn new(bundle: SharedBundle, expected: ExpectedIdentity) -> Arc<Self> {
        Arc::new(Self {
            bundle,
            expected,
            algorithms: provider().signature_verification_algorithms,
            observer: None,
            client_mandatory: true,
        })
    }

    /// A server-side verifier that lets a client connect without a certificate (the
    /// application must then authenticate it another way, such as a bearer token); a
    /// certificate that is presented is verified in full, as with [`SpiffeVerifier::new`].
    pub fn client_optional(bundle: SharedBundle, expected: ExpectedIdentity) -> Arc<Self> {
        Arc::new(Self {
            bundle,
            expected,
            algorithms: provider().signature_verification_algorithms,
            observer: None,
            client_mandatory: false,
        })
    }

    /// Like [`SpiffeVerifier::new`], calling `observer` with every refusal.
    pub fn with_observer(
        bundle: SharedBundle,
        expected: ExpectedIdentity,
        observer: RefusalObserver,
    ) -> Arc<Self> {
        Arc::new(Self {
            bundle,
            expected,
            algorithms: provider().signature_verification_algorithms,
            observer: Some(observer),
            client_mandatory: true,
        })
    }

    /// Runs the full check outside a handshake (for `isthmus ca verify` and tests).
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        role: PeerRole,
    ) -> Result<VerifiedPeer, VerifyError> {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        verify_chain(
            &self.bundle.current(),
            end_entity,
            intermediates,
            now,
            role,
            &self.expected,
        )
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        role: PeerRole,
    ) -> Result<(), rustls::Error> {
        self.verify(end_entity, intermediates, now, role)
            .map(|_| ())
            .map_err(|e| {
                if let Some(observer) = &self.observer {
                    observer(&e, end_entity);
                }
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
            })
    }
}

/// The Isthmus reason inside a rustls handshake error, when there is one: a refusal by
/// [`SpiffeVerifier`], or a client that sent no certificate.
pub fn verify_error_of(err: &rustls::Error) -> Option<VerifyError> {
    match err {
        rustls::Error::NoCertificatesPresented => Some(VerifyError::NoCertificate),
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            let inner: &(dyn std::error::Error + 'static) = inner.as_ref();
            inner.downcast_ref::<VerifyError>().cloned()
        }
        _ => None,
    }
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Identity comes from the SPIFFE ID, not the DNS name the client dialled.
        self.check(end_entity, intermediates, now, PeerRole::Server)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for SpiffeVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now, PeerRole::Client)?;
        Ok(ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        self.client_mandatory
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A TLS 1.3 server config that requires and verifies client SVIDs on every handshake
/// (session resumption is off).
pub fn server_config(
    verifier: Arc<SpiffeVerifier>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    // No resumption: a resumed handshake skips the verifier, so a peer whose root was
    // retired or whose leaf expired could come back on an old ticket.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// [`server_config`] presenting whatever `cert` resolves at each handshake (a
/// certificate renewed while the server runs).
pub fn server_config_resolving(
    verifier: Arc<SpiffeVerifier>,
    cert: Arc<dyn rustls::server::ResolvesServerCert>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    // No resumption: a resumed handshake skips the verifier, so a peer whose root was
    // retired or whose leaf expired could come back on an old ticket.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A TLS 1.3 client config that presents an SVID and verifies the server's.
pub fn client_config(
    verifier: Arc<SpiffeVerifier>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)?;
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A TLS 1.3 client config that verifies the server with `verifier` and presents no
/// certificate (for callers that authenticate with a bearer token instead).
pub fn client_config_without_cert(
    verifier: Arc<SpiffeVerifier>,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
