//! `isthmus ca inspect`: what a PEM file holds, how its certificates chain, and warnings
//! for CA certificates near expiry. Pure: the caller passes `now`.

use std::fmt;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;

use crate::authority::parse_x509;
use crate::cert::{CaRole, CertFacts};
use crate::error::CaError;
use crate::time::{Rfc3339, from_unix_seconds, unix_seconds};

/// One certificate of an inspected file.
#[derive(Debug, Clone)]
pub struct CertReport {
    /// Its facts.
    pub facts: CertFacts,
    /// Root, cluster intermediate, other CA, or leaf.
    pub kind: String,
    /// How it links to the next certificate of the file.
    pub chain: String,
}

/// What a file holds.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Each certificate, in file order.
    pub certs: Vec<CertReport>,
    /// Expiry warnings.
    pub warnings: Vec<String>,
}

/// Inspects `certs` (a leaf then its chain, a bundle, or a single CA) at `now`; warns
/// about CA certificates that expire within `warn_within`.
pub fn inspect(
    certs: &[CertificateDer<'_>],
    now: SystemTime,
    warn_within: Duration,
) -> Result<Inspection, CaError> {
    if certs.is_empty() {
        return Err(CaError::BadCertificate(
            "the file holds no certificate".into(),
        ));
    }
    let parsed = certs
        .iter()
        .enumerate()
        .map(|(i, der)| {
            let x509 = parse_x509(der)
                .map_err(|e| CaError::BadCertificate(format!("certificate #{i}: {e}")))?;
            let facts = CertFacts::from_x509(&x509, der)
                .map_err(|e| CaError::BadCertificate(format!("certificate #{i}: {e}")))?;
            Ok((x509, facts))
        })
        .collect::<Result<Vec<_>, CaError>>()?;
    let now_secs = unix_seconds(now);
    let mut reports = Vec::new();
    let mut warnings = Vec::new();
    for (i, (x509, facts)) in parsed.iter().enumerate() {
        let kind = match (facts.is_ca, facts.ca_role(), facts.self_signed) {
            (false, _, _) => "leaf".to_owned(),
            (true, CaRole::Cluster(cluster), _) => format!("cluster intermediate CA ({cluster})"),
            (true, CaRole::Root, true) => "root CA".to_owned(),
            (true, CaRole::Root, false) => "intermediate CA".to_owned(),
        };
        let chain = if facts.self_signed {
            "self-signed".to_owned()
        } else if let Some((next_x509, next)) = parsed.get(i + 1) {
            let signed = x509.verify_signature(Some(next_x509.public_key())).is_ok();
            match (next.subject_raw == facts.issuer_raw, signed) {
                (true, true) => format!("issued by #{} (signature verifies)", i + 1),
                (true, false) => format!(
                    "names #{} as issuer but its signature does NOT verify",
                    i + 1
                ),
                (false, _) => format!("issued by {} (not in this file)", facts.issuer),
            }
        } else {
            format!("issued by {} (not in this file)", facts.issuer)
        };
        if facts.is_ca {
            let left = facts.not_after - now_secs;
            let end = Rfc3339(from_unix_seconds(facts.not_after));
            if left < 0 {
                warnings.push(format!("{kind} {} EXPIRED at {end}", facts.subject));
            } else if left <= i64::try_from(warn_within.as_secs()).unwrap_or(i64::MAX) {
                warnings.push(format!(
                    "{kind} {} expires in {} days (at {end}); renew it before then",
                    facts.subject,
                    left / 86_400
                ));
            }
        }
        reports.push(CertReport {
            facts: facts.clone(),
            kind,
            chain,
        });
    }
    Ok(Inspection {
        certs: reports,
        warnings,
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, report) in self.certs.iter().enumerate() {
            let c = &report.facts;
            writeln!(f, "#{i}: {}", report.kind)?;
            writeln!(f, "  subject:     {}", c.subject)?;
            writeln!(f, "  issuer:      {}", c.issuer)?;
            for uri in &c.uris {
                let label = if uri.starts_with("spiffe://") {
                    "spiffe id"
                } else {
                    "uri san"
                };
                writeln!(f, "  {label}:   {uri}")?;
            }
            for dns in &c.dns_names {
                writeln!(f, "  dns san:     {dns}")?;
            }
            writeln!(
                f,
                "  not before:  {}",
                Rfc3339(from_unix_seconds(c.not_before))
            )?;
            writeln!(
                f,
                "  not after:   {}",
                Rfc3339(from_unix_seconds(c.not_after))
            )?;
            writeln!(f, "  key:         {}", c.key_algorithm)?;
            writeln!(f, "  serial:      {}", c.serial)?;
            writeln!(f, "  sha256:      {}", c.fingerprint)?;
            writeln!(f, "  chain:       {}", report.chain)?;
        }
        Ok(())
    }
}
