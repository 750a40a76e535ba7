//! QUIC endpoint configs for gateway-to-gateway connections: TLS 1.3 with mutual
//! authentication by SPIFFE SVIDs, ALPN `isthmus/1`, on the same rustls (ring) as the
//! rest of the process.
//!
//! 0-RTT stays off: tunnelled streams are not idempotent, and replayed early data could
//! open a connection twice.

use std::sync::Arc;

use isthmus_ca::verify::tls::{SpiffeVerifier, client_config, server_config};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol of the Isthmus gateway tunnel, version 1.
pub const ALPN: &[u8] = b"isthmus/1";

/// Why a QUIC config could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicConfigError {
    /// rustls refused the certificate, key or protocol settings.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// quinn refused the rustls configuration.
    #[error("QUIC configuration: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// The server side of a gateway's QUIC endpoint: presents `chain`, requires a client
/// SVID accepted by `verifier`.
pub fn quic_server_config(
    verifier: Arc<SpiffeVerifier>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<quinn::ServerConfig, QuicConfigError> {
    let tls = server_config(verifier, chain, key, &[ALPN])?;
    let quic = QuicServerConfig::try_from(tls)?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
}

/// The client side: presents `chain`, accepts a server SVID accepted by `verifier`.
pub fn quic_client_config(
    verifier: Arc<SpiffeVerifier>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<quinn::ClientConfig, QuicConfigError> {
    let tls = client_config(verifier, chain, key, &[ALPN])?;
    let quic = QuicClientConfig::try_from(tls)?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}
