//! Certificates for tests and the dev mesh, issued by the CA crate: a trust domain with
//! a root and one intermediate per cluster ([`TestPki`]), and leaves from any issuer
//! ([`issue`]) held in memory or written as PEM files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use isthmus_ca::verify::tls::{SpiffeVerifier, client_config};
use isthmus_ca::verify::{ExpectedIdentity, VerifyError};
use isthmus_ca::{
    Authority, CaError, KeyAlgorithm, LeafRequest, SharedBundle, SpiffeId, SpiffeIdError, Svid,
    SvidFiles, TrustBundle, TrustDomain,
};
use isthmus_gateway::identity::GatewayIdentity;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const DAY: Duration = Duration::from_secs(86_400);

/// Why a test certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The CA refused.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// A SPIFFE ID or trust domain is invalid.
    #[error(transparent)]
    Spiffe(#[from] SpiffeIdError),
    /// The PKI has no intermediate for this cluster.
    #[error("no intermediate for cluster {0:?}")]
    NoIntermediate(String),
    /// The gateway identity does not verify.
    #[error(transparent)]
    Identity(#[from] VerifyError),
    /// The client's files do not make a TLS config.
    #[error("client TLS: {0}")]
    ClientTls(String),
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A leaf certificate with its chain (leaf first, intermediates after, no root) and key.
pub struct Leaf {
    /// The leaf and the intermediates to present after it.
    pub chain: Vec<CertificateDer<'static>>,
    key: rcgen::KeyPair,
}

impl Leaf {
    /// The chain as PEM.
    pub fn chain_pem(&self) -> String {
        isthmus_ca::pem::certs_to_pem(&self.chain)
    }

    /// The private key as PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The private key as PKCS#8 DER.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    /// Writes the chain and the key to `cert` and `key`.
    pub fn write(&self, cert: &Path, key: &Path) -> Result<(), PkiError> {
        write_file(cert, &self.chain_pem())?;
        write_file(key, &self.key_pem())
    }
}

/// Writes `text` to `path`.
pub fn write_file(path: &Path, text: &str) -> Result<(), PkiError> {
    std::fs::write(path, text).map_err(|source| PkiError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Issues a leaf for `id` from `issuer`, with `dns_names` as DNS SANs, valid from now
/// for `lifetime`.
pub fn issue(
    issuer: &Authority,
    id: &str,
    dns_names: &[&str],
    lifetime: Duration,
) -> Result<Leaf, PkiError> {
    let issued = issuer.issue_leaf(
        &LeafRequest {
            id: SpiffeId::parse(id)?,
            lifetime,
            dns_names: dns_names.iter().map(|&n| n.to_owned()).collect(),
            key_algorithm: KeyAlgorithm::EcdsaP256,
        },
        SystemTime::now(),
    )?;
    let mut chain = vec![issued.cert];
    chain.extend(issued.chain);
    Ok(Leaf {
        chain,
        key: issued.key,
    })
}

/// A trust domain for tests: a root (a year) and an intermediate per cluster (30 days).
pub struct TestPki {
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// The root CA.
    pub root: Authority,
    /// Each cluster's intermediate.
    pub intermediates: BTreeMap<String, Authority>,
}

impl TestPki {
    /// A root for `trust_domain` and an intermediate for each of `clusters`.
    pub fn new(trust_domain: &str, clusters: &[&str]) -> Result<Self, PkiError> {
        let trust_domain = TrustDomain::new(trust_domain)?;
        let root = Authority::new_root(
            &trust_domain,
            KeyAlgorithm::EcdsaP256,
            365 * DAY,
            SystemTime::now(),
        )?;
        Self::with_root(trust_domain, root, clusters)
    }

    /// An intermediate for each of `clusters` under a given root (a fixture's).
    pub fn with_root(
        trust_domain: TrustDomain,
        root: Authority,
        clusters: &[&str],
    ) -> Result<Self, PkiError> {
        let now = SystemTime::now();
        let intermediates = clusters
            .iter()
            .map(|&cluster| {
                let ca =
                    root.new_cluster_intermediate(cluster, KeyAlgorithm::EcdsaP256, 30 * DAY, now)?;
                Ok((cluster.to_owned(), ca))
            })
            .collect::<Result<_, PkiError>>()?;
        Ok(Self {
            trust_domain,
            root,
            intermediates,
        })
    }

    /// The bundle of the root alone.
    pub fn bundle(&self) -> Result<TrustBundle, PkiError> {
        Ok(TrustBundle::new(
            self.trust_domain.clone(),
            [self.root.cert().clone()],
        )?)
    }

    /// `cluster`'s intermediate.
    pub fn intermediate(&self, cluster: &str) -> Result<&Authority, PkiError> {
        self.intermediates
            .get(cluster)
            .ok_or_else(|| PkiError::NoIntermediate(cluster.to_owned()))
    }

    /// A day's leaf for `spiffe://<trust domain>/<path>` from `cluster`'s intermediate.
    pub fn leaf(&self, cluster: &str, path: &str) -> Result<Leaf, PkiError> {
        let id = format!("spiffe://{}/{path}", self.trust_domain);
        issue(self.intermediate(cluster)?, &id, &[], DAY)
    }

    /// The identity of `cluster`'s gateway `gw`, bundle included.
    pub fn gateway_identity(&self, cluster: &str) -> Result<GatewayIdentity, PkiError> {
        let leaf = self.leaf(cluster, &format!("cluster/{cluster}/gateway/gw"))?;
        Ok(GatewayIdentity::new(
            self.bundle()?,
            leaf.chain.clone(),
            leaf.key_der(),
            cluster,
            SystemTime::now(),
        )?)
    }
}

/// TLS for a client of federation nodes (it verifies them as federation nodes) from
/// `bundle.pem`, `client.cert.pem` and `client.key.pem` in `dir`, offering `alpn`.
pub fn federation_client_tls(
    dir: &Path,
    alpn: &[u8],
) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let svid = Svid::load(
        SvidFiles {
            bundle: (&dir.join("bundle.pem"), "bundle"),
            cert: (&dir.join("client.cert.pem"), "cert"),
            key: (&dir.join("client.key.pem"), "key"),
        },
        &ExpectedIdentity::Any,
    )
    .map_err(|e| PkiError::ClientTls(e.to_string()))?;
    let verifier = SpiffeVerifier::new(
        SharedBundle::new(svid.bundle),
        ExpectedIdentity::AnyFederationNode,
    );
    let config = client_config(verifier, svid.chain, svid.key, &[alpn])
        .map_err(|e| PkiError::ClientTls(e.to_string()))?;
    Ok(Arc::new(config))
}
