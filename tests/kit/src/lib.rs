//! Test and demo support, kept out of the product libraries: a whole mesh on loopback
//! in one process ([`mesh::DevMesh`]: a root CA, a federation, clusters whose gateways
//! enroll with join tokens) — what `isthmus dev` runs and the mesh tests drive — a tiny
//! HTTP echo server, a hand-made peer gateway ([`peer`]), machine-wide claims on the
//! loopback ranges meshes import into ([`loopback`]), and the test PKI
//! ([`pki::TestPki`]: a root, intermediates per cluster, leaves in memory or as files).
//!
//! The mesh is driven the way an operator drives one: through the federation's admin
//! API with an admin certificate (the typed client), never by writing into Raft.

pub mod chaos;
pub mod echo;
pub mod loopback;
pub mod mesh;
pub mod peer;
pub mod pki;
pub mod rotation;
pub mod soak;
mod wait;

pub use echo::{byte_echo_server, echo_server};
pub use mesh::{ClusterSpec, DevMesh, DevMeshError, ExportSpec};
pub use pki::{Leaf, PkiError, TestPki};
