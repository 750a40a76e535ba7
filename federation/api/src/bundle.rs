//! Converting the trust bundle between the CA's type and its protobuf form. Decoding
//! checks every certificate and names the field that is wrong.

use isthmus_ca::{CaError, SpiffeIdError, TrustBundle, TrustDomain};
use prost::Message;
use rustls_pki_types::CertificateDer;

use crate::proto;

/// Why a protobuf trust bundle was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleDecodeError {
    /// The bytes are not a `TrustBundle` message.
    #[error("not a TrustBundle message: {0}")]
    Wire(#[from] prost::DecodeError),
    /// `trust_domain` is invalid.
    #[error("field `trust_domain`: {0}")]
    TrustDomain(#[from] SpiffeIdError),
    /// A root or retired root is unusable.
    #[error("field `{field}`: {source}")]
    Certificate {
        /// For example `roots[1]`.
        field: String,
        /// What is wrong with it.
        source: CaError,
    },
    /// `roots` is empty.
    #[error("field `roots`: a trust bundle needs at least one root")]
    NoRoots,
}

/// The protobuf form of `bundle`.
pub fn to_proto(bundle: &TrustBundle) -> proto::TrustBundle {
    proto::TrustBundle {
        trust_domain: bundle.trust_domain().to_string(),
        roots: bundle.roots().iter().map(|r| r.der.to_vec()).collect(),
        retired_roots: bundle.retired().iter().map(|r| r.der.to_vec()).collect(),
    }
}

/// The CA's bundle from its protobuf form, every certificate checked.
pub fn from_proto(message: proto::TrustBundle) -> Result<TrustBundle, BundleDecodeError> {
    let trust_domain = TrustDomain::new(&message.trust_domain)?;
    let mut roots = message.roots.into_iter().enumerate();
    let (_, first) = roots.next().ok_or(BundleDecodeError::NoRoots)?;
    fn field(name: &'static str, i: usize) -> impl FnOnce(CaError) -> BundleDecodeError {
        move |source| BundleDecodeError::Certificate {
            field: format!("{name}[{i}]"),
            source,
        }
    }
    let mut bundle =
        TrustBundle::new(trust_domain, [CertificateDer::from(first)]).map_err(field("roots", 0))?;
    for (i, der) in roots {
        bundle
            .add_root(CertificateDer::from(der))
            .map_err(field("roots", i))?;
    }
    for (i, der) in message.retired_roots.into_iter().enumerate() {
        bundle
            .add_retired(CertificateDer::from(der))
            .map_err(field("retired_roots", i))?;
    }
    Ok(bundle)
}

/// Encodes `bundle` as protobuf bytes.
pub fn encode(bundle: &TrustBundle) -> Vec<u8> {
    to_proto(bundle).encode_to_vec()
}

/// Decodes and checks protobuf bytes.
pub fn decode(bytes: &[u8]) -> Result<TrustBundle, BundleDecodeError> {
    from_proto(proto::TrustBundle::decode(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_ca::{Authority, KeyAlgorithm};
    use std::time::{Duration, SystemTime};

    fn root(td: &TrustDomain) -> Authority {
        Authority::new_root(
            td,
            KeyAlgorithm::EcdsaP256,
            Duration::from_secs(86_400),
            SystemTime::now(),
        )
        .unwrap()
    }

    #[test]
    fn round_trips_roots_and_retired_roots() {
        let td = TrustDomain::new("mesh.example").unwrap();
        let (a, b) = (root(&td), root(&td));
        let mut bundle = TrustBundle::new(td, [a.cert().clone(), b.cert().clone()]).unwrap();
        bundle
            .retire_root(&isthmus_ca::fingerprint(a.cert()))
            .unwrap();
        let back = decode(&encode(&bundle)).unwrap();
        assert_eq!(back.to_pem(), bundle.to_pem());
        assert_eq!(back.retired().len(), 1);
        assert_eq!(back.retired()[0].der, *a.cert());
    }

    #[test]
    fn bad_fields_are_named() {
        let td = TrustDomain::new("mesh.example").unwrap();
        let good = root(&td).cert().to_vec();
        let cases = [
            (
                proto::TrustBundle {
                    trust_domain: "Mesh".into(),
                    roots: vec![good.clone()],
                    retired_roots: vec![],
                },
                "field `trust_domain`",
            ),
            (
                proto::TrustBundle {
                    trust_domain: "mesh.example".into(),
                    roots: vec![],
                    retired_roots: vec![],
                },
                "field `roots`",
            ),
            (
                proto::TrustBundle {
                    trust_domain: "mesh.example".into(),
                    roots: vec![good.clone(), vec![1, 2, 3]],
                    retired_roots: vec![],
                },
                "field `roots[1]`",
            ),
            (
                proto::TrustBundle {
                    trust_domain: "mesh.example".into(),
                    roots: vec![good.clone()],
                    retired_roots: vec![vec![0]],
                },
                "field `retired_roots[0]`",
            ),
            (
                proto::TrustBundle {
                    trust_domain: "other.example".into(),
                    roots: vec![good],
                    retired_roots: vec![],
                },
                "field `roots[0]`",
            ),
        ];
        for (message, expected) in cases {
            let err = from_proto(message).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        assert!(matches!(
            decode(&[0xff, 0xff]),
            Err(BundleDecodeError::Wire(_))
        ));
    }
}
