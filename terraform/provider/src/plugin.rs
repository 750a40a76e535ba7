//! go-plugin's side of the handshake, as Terraform expects it of a provider: the magic
//! cookie, a unix socket in a directory only this user may enter, a self-signed server
//! certificate sent on the handshake line (`1|6|unix|PATH|grpc|CERT`, the DER in base64
//! without padding), and mutual TLS 1.3 in which the one client accepted is the
//! certificate Terraform passed in `PLUGIN_CLIENT_CERT`.
//!
//! Terraform's certificate is a self-signed ECDSA P-521 CA certificate that signs with
//! SHA-512: the stock verifiers refuse a CA as a client and ring verifies no P-521, so
//! the verifier here pins the exact certificate and checks its signature with the
//! `p521` crate.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::SignatureScheme;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};

/// go-plugin's cookie for Terraform plugins.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// Its value.
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// Why the provider cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Not started by Terraform.
    #[error(
        "this binary is a Terraform provider: Terraform starts it (install it into a provider mirror, docs/terraform.md)"
    )]
    NotAPlugin,
    /// Terraform does not speak protocol 6.
    #[error(
        "Terraform offers plugin protocols {0:?}; this provider speaks 6 (Terraform 1.0 or later)"
    )]
    NoProtocol(String),
    /// No client certificate to pin.
    #[error(
        "PLUGIN_CLIENT_CERT is not set: Terraform's plugin TLS is off (TF_DISABLE_PLUGIN_TLS); this provider refuses to serve without it"
    )]
    NoClientCert,
    /// A client certificate that does not parse.
    #[error("PLUGIN_CLIENT_CERT: {0}")]
    BadClientCert(String),
    /// The server certificate or TLS setup.
    #[error("TLS: {0}")]
    Tls(String),
    /// The socket.
    #[error("socket {path}: {source}")]
    Socket {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What the environment Terraform started us in says.
#[derive(Debug)]
pub struct Host {
    /// Terraform's client certificate.
    pub client_cert: CertificateDer<'static>,
}

impl Host {
    /// Reads the handshake environment (`env` is `std::env::var` in the binary).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, HandshakeError> {
        if env(MAGIC_COOKIE_KEY).as_deref() != Some(MAGIC_COOKIE_VALUE) {
            return Err(HandshakeError::NotAPlugin);
        }
        let versions = env("PLUGIN_PROTOCOL_VERSIONS").unwrap_or_default();
        if !versions.split(',').any(|v| v.trim() == "6") {
            return Err(HandshakeError::NoProtocol(versions));
        }
        let pem = env("PLUGIN_CLIENT_CERT").ok_or(HandshakeError::NoClientCert)?;
        let block =
            pem::parse(pem.as_bytes()).map_err(|e| HandshakeError::BadClientCert(e.to_string()))?;
        if block.tag() != "CERTIFICATE" {
            return Err(HandshakeError::BadClientCert(format!(
                "a {} block, not a CERTIFICATE",
                block.tag()
            )));
        }
        Ok(Self {
            client_cert: CertificateDer::from(block.into_contents()),
        })
    }
}

/// The server side of the plugin TLS: its config and the certificate for the line.
pub struct ServerTls {
    /// The rustls config (TLS 1.3, ALPN h2, the pinned client).
    pub config: Arc<rustls::ServerConfig>,
    /// The server certificate's DER.
    pub cert: CertificateDer<'static>,
}

impl ServerTls {
    /// A fresh self-signed `localhost` certificate and a config that accepts only
    /// `client`.
    pub fn new(client: CertificateDer<'static>) -> Result<Self, HandshakeError> {
        let tls = |e: &dyn std::fmt::Display| HandshakeError::Tls(e.to_string());
        let key =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| tls(&e))?;
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).map_err(|e| tls(&e))?;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(60)).into();
        params.not_after = (now + std::time::Duration::from_secs(86_400)).into();
        let cert = params.self_signed(&key).map_err(|e| tls(&e))?;
        let cert = cert.der().clone();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedClient {
            expected: client,
            provider: provider.clone(),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls(&e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(|e| tls(&e))?;
        // grpc-go (Terraform 1.15) refuses a TLS connection without ALPN.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            cert,
        })
    }
}

/// The handshake line Terraform reads on the provider's stdout.
pub fn handshake_line(socket: &std::path::Path, cert: &CertificateDer<'_>) -> String {
    format!(
        "1|6|unix|{}|grpc|{}\n",
        socket.display(),
        data_encoding::BASE64_NOPAD.encode(cert.as_ref())
    )
}

/// Accepts exactly one client certificate, whose signature it checks itself for
/// P-521 (the one Terraform uses) and through ring for the rest.
#[derive(Debug)]
struct PinnedClient {
    expected: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for PinnedClient {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.expected.as_ref() && intermediates.is_empty() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The config offers TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ECDSA_NISTP521_SHA512 {
            return rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            );
        }
        use p521::ecdsa::signature::Verifier;
        let bad = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature);
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| bad())?;
        let point = parsed.public_key().subject_public_key.data.as_ref();
        let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| bad())?;
        let signature = p521::ecdsa::Signature::from_der(dss.signature()).map_err(|_| bad())?;
        key.verify(message, &signature).map_err(|_| bad())?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        let mut schemes = self
            .provider
            .signature_verification_algorithms
            .supported_schemes();
        schemes.push(SignatureScheme::ECDSA_NISTP521_SHA512);
        schemes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_terraform_may_start_it() {
        let env = |cookie: &'static str, versions: &'static str, cert: Option<String>| {
            move |k: &str| match k {
                MAGIC_COOKIE_KEY => Some(cookie.to_owned()),
                "PLUGIN_PROTOCOL_VERSIONS" => Some(versions.to_owned()),
                "PLUGIN_CLIENT_CERT" => cert.clone(),
                _ => None,
            }
        };
        assert!(matches!(
            Host::from_env(env("nope", "6", None)),
            Err(HandshakeError::NotAPlugin)
        ));
        assert!(matches!(
            Host::from_env(env(MAGIC_COOKIE_VALUE, "4,5", None)),
            Err(HandshakeError::NoProtocol(_))
        ));
        assert!(matches!(
            Host::from_env(env(MAGIC_COOKIE_VALUE, "5,6", None)),
            Err(HandshakeError::NoClientCert)
        ));
        assert!(matches!(
            Host::from_env(env(MAGIC_COOKIE_VALUE, "6,5", Some("junk".into()))),
            Err(HandshakeError::BadClientCert(_))
        ));
    }

    #[test]
    fn the_line_carries_the_der_without_padding() {
        let line = handshake_line(
            std::path::Path::new("/tmp/p/plugin.sock"),
            &CertificateDer::from(vec![1u8, 2, 3, 4]),
        );
        assert_eq!(line, "1|6|unix|/tmp/p/plugin.sock|grpc|AQIDBA\n");
    }
}
