//! The Isthmus federation: what member clusters agree on, replicated with Raft.
//!
//! Today this crate holds the versioned wire form of the shared trust bundle
//! ([`proto`], generated at build time by protox without `protoc`) and its checked
//! conversion to and from the CA's [`isthmus_ca::TrustBundle`] ([`bundle`]). The
//! replicated catalog, its storage and the admin API come next.

pub mod bundle;

/// Generated protobuf types of `isthmus.federation.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("isthmus.federation.v1");
}
