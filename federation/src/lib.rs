//! The Isthmus federation: what member clusters agree on, replicated with Raft.
//!
//! - [`model`]: the versioned data model (clusters, exports, trust bundle, policies).
//! - [`command`]: catalog commands and their pure, deterministic application.
//! - [`validate`]: stateless input checks that name the field.
//! - [`store`]: the sled-backed Raft log and state machine.
//! - [`raft`]: openraft's type configuration.
//! - [`bundle`]: the trust bundle's protobuf form.

pub mod access;
pub mod bundle;
pub mod claims;
pub mod command;
pub mod config;
pub mod enroll;
pub mod enroll_client;
pub mod error;
pub mod grpc;
pub mod join;
pub mod metrics;
pub mod mirror;
pub mod model;
pub mod network;
pub mod node;
pub mod policy;
pub mod raft;
pub mod rest;
pub mod service;
pub mod store;
pub mod tls;
pub mod validate;
pub mod vet;

/// Generated protobuf types of `isthmus.federation.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("isthmus.federation.v1");
}
