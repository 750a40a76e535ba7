//! Issuing certificates: the root, cluster intermediates (directly or from a CSR) and
//! SPIFFE leaves. Every function takes `now`; none reads the clock.
//!
//! ```text
//! root (self-signed, pathlen 1, spiffe://TD)
//!  ├── cluster intermediate (pathlen 0, spiffe://TD, URI name constraint TD,
//!  │     subject OU="isthmus cluster intermediate" CN=<cluster>)
//!  │     └── leaf spiffe://TD/cluster/<cluster>/{ns/NS/sa/SA | gateway/NAME}
//!  └── leaf spiffe://TD/federation/NODE
//! ```
//!
//! X.509 URI name constraints can only name a host (RFC 5280 §4.2.1.10), so the
//! intermediate's constraint pins the trust domain and the verifier enforces the
//! cluster path from the intermediate's subject. See `docs/ca.md`.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CustomExtension,
    DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cert::{CaRole, CertFacts, CertParseError};
use crate::error::CaError;
use crate::keys::KeyAlgorithm;
use crate::spiffe::{Identity, SpiffeId, TrustDomain, dns_label};
use crate::time::to_offset;

/// Subject OU of roots made by `ca init`.
pub const ROOT_OU: &str = "isthmus root";
/// Subject OU that marks a cluster intermediate; its CN is the cluster name.
pub const CLUSTER_OU: &str = "isthmus cluster intermediate";
/// How far before `now` a new certificate's validity starts, to absorb clock skew
/// between the issuer and the peers that check it.
pub const BACKDATE: Duration = Duration::from_secs(60);

/// What a CA may sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorityKind {
    /// A root: signs cluster intermediates and federation node leaves.
    Root,
    /// A cluster intermediate: signs leaves under `spiffe://TD/cluster/<cluster>/`.
    ClusterIntermediate {
        /// The cluster name.
        cluster: String,
    },
}

/// A CA certificate with its private key, able to issue.
#[derive(Debug)]
pub struct Authority {
    trust_domain: TrustDomain,
    kind: AuthorityKind,
    cert: CertificateDer<'static>,
    /// Certificates above this one that leaves must carry (empty for a root and for a
    /// cluster intermediate signed directly by a root).
    chain: Vec<CertificateDer<'static>>,
    key: KeyPair,
    not_after: SystemTime,
}

/// A leaf certificate as issued: the certificate, the chain to send with it, and its key.
#[derive(Debug)]
pub struct IssuedLeaf {
    /// The leaf certificate.
    pub cert: CertificateDer<'static>,
    /// The intermediates to present after the leaf (never the root).
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: KeyPair,
}

/// What a leaf certificate should say.
#[derive(Debug, Clone)]
pub struct LeafRequest {
    /// The SPIFFE ID, the one URI SAN.
    pub id: SpiffeId,
    /// How long the certificate lives from `now`.
    pub lifetime: Duration,
    /// Extra DNS SANs (gateways and federation nodes only).
    pub dns_names: Vec<String>,
    /// Key algorithm of the new leaf key.
    pub key_algorithm: KeyAlgorithm,
}

impl Authority {
    /// Creates a new self-signed root for `trust_domain`.
    pub fn new_root(
        trust_domain: &TrustDomain,
        key_algorithm: KeyAlgorithm,
        validity: Duration,
        now: SystemTime,
    ) -> Result<Self, CaError> {
        let key = key_algorithm.generate()?;
        let mut params = ca_params(trust_domain, validity, now, 1)?;
        params.distinguished_name = dn(&[
            (DnType::OrganizationName, trust_domain.as_str()),
            (DnType::OrganizationalUnitName, ROOT_OU),
            // The key's fingerprint makes each root's name unique, so that during a
            // rotation (bundle A+B) issuers are told apart by name, as RFC 5280 expects.
            (
                DnType::CommonName,
                &format!(
                    "Isthmus root CA {trust_domain} {}",
                    &crate::cert::fingerprint(&key.subject_public_key_info())[..12]
                ),
            ),
        ]);
        let cert = params.self_signed(&key).map_err(|source| CaError::Crypto {
            action: "self-signing the root",
            source,
        })?;
        Ok(Self {
            trust_domain: trust_domain.clone(),
            kind: AuthorityKind::Root,
            not_after: now + validity,
            cert: cert.der().clone(),
            chain: Vec::new(),
            key,
        })
    }

    /// Loads a CA from PEM: the CA certificate first, then any chain above it, and its
    /// PKCS#8 key. A root without a `spiffe://TD` URI SAN (an operator's own root) takes
    /// its trust domain from `trust_domain`; when both are present they must agree.
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        trust_domain: Option<&TrustDomain>,
    ) -> Result<Self, CaError> {
        let mut certs = crate::pem::certs_from_pem(cert_pem)?.into_iter();
        let cert = certs
            .next()
            .ok_or_else(|| CaError::BadCertificate("the file holds no certificate".into()))?;
        let key = crate::keys::key_from_pem(key_pem)?;
        Self::from_parts(cert, certs.collect(), key, trust_domain)
    }

    fn from_parts(
        cert: CertificateDer<'static>,
        chain: Vec<CertificateDer<'static>>,
        key: KeyPair,
        trust_domain: Option<&TrustDomain>,
    ) -> Result<Self, CaError> {
        let facts = CertFacts::parse(&cert).map_err(|e| {
            CaError::BadCertificate(format!("cannot parse the CA certificate: {e}"))
        })?;
        if !facts.is_ca || !facts.key_cert_sign {
            return Err(CaError::BadCertificate(
                "not a CA certificate (needs basicConstraints CA:TRUE and keyUsage keyCertSign)"
                    .into(),
            ));
        }
        if facts.spki != key.subject_public_key_info() {
            return Err(CaError::BadKey(
                "the private key does not belong to the CA certificate".into(),
            ));
        }
        let trust_domain = match (facts.signing_trust_domain()?, trust_domain) {
            (Some(own), Some(given)) if own != *given => {
                return Err(CaError::BadCertificate(format!(
                    "the CA certificate is for trust domain {own}, not {given}"
                )));
            }
            (Some(own), _) => own,
            (None, Some(given)) => given.clone(),
            (None, None) => {
                return Err(CaError::BadCertificate(
                    "the CA certificate names no trust domain (no spiffe://TD URI SAN); give one"
                        .into(),
                ));
            }
        };
        let kind = match facts.ca_role() {
            CaRole::Cluster(cluster) => AuthorityKind::ClusterIntermediate { cluster },
            CaRole::Root if facts.self_signed => AuthorityKind::Root,
            CaRole::Root => {
                return Err(CaError::BadCertificate(
                    "a CA that is neither self-signed nor a cluster intermediate cannot issue here"
                        .into(),
                ));
            }
        };
        Ok(Self {
            trust_domain,
            kind,
            not_after: crate::time::from_unix_seconds(facts.not_after),
            cert,
            chain,
            key,
        })
    }

    /// The trust domain this CA issues in.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Root or cluster intermediate.
    pub fn kind(&self) -> &AuthorityKind {
        &self.kind
    }

    /// The CA certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA certificate followed by its chain, as PEM.
    pub fn cert_chain_pem(&self) -> String {
        crate::pem::certs_to_pem(std::iter::once(&self.cert).chain(&self.chain))
    }

    /// The CA's private key as PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Creates a key for cluster `cluster` and signs its intermediate at once (the root
    /// holder makes the key: use [`cluster_csr`] when the key must stay in the cluster).
    pub fn new_cluster_intermediate(
        &self,
        cluster: &str,
        key_algorithm: KeyAlgorithm,
        validity: Duration,
        now: SystemTime,
    ) -> Result<Self, CaError> {
        let key = key_algorithm.generate()?;
        let cert = self.sign_intermediate(cluster, &key, validity, now)?;
        Self::from_parts(cert, self.chain.clone(), key, Some(&self.trust_domain))
    }

    /// Signs the intermediate of `cluster` from a CSR made by [`cluster_csr`]. Only the
    /// CSR's public key is used; every extension comes from here. The CSR must ask for
    /// the same cluster and trust domain, so that a mix-up is caught.
    pub fn sign_cluster_csr(
        &self,
        csr_pem: &str,
        cluster: &str,
        validity: Duration,
        now: SystemTime,
    ) -> Result<CertificateDer<'static>, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            CaError::BadCsr(format!(
                "not a well-formed, correctly self-signed CSR ({e})"
            ))
        })?;
        let asked = |ty: DnType| match csr.params.distinguished_name.get(&ty) {
            Some(DnValue::Utf8String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let asked_cluster = asked(DnType::CommonName).unwrap_or_default();
        let asked_domain = asked(DnType::OrganizationName).unwrap_or_default();
        if asked_cluster != cluster || asked_domain != self.trust_domain.as_str() {
            return Err(CaError::BadCsr(format!(
                "the CSR asks for cluster {asked_cluster:?} in trust domain {asked_domain:?}, \
                 but this signs cluster {cluster:?} in {}",
                self.trust_domain
            )));
        }
        self.sign_intermediate(cluster, &csr.public_key, validity, now)
    }

    /// Signs a new certificate for an existing cluster intermediate's key (read from its
    /// current certificate), for a root rotation: the cluster keeps its key, and its
    /// gateways adopt the new certificate when the federation publishes it.
    pub fn resign_cluster_intermediate(
        &self,
        current: &CertificateDer<'_>,
        cluster: &str,
        validity: Duration,
        now: SystemTime,
    ) -> Result<CertificateDer<'static>, CaError> {
        let facts =
            CertFacts::parse(current).map_err(|e| CaError::BadCertificate(e.to_string()))?;
        if facts.ca_role() != CaRole::Cluster(cluster.to_owned()) {
            return Err(CaError::BadCertificate(format!(
                "{} is not the intermediate of cluster {cluster:?}",
                facts.subject
            )));
        }
        let (_, parsed) = X509Certificate::from_der(current)
            .map_err(|e| CaError::BadCertificate(format!("not an X.509 certificate: {e}")))?;
        let spki = rcgen::SubjectPublicKeyInfo::from_der(parsed.tbs_certificate.subject_pki.raw)
            .map_err(|source| CaError::Crypto {
                action: "reading the intermediate's public key",
                source,
            })?;
        self.sign_intermediate(cluster, &spki, validity, now)
    }

    fn sign_intermediate(
        &self,
        cluster: &str,
        public_key: &impl PublicKeyData,
        validity: Duration,
        now: SystemTime,
    ) -> Result<CertificateDer<'static>, CaError> {
        if self.kind != AuthorityKind::Root {
            return Err(CaError::OutsideIssuer {
                id: format!("the intermediate of cluster {cluster}"),
                issuer: self.describe(),
                why: "only a root signs cluster intermediates".into(),
            });
        }
        let cluster = dns_label("cluster", cluster)?;
        let mut params = ca_params(&self.trust_domain, validity, now, 0)?;
        self.check_outlives(now + validity)?;
        params.distinguished_name = cluster_dn(&self.trust_domain, &cluster);
        let mut constraint = CustomExtension::from_oid_content(
            &[2, 5, 29, 30],
            uri_name_constraint(self.trust_domain.as_str()),
        );
        constraint.set_criticality(true);
        params.custom_extensions.push(constraint);
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(public_key, &self.issuer()?)
            .map_err(|source| CaError::Crypto {
                action: "signing the cluster intermediate",
                source,
            })?;
        Ok(cert.der().clone())
    }

    /// Issues a leaf for `request.id` with a fresh key.
    pub fn issue_leaf(
        &self,
        request: &LeafRequest,
        now: SystemTime,
    ) -> Result<IssuedLeaf, CaError> {
        let identity = self.check_may_issue(&request.id)?;
        if !request.dns_names.is_empty() && matches!(identity, Identity::Workload { .. }) {
            return Err(CaError::OutsideIssuer {
                id: request.id.to_string(),
                issuer: self.describe(),
                why: "DNS names are only issued to gateways and federation nodes".into(),
            });
        }
        if request.lifetime.is_zero() {
            return Err(CaError::BadLifetime(
                "a leaf lifetime must be above zero".into(),
            ));
        }
        self.check_outlives(now + request.lifetime)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&[(DnType::OrganizationName, self.trust_domain.as_str())]);
        params.not_before = to_offset(now - BACKDATE)?;
        params.not_after = to_offset(now + request.lifetime)?;
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names.push(uri_san(request.id.as_str())?);
        for name in &request.dns_names {
            let ia5 = name
                .clone()
                .try_into()
                .map_err(|_| CaError::BadDnsName(name.clone()))?;
            if !is_dns_name(name) {
                return Err(CaError::BadDnsName(name.clone()));
            }
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        let key = request.key_algorithm.generate()?;
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(|source| CaError::Crypto {
                action: "signing the leaf",
                source,
            })?;
        let mut chain = Vec::new();
        if self.kind != AuthorityKind::Root {
            chain.push(self.cert.clone());
            chain.extend(self.chain.iter().cloned());
        }
        Ok(IssuedLeaf {
            cert: cert.der().clone(),
            chain,
            key,
        })
    }

    /// Refuses identities this CA must not sign, the same rule the verifier applies.
    fn check_may_issue(&self, id: &SpiffeId) -> Result<Identity, CaError> {
        let refuse = |why: String| CaError::OutsideIssuer {
            id: id.to_string(),
            issuer: self.describe(),
            why,
        };
        if id.trust_domain() != &self.trust_domain {
            return Err(refuse(format!(
                "it is in trust domain {}, the CA in {}",
                id.trust_domain(),
                self.trust_domain
            )));
        }
        let identity = id.identity()?;
        match (&self.kind, identity.cluster()) {
            (AuthorityKind::Root, None) => Ok(identity),
            (AuthorityKind::Root, Some(_)) => Err(refuse(
                "cluster identities are issued by their cluster's intermediate".into(),
            )),
            (AuthorityKind::ClusterIntermediate { cluster }, Some(c)) if c == cluster => {
                Ok(identity)
            }
            (AuthorityKind::ClusterIntermediate { cluster }, _) => Err(refuse(format!(
                "this intermediate only issues under spiffe://{}/cluster/{cluster}/",
                self.trust_domain
            ))),
        }
    }

    fn check_outlives(&self, requested_end: SystemTime) -> Result<(), CaError> {
        if requested_end > self.not_after {
            return Err(CaError::OutlivesIssuer {
                requested_end,
                issuer_end: self.not_after,
            });
        }
        Ok(())
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, CaError> {
        Issuer::from_ca_cert_der(&self.cert, &self.key).map_err(|source| CaError::Crypto {
            action: "reading the CA certificate",
            source,
        })
    }

    fn describe(&self) -> String {
        match &self.kind {
            AuthorityKind::Root => format!("the root of {}", self.trust_domain),
            AuthorityKind::ClusterIntermediate { cluster } => {
                format!("the intermediate of cluster {cluster}")
            }
        }
    }
}

/// Makes the key and CSR of cluster `cluster`'s intermediate, so that the key never
/// leaves the cluster: send the CSR to the root holder, who runs
/// [`Authority::sign_cluster_csr`].
pub fn cluster_csr(
    trust_domain: &TrustDomain,
    cluster: &str,
    key_algorithm: KeyAlgorithm,
) -> Result<(KeyPair, String), CaError> {
    let cluster = dns_label("cluster", cluster)?;
    let key = key_algorithm.generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = cluster_dn(trust_domain, &cluster);
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|source| CaError::Crypto {
            action: "writing the CSR",
            source,
        })?;
    Ok((key, csr))
}

fn ca_params(
    trust_domain: &TrustDomain,
    validity: Duration,
    now: SystemTime,
    path_len: u8,
) -> Result<CertificateParams, CaError> {
    if validity.is_zero() {
        return Err(CaError::BadLifetime(
            "a CA validity must be above zero".into(),
        ));
    }
    let mut params = CertificateParams::default();
    params.not_before = to_offset(now - BACKDATE)?;
    params.not_after = to_offset(now + validity)?;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
        .subject_alt_names
        .push(uri_san(trust_domain.id().as_str())?);
    Ok(params)
}

fn cluster_dn(trust_domain: &TrustDomain, cluster: &str) -> DistinguishedName {
    dn(&[
        (DnType::OrganizationName, trust_domain.as_str()),
        (DnType::OrganizationalUnitName, CLUSTER_OU),
        (DnType::CommonName, cluster),
    ])
}

fn dn(entries: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (ty, value) in entries {
        dn.push(ty.clone(), DnValue::Utf8String((*value).to_owned()));
    }
    dn
}

fn uri_san(uri: &str) -> Result<SanType, CaError> {
    let ia5 = uri
        .to_owned()
        .try_into()
        .map_err(|_| CaError::BadCertificate(format!("{uri:?} is not ASCII")))?;
    Ok(SanType::URI(ia5))
}

fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    name.len() <= 253
        && name
            .split('.')
            .all(|label| dns_label("DNS name", label).is_ok())
}

/// A positive 127-bit random serial (RFC 5280: at most 20 octets, positive).
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CaError::BadLifetime("the system random source failed".into()))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// DER of a NameConstraints extension permitting URIs whose host is exactly `host`.
fn uri_name_constraint(host: &str) -> Vec<u8> {
    let base = der(0x86, host.as_bytes()); // [6] IMPLICIT IA5String: uniformResourceIdentifier
    let subtree = der(0x30, &base); // GeneralSubtree
    let permitted = der(0xA0, &subtree); // [0] permittedSubtrees
    der(0x30, &permitted) // NameConstraints
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Parses `der` fully, refusing trailing bytes.
pub(crate) fn parse_x509(der: &[u8]) -> Result<X509Certificate<'_>, CertParseError> {
    match X509Certificate::from_der(der) {
        Ok((rest, _)) if !rest.is_empty() => Err(CertParseError::TrailingBytes),
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(CertParseError::Der(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_use_short_and_long_forms() {
        assert_eq!(der(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der(0x04, &[0; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
        let longer = der(0x04, &[0; 300]);
        assert_eq!(&longer[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn name_constraint_parses_back_as_a_uri_subtree() {
        use x509_parser::extensions::{GeneralName, NameConstraints};
        let bytes = uri_name_constraint("mesh.example");
        let (rest, nc) = NameConstraints::from_der(&bytes).unwrap();
        assert!(rest.is_empty());
        let permitted = nc.permitted_subtrees.unwrap();
        assert_eq!(permitted.len(), 1);
        assert!(matches!(
            permitted[0].base,
            GeneralName::URI("mesh.example")
        ));
        assert!(nc.excluded_subtrees.is_none());
    }
}
