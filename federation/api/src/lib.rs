//! What every client of an Isthmus federation shares with it: the data model, the policy
//! language, the checks that name a field, the admin protocol (protobuf and its
//! conversions), the watch mirror, the enrollment client and a typed
//! [`client::FederationClient`]. Gateways, the CLI and tests depend on this crate only;
//! the Raft server (`isthmus-federation`) depends on it too, so both sides speak one
//! model.
//!
//! ```text
//!  model, policy, claims ──▶ validate, vet ──▶ request (admin operations, typed)
//!                                   │                    │
//!                                   ▼                    ▼
//!                          convert (protobuf) ──▶ client (gRPC) · mirror (watch)
//! ```
//!
//! Pure: [`model`], [`policy`], [`claims`], [`validate`], [`vet`], [`join`],
//! [`mirror`], [`convert`]. IO: [`channel`], [`enroll`], [`client`].

pub mod alerts;
pub mod bundle;
pub mod channel;
pub mod claims;
pub mod client;
pub mod convert;
pub mod enroll;
pub mod error;
pub mod join;
pub mod json;
pub mod mesh;
pub mod mesh_wire;
pub mod mirror;
pub mod model;
pub mod policy;
pub mod registration;
pub mod request;
pub mod schema;
pub mod status;
pub mod validate;
pub mod vet;
pub mod watch;

pub use error::ApiError;

/// Generated protobuf types of `isthmus.federation.v1`: the admin API, enrollment and
/// the trust bundle.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("isthmus.federation.v1");
}
