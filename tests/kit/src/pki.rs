//! Certificates for tests and the dev mesh, issued by the CA crate.

use std::time::{Duration, SystemTime};

use isthmus_ca::{Authority, KeyAlgorithm, LeafRequest, SpiffeId};

use crate::DevMeshError;

fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> DevMeshError + '_ {
    move |e| DevMeshError(format!("{what}: {e}"))
}

/// Issues a leaf for `id` from `ca`: (chain PEM, key PEM).
pub fn leaf_pem(
    ca: &Authority,
    id: &str,
    lifetime: Duration,
) -> Result<(String, String), DevMeshError> {
    let issued = ca
        .issue_leaf(
            &LeafRequest {
                id: SpiffeId::parse(id).map_err(err("SPIFFE ID"))?,
                lifetime,
                dns_names: if id.contains("/ns/") {
                    vec![]
                } else {
                    vec!["localhost".into()]
                },
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            SystemTime::now(),
        )
        .map_err(err("issuing a leaf"))?;
    let chain = isthmus_ca::pem::certs_to_pem(std::iter::once(&issued.cert).chain(&issued.chain));
    Ok((chain, issued.key.serialize_pem()))
}
