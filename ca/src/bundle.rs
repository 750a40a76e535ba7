//! The trust bundle: the roots a peer's chain may end in, several at once so that a root
//! can be rotated (bundle A+B, issue from B, remove A) with no downtime.
//!
//! A removed root is remembered as retired, so that a chain to it is refused with its
//! own reason rather than as an unknown issuer.

use std::sync::{Arc, RwLock};

use rustls_pki_types::CertificateDer;

use crate::cert::CertFacts;
use crate::error::CaError;
use crate::spiffe::TrustDomain;

/// One root of a bundle, with the facts the verifier needs.
#[derive(Debug, Clone)]
pub struct Root {
    /// The certificate.
    pub der: CertificateDer<'static>,
    /// Its parsed facts.
    pub facts: CertFacts,
}

/// The roots trusted for one trust domain.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    roots: Vec<Root>,
    retired: Vec<Root>,
}

impl TrustBundle {
    /// A bundle of `roots` for `trust_domain`. Each root must be a self-signed CA whose
    /// `spiffe://TD` SAN, when present, names `trust_domain`.
    pub fn new(
        trust_domain: TrustDomain,
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, CaError> {
        let mut bundle = Self {
            trust_domain,
            roots: Vec::new(),
            retired: Vec::new(),
        };
        for der in roots {
            bundle.add_root(der)?;
        }
        if bundle.roots.is_empty() {
            return Err(CaError::BadCertificate(
                "a trust bundle needs at least one root".into(),
            ));
        }
        Ok(bundle)
    }

    /// Parses a PEM bundle (one or more roots).
    pub fn from_pem(trust_domain: TrustDomain, pem: &str) -> Result<Self, CaError> {
        Self::new(trust_domain, crate::pem::certs_from_pem(pem)?)
    }

    /// The roots as PEM, in order; `openssl verify -CAfile` reads this file as it is.
    pub fn to_pem(&self) -> String {
        crate::pem::certs_to_pem(self.roots.iter().map(|r| &r.der))
    }

    /// Adds a root (no-op when already present).
    pub fn add_root(&mut self, der: CertificateDer<'static>) -> Result<(), CaError> {
        let facts = CertFacts::parse(&der)
            .map_err(|e| CaError::BadCertificate(format!("cannot parse root: {e}")))?;
        if !facts.is_ca || !facts.key_cert_sign || !facts.self_signed {
            return Err(CaError::BadCertificate(format!(
                "{} is not a self-signed CA certificate with keyCertSign",
                facts.subject
            )));
        }
        if let Some(domain) = facts.signing_trust_domain()? {
            if domain != self.trust_domain {
                return Err(CaError::BadCertificate(format!(
                    "root {} is for trust domain {domain}, the bundle for {}",
                    facts.subject, self.trust_domain
                )));
            }
        }
        if !self
            .roots
            .iter()
            .any(|r| r.facts.fingerprint == facts.fingerprint)
        {
            self.retired
                .retain(|r| r.facts.fingerprint != facts.fingerprint);
            self.roots.push(Root { der, facts });
        }
        Ok(())
    }

    /// Removes the root with SHA-256 `fingerprint` and remembers it as retired.
    /// Refuses to remove the last root, which would leave nothing trusted.
    pub fn retire_root(&mut self, fingerprint: &str) -> Result<(), CaError> {
        let Some(index) = self
            .roots
            .iter()
            .position(|r| r.facts.fingerprint == fingerprint)
        else {
            return Err(CaError::BadCertificate(format!(
                "no root with fingerprint {fingerprint} in the bundle"
            )));
        };
        if self.roots.len() == 1 {
            return Err(CaError::BadCertificate(
                "refusing to remove the last root of the bundle; add its successor first".into(),
            ));
        }
        let root = self.roots.remove(index);
        self.retired.push(root);
        Ok(())
    }

    /// Records `der` as a retired root (as when a stored bundle is loaded). A root that
    /// is still in force cannot also be retired.
    pub fn add_retired(&mut self, der: CertificateDer<'static>) -> Result<(), CaError> {
        let facts = CertFacts::parse(&der)
            .map_err(|e| CaError::BadCertificate(format!("cannot parse retired root: {e}")))?;
        if self
            .roots
            .iter()
            .any(|r| r.facts.fingerprint == facts.fingerprint)
        {
            return Err(CaError::BadCertificate(format!(
                "{} is both in force and retired",
                facts.subject
            )));
        }
        if !self
            .retired
            .iter()
            .any(|r| r.facts.fingerprint == facts.fingerprint)
        {
            self.retired.push(Root { der, facts });
        }
        Ok(())
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The trusted roots.
    pub fn roots(&self) -> &[Root] {
        &self.roots
    }

    /// Roots removed from the bundle.
    pub fn retired(&self) -> &[Root] {
        &self.retired
    }

    /// The trusted root whose key signed `cert` (a cluster intermediate), checked by
    /// signature, not only by name.
    pub fn signer_of(&self, cert: &CertificateDer<'_>) -> Result<&Root, CaError> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, parsed) = X509Certificate::from_der(cert)
            .map_err(|e| CaError::BadCertificate(format!("not an X.509 certificate: {e}")))?;
        for root in &self.roots {
            let Ok((_, issuer)) = X509Certificate::from_der(&root.der) else {
                continue;
            };
            if parsed.issuer() == issuer.subject()
                && parsed.verify_signature(Some(issuer.public_key())).is_ok()
            {
                return Ok(root);
            }
        }
        Err(CaError::BadCertificate(format!(
            "{} is not signed by any root of the trust bundle of {}",
            parsed.subject(),
            self.trust_domain
        )))
    }
}

/// A trust bundle that can be replaced while verifiers hold it (for live bundle updates
/// from the federation). Readers take a cheap snapshot; a replacement applies to every
/// handshake that starts after it.
#[derive(Debug, Clone)]
pub struct SharedBundle(Arc<RwLock<Arc<TrustBundle>>>);

impl SharedBundle {
    /// Shares `bundle`.
    pub fn new(bundle: TrustBundle) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(bundle))))
    }

    /// The bundle now in force.
    pub fn current(&self) -> Arc<TrustBundle> {
        // A poisoned lock still holds a complete bundle: replace() swaps one Arc.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `bundle` in force for every later verification.
    pub fn replace(&self, bundle: TrustBundle) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(bundle);
    }
}
