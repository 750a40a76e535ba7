//! This gateway's certificate as rustls sees it, replaceable while the gateway runs: the
//! QUIC server and every dial ask it for the current chain at each handshake, so that a
//! renewed leaf applies to new connections at once and established tunnels are left
//! alone (a QUIC connection never presents its certificate again).

use std::sync::{Arc, RwLock};

use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The current certificate and key.
#[derive(Debug)]
pub struct LiveCert(RwLock<Arc<CertifiedKey>>);

impl LiveCert {
    /// Starts with `chain` and `key`.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'static>,
    ) -> Result<Arc<Self>, rustls::Error> {
        Ok(Arc::new(Self(RwLock::new(Arc::new(certified(
            chain, key,
        )?)))))
    }

    /// Presents `chain` and `key` from the next handshake on.
    pub fn replace(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'static>,
    ) -> Result<(), rustls::Error> {
        let new = Arc::new(certified(chain, key)?);
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    /// The chain presented now (leaf first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current().cert.clone()
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<CertifiedKey, rustls::Error> {
    let provider = isthmus_ca::verify::tls::provider();
    CertifiedKey::from_der(chain, key.clone_key(), &provider)
}

impl ResolvesServerCert for LiveCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for LiveCert {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
