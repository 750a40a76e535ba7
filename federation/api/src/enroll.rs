//! The enrolling gateway's side of enrollment: fetch the roots, keep only the one the
//! token pins, then enroll over a connection verified against that root.

use std::sync::Arc;
use std::time::Duration;

use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::verify::tls::{SpiffeVerifier, provider};
use isthmus_ca::{SharedBundle, TrustBundle, TrustDomain};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::join::JoinToken;
use crate::proto;
use crate::proto::enrollment_client::EnrollmentClient;

/// Why enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// No enrollment address answered.
    #[error("no federation enrollment listener answered ({tried}): {last}")]
    Unreachable {
        /// The addresses tried.
        tried: String,
        /// The last error.
        last: String,
    },
    /// The federation's roots do not include the one the token pins: a wrong token or
    /// someone in the middle. Nothing secret was sent.
    #[error(
        "the federation at {addr} does not present the root the token pins (sha256 {pin}); refusing to send the token"
    )]
    PinMismatch {
        /// The address.
        addr: String,
        /// The pinned fingerprint.
        pin: String,
    },
    /// The federation refused the request.
    #[error("the federation refused enrollment: {0}")]
    Refused(String),
    /// A local TLS setup problem.
    #[error("TLS: {0}")]
    Tls(String),
}

/// Accepts any server certificate, checking only the handshake signature. Used only to
/// fetch the (public) roots, which are then checked against the token's pin.
#[derive(Debug)]
struct FetchOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for FetchOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn config(verifier: Arc<dyn ServerCertVerifier>) -> Result<Arc<rustls::ClientConfig>, EnrollError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| EnrollError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The cluster intermediate a gateway enrolls with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntermediateRequest {
    /// A CSR (PEM) for the federation's root to sign; the key stays with the gateway.
    Csr(String),
    /// An intermediate (PEM) the root holder already signed, for the federation to check.
    Signed(String),
}

impl From<IntermediateRequest> for proto::enroll_request::Intermediate {
    fn from(request: IntermediateRequest) -> Self {
        match request {
            IntermediateRequest::Csr(pem) => Self::CsrPem(pem),
            IntermediateRequest::Signed(pem) => Self::IntermediatePem(pem),
        }
    }
}

/// What enrollment gave.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The cluster the federation enrolled this gateway in.
    pub cluster: String,
    /// The cluster's intermediate certificate (PEM).
    pub intermediate_pem: String,
    /// The roots every member trusts now, received over a connection verified against
    /// the token's pinned root.
    pub bundle: TrustBundle,
    /// `host:port` of every federation node's admin gRPC listener.
    pub admin_addrs: Vec<String>,
}

/// Enrolls with `token`, trying its enrollment addresses in turn.
pub async fn enroll(
    token: &JoinToken,
    gateway_name: &str,
    gateway_address: &str,
    intermediate: IntermediateRequest,
    timeout: Duration,
) -> Result<Enrolled, EnrollError> {
    let intermediate = proto::enroll_request::Intermediate::from(intermediate);
    let mut last = String::from("no address");
    for addr in &token.enroll {
        match enroll_at(
            addr,
            token,
            gateway_name,
            gateway_address,
            intermediate.clone(),
            timeout,
        )
        .await
        {
            Ok(done) => return Ok(done),
            Err(Attempt::Final(e)) => return Err(e),
            Err(Attempt::Retry(e)) => {
                tracing::warn!(%addr, error = %e, "enrollment address failed; trying the next");
                last = e;
            }
        }
    }
    Err(EnrollError::Unreachable {
        tried: token.enroll.join(", "),
        last,
    })
}

enum Attempt {
    /// Another address may work.
    Retry(String),
    /// No point trying elsewhere.
    Final(EnrollError),
}

async fn enroll_at(
    addr: &str,
    token: &JoinToken,
    gateway_name: &str,
    gateway_address: &str,
    intermediate: proto::enroll_request::Intermediate,
    timeout: Duration,
) -> Result<Enrolled, Attempt> {
    let retry = |e: &dyn std::fmt::Display| Attempt::Retry(e.to_string());
    let fetch = config(Arc::new(FetchOnly(provider()))).map_err(Attempt::Final)?;
    let channel = crate::channel::channel(addr, fetch, Some(timeout)).map_err(|e| retry(&e))?;
    let roots = EnrollmentClient::new(channel)
        .get_roots(proto::GetRootsRequest {})
        .await
        .map_err(|e| retry(&e.message()))?
        .into_inner();
    let pinned = isthmus_ca::pem::certs_from_pem(&roots.roots)
        .ok()
        .and_then(|certs| {
            certs
                .into_iter()
                .find(|c| isthmus_ca::fingerprint(c) == token.root_sha256)
        })
        .ok_or_else(|| {
            Attempt::Final(EnrollError::PinMismatch {
                addr: addr.to_owned(),
                pin: token.root_sha256.clone(),
            })
        })?;
    let trust_domain = TrustDomain::new(&roots.trust_domain)
        .map_err(|e| Attempt::Final(EnrollError::Refused(e.to_string())))?;
    let bundle = TrustBundle::new(trust_domain.clone(), [pinned])
        .map_err(|e| Attempt::Final(EnrollError::Refused(e.to_string())))?;
    let verifier = SpiffeVerifier::new(
        SharedBundle::new(bundle),
        ExpectedIdentity::AnyFederationNode,
    );
    let verified = config(verifier).map_err(Attempt::Final)?;
    let channel = crate::channel::channel(addr, verified, Some(timeout)).map_err(|e| retry(&e))?;
    let request = proto::EnrollRequest {
        token: token.encode(),
        gateway_name: gateway_name.to_owned(),
        gateway_address: gateway_address.to_owned(),
        intermediate: Some(intermediate),
    };
    let reply = EnrollmentClient::new(channel)
        .enroll(request)
        .await
        .map_err(|status| match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
                Attempt::Retry(status.message().to_owned())
            }
            _ => Attempt::Final(EnrollError::Refused(status.message().to_owned())),
        })?
        .into_inner();
    // The reply came over a connection verified against the pinned root: its roots are
    // the federation's word.
    let bundle = TrustBundle::from_pem(trust_domain, &reply.roots)
        .map_err(|e| Attempt::Final(EnrollError::Refused(format!("roots in the reply: {e}"))))?;
    Ok(Enrolled {
        cluster: reply.cluster,
        intermediate_pem: reply.intermediate_pem,
        bundle,
        admin_addrs: reply.admin_addrs,
    })
}
