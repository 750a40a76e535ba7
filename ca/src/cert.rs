//! The facts Isthmus reads from one X.509 certificate, parsed once into owned values.

use x509_parser::extensions::{GeneralName, NameConstraints, ParsedExtension};
use x509_parser::prelude::X509Certificate;

use crate::authority::{CLUSTER_OU, ROOT_OU, parse_x509};
use crate::error::CaError;
use crate::spiffe::{SpiffeId, TrustDomain, dns_label};

/// Extensions Isthmus understands; any other one marked critical makes a certificate
/// unusable (RFC 5280 §4.2).
const KNOWN_EXTENSIONS: [&str; 7] = [
    "2.5.29.14", // subjectKeyIdentifier
    "2.5.29.15", // keyUsage
    "2.5.29.17", // subjectAltName
    "2.5.29.19", // basicConstraints
    "2.5.29.30", // nameConstraints
    "2.5.29.35", // authorityKeyIdentifier
    "2.5.29.37", // extKeyUsage
];

/// Why DER bytes are not a certificate Isthmus can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertParseError {
    /// Not DER X.509 (x509-parser's words).
    #[error("{0}")]
    Der(String),
    /// More bytes follow the certificate.
    #[error("trailing bytes after the certificate")]
    TrailingBytes,
    /// An extension Isthmus reads is malformed.
    #[error("{extension}: {reason}")]
    Extension {
        /// Its name, or its OID when it has none here.
        extension: String,
        /// The parser's words.
        reason: String,
    },
}

impl CertParseError {
    fn extension(extension: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Extension {
            extension: extension.into(),
            reason: reason.to_string(),
        }
    }
}

/// What a CA certificate is for, read from its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaRole {
    /// A root or any CA that is not a cluster intermediate.
    Root,
    /// A cluster intermediate (subject OU [`CLUSTER_OU`], CN the cluster name).
    Cluster(String),
}

/// Name constraints of a CA, reduced to the name forms Isthmus checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Constraints {
    /// Permitted URI hosts (`host` exact, `.domain` any subdomain); `None` = unconstrained.
    pub permitted_uri: Option<Vec<String>>,
    /// Excluded URI hosts.
    pub excluded_uri: Vec<String>,
    /// Permitted DNS suffixes; `None` = unconstrained.
    pub permitted_dns: Option<Vec<String>>,
    /// Excluded DNS suffixes.
    pub excluded_dns: Vec<String>,
    /// Name forms constrained that Isthmus does not check (IP, e-mail, directory, ...).
    pub unchecked_forms: bool,
}

/// Owned facts of one certificate.
#[derive(Debug, Clone)]
pub struct CertFacts {
    /// Subject, as text.
    pub subject: String,
    /// Issuer, as text.
    pub issuer: String,
    /// Subject DN, DER.
    pub subject_raw: Vec<u8>,
    /// Issuer DN, DER.
    pub issuer_raw: Vec<u8>,
    /// Serial number in hex.
    pub serial: String,
    /// SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// basicConstraints CA flag.
    pub is_ca: bool,
    /// basicConstraints pathLenConstraint.
    pub path_len: Option<u32>,
    /// Whether a keyUsage extension is present.
    pub key_usage_present: bool,
    /// Whether keyUsage is marked critical.
    pub key_usage_critical: bool,
    /// keyUsage digitalSignature.
    pub digital_signature: bool,
    /// keyUsage keyCertSign.
    pub key_cert_sign: bool,
    /// keyUsage cRLSign.
    pub crl_sign: bool,
    /// extKeyUsage purposes: `None` when the extension is absent (any purpose).
    pub eku: Option<Eku>,
    /// URI SANs.
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// SANs of other forms (IP, e-mail, ...).
    pub other_sans: usize,
    /// Name constraints, when present.
    pub constraints: Option<Constraints>,
    /// Critical extensions Isthmus does not understand, by OID.
    pub unknown_critical: Vec<String>,
    /// Subject equals issuer and the signature verifies with the certificate's own key.
    pub self_signed: bool,
    /// Subject organizational unit.
    pub ou: Option<String>,
    /// Subject common name.
    pub cn: Option<String>,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    /// Key algorithm, for display.
    pub key_algorithm: String,
}

/// extKeyUsage purposes Isthmus cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eku {
    /// id-kp-serverAuth.
    pub server_auth: bool,
    /// id-kp-clientAuth.
    pub client_auth: bool,
    /// anyExtendedKeyUsage.
    pub any: bool,
}

impl CertFacts {
    /// Parses `der`, refusing trailing bytes and malformed extensions.
    pub fn parse(der: &[u8]) -> Result<Self, CertParseError> {
        let cert = parse_x509(der)?;
        Self::from_x509(&cert, der)
    }

    /// Reads the facts of an already parsed certificate.
    pub fn from_x509(cert: &X509Certificate<'_>, der: &[u8]) -> Result<Self, CertParseError> {
        let bad = CertParseError::extension;
        let bc = cert
            .basic_constraints()
            .map_err(|e| bad("basicConstraints", e))?;
        let ku = cert.key_usage().map_err(|e| bad("keyUsage", e))?;
        let eku = cert
            .extended_key_usage()
            .map_err(|e| bad("extKeyUsage", e))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| bad("subjectAltName", e))?;
        let nc = cert
            .name_constraints()
            .map_err(|e| bad("nameConstraints", e))?;
        let mut unknown_critical = Vec::new();
        for ext in cert.extensions() {
            if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
                return Err(CertParseError::extension(
                    format!("extension {}", ext.oid),
                    error,
                ));
            }
            let oid = ext.oid.to_id_string();
            if ext.critical && !KNOWN_EXTENSIONS.contains(&oid.as_str()) {
                unknown_critical.push(oid);
            }
        }
        let (mut uris, mut dns_names, mut other_sans) = (Vec::new(), Vec::new(), 0);
        for name in san.iter().flat_map(|san| &san.value.general_names) {
            match name {
                GeneralName::URI(uri) => uris.push((*uri).to_owned()),
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                _ => other_sans += 1,
            }
        }
        let first = |values: Vec<&str>| values.first().map(|s| (*s).to_owned());
        let self_issued = cert.subject().as_raw() == cert.issuer().as_raw();
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            serial: cert.raw_serial_as_string(),
            spki: cert.public_key().raw.to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            is_ca: bc.as_ref().is_some_and(|bc| bc.value.ca),
            path_len: bc.as_ref().and_then(|bc| bc.value.path_len_constraint),
            key_usage_present: ku.is_some(),
            key_usage_critical: ku.as_ref().is_some_and(|ku| ku.critical),
            digital_signature: ku.as_ref().is_some_and(|ku| ku.value.digital_signature()),
            key_cert_sign: ku.as_ref().is_some_and(|ku| ku.value.key_cert_sign()),
            crl_sign: ku.as_ref().is_some_and(|ku| ku.value.crl_sign()),
            eku: eku.map(|eku| Eku {
                server_auth: eku.value.server_auth,
                client_auth: eku.value.client_auth,
                any: eku.value.any,
            }),
            uris,
            dns_names,
            other_sans,
            constraints: nc.map(|nc| constraints(nc.value)),
            unknown_critical,
            self_signed: self_issued && cert.verify_signature(None).is_ok(),
            ou: first(
                cert.subject()
                    .iter_organizational_unit()
                    .filter_map(|a| a.as_str().ok())
                    .collect(),
            ),
            cn: first(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|a| a.as_str().ok())
                    .collect(),
            ),
            fingerprint: fingerprint(der),
            key_algorithm: key_algorithm_name(cert),
        })
    }

    /// Root or cluster intermediate, from the subject Isthmus gives its CAs.
    pub fn ca_role(&self) -> CaRole {
        match (&self.ou, &self.cn) {
            (Some(ou), Some(cn)) if ou == CLUSTER_OU && dns_label("cluster", cn).is_ok() => {
                CaRole::Cluster(cn.clone())
            }
            _ => CaRole::Root,
        }
    }

    /// Whether this root was made by `isthmus ca init` (rather than imported).
    pub fn is_isthmus_root(&self) -> bool {
        self.ou.as_deref() == Some(ROOT_OU)
    }

    /// The trust domain named by a signing certificate's `spiffe://TD` URI SAN, if any.
    /// A signing certificate's SPIFFE ID must have no path (X.509-SVID §4.1).
    pub fn signing_trust_domain(&self) -> Result<Option<TrustDomain>, CaError> {
        let mut found = None;
        for uri in self.uris.iter().filter(|u| u.starts_with("spiffe://")) {
            let id = SpiffeId::parse(uri)?;
            if !id.path().is_empty() {
                return Err(CaError::BadCertificate(format!(
                    "a signing certificate's SPIFFE ID must have no path, found {uri}"
                )));
            }
            if found.replace(id.trust_domain().clone()).is_some() {
                return Err(CaError::BadCertificate(
                    "a signing certificate may carry one SPIFFE ID only".into(),
                ));
            }
        }
        Ok(found)
    }
}

fn constraints(nc: &NameConstraints<'_>) -> Constraints {
    let mut out = Constraints::default();
    for (subtrees, permitted) in [
        (&nc.permitted_subtrees, true),
        (&nc.excluded_subtrees, false),
    ] {
        if subtrees.as_ref().is_some_and(|s| s.is_empty()) {
            // RFC 5280 forbids an empty list; an empty permitted list must not read as
            // "unconstrained".
            out.unchecked_forms = true;
        }
        for subtree in subtrees.iter().flatten() {
            match (&subtree.base, permitted) {
                (GeneralName::URI(host), true) => out
                    .permitted_uri
                    .get_or_insert_with(Vec::new)
                    .push((*host).to_owned()),
                (GeneralName::URI(host), false) => out.excluded_uri.push((*host).to_owned()),
                (GeneralName::DNSName(dns), true) => out
                    .permitted_dns
                    .get_or_insert_with(Vec::new)
                    .push((*dns).to_owned()),
                (GeneralName::DNSName(dns), false) => out.excluded_dns.push((*dns).to_owned()),
                _ => out.unchecked_forms = true,
            }
        }
    }
    out
}

/// SHA-256 of `der`, lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn key_algorithm_name(cert: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match cert.public_key().parsed() {
        Ok(PublicKey::EC(point)) => match point.key_size() {
            256 => "ECDSA P-256".into(),
            384 => "ECDSA P-384".into(),
            bits => format!("ECDSA ({bits}-bit)"),
        },
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}-bit", rsa.key_size()),
        _ if cert.public_key().algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            "Ed25519".into()
        }
        _ => format!("other ({})", cert.public_key().algorithm.algorithm),
    }
}
