//! The Isthmus certificate authority: the root of trust of the mesh.
//!
//! ```text
//!  authority ── issues ──▶ root, cluster intermediates (direct or CSR), SPIFFE leaves
//!  bundle    ── holds  ──▶ the roots trusted now (several, for rotation) and retired ones
//!  verify    ── checks ──▶ a peer's chain against the bundle at `now` (pure), and
//!                          plugs into rustls as server and client verifier
//!  rotation  ── plans  ──▶ when to renew a certificate (pure)
//!  inspect   ── reads  ──▶ what a PEM file holds, with expiry warnings
//! ```
//!
//! Everything that depends on time takes `now` as an argument.

mod authority;
mod bundle;
mod cert;
mod error;
pub mod inspect;
mod keys;
pub mod pem;
pub mod policy;
pub mod rotation;
pub mod spiffe;
mod svid_files;
pub mod time;
pub mod verify;

pub use authority::{
    Authority, AuthorityKind, BACKDATE, CLUSTER_OU, IssuedLeaf, LeafRequest, ROOT_OU, cluster_csr,
};
pub use bundle::{Root, SharedBundle, TrustBundle};
pub use cert::{CaRole, CertFacts, CertParseError, Constraints, Eku, fingerprint};
pub use error::CaError;
pub use keys::{KeyAlgorithm, UnknownKeyAlgorithm, key_from_pem};
pub use spiffe::{Identity, SpiffeId, SpiffeIdError, TrustDomain};
pub use svid_files::{Svid, SvidFileError, SvidFiles};
