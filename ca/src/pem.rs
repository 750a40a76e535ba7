//! PEM in and out: certificate lists and the files the CLI writes.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::CaError;

/// Every `CERTIFICATE` block of `text`, in order; other blocks are refused so that a
/// key pasted into a certificate file is noticed.
pub fn certs_from_pem(text: &str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    use rustls_pki_types::pem::SectionKind;
    let mut certs = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes()) {
        match item {
            Ok((SectionKind::Certificate, der)) => certs.push(CertificateDer::from(der)),
            Ok((kind, _)) => {
                return Err(CaError::BadCertificate(format!(
                    "expected only CERTIFICATE blocks, found a {kind:?} block"
                )));
            }
            Err(e) => return Err(CaError::BadCertificate(format!("malformed PEM: {e}"))),
        }
    }
    Ok(certs)
}

/// Certificates as concatenated PEM blocks.
pub fn certs_to_pem<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'static>>) -> String {
    certs
        .into_iter()
        .map(|der| pem_block("CERTIFICATE", der.as_ref()))
        .collect()
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_every_length() {
        let certs: Vec<CertificateDer<'static>> = (0..70u8)
            .map(|n| CertificateDer::from((0..n).collect::<Vec<u8>>()))
            .filter(|c| !c.is_empty())
            .collect();
        let text = certs_to_pem(&certs);
        assert_eq!(certs_from_pem(&text).unwrap(), certs);
    }

    #[test]
    fn refuses_keys_in_certificate_files() {
        let text = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(certs_from_pem(text).is_err());
    }
}
