//! The Isthmus federation server: what member clusters agree on, replicated with Raft.
//! The data model, the policy language and the admin protocol are the API crate's
//! (`isthmus-federation-api`); this crate decides and stores.
//!
//! ```text
//!   gRPC face (grpc) ─┐
//!                     ├─▶ admin (one operation layer) ─▶ service (reads, writes, watch)
//!   REST face (rest) ─┘        │ access (roles)               │ Raft (openraft)
//!                              ▼                              ▼
//!                         enroll (join tokens)      command (pure apply) ─▶ store (sled)
//! ```
//!
//! - [`admin`]: every admin operation once: (caller, request) → answer.
//! - [`grpc`], [`rest`]: the two faces; conversions and a call each.
//! - [`access`]: who may call, and what each role may do (pure).
//! - [`command`]: catalog commands and their pure, deterministic application.
//! - [`service`]: writes through Raft, linearizable reads, membership, the watch.
//! - [`store`]: the sled-backed Raft log and state machine, and its data model version.
//! - [`network`], [`tls`], [`node`]: Raft RPC, mutual TLS, starting and stopping a node.

pub mod access;
pub mod admin;
pub mod alerts;
pub mod command;
pub mod config;
pub mod enroll;
#[cfg(feature = "testing")]
pub mod faults;
pub mod grpc;
pub mod mesh;
pub mod metrics;
pub mod network;
pub mod node;
pub mod raft;
pub mod rest;
pub mod service;
pub mod store;
pub mod tls;
pub mod ui;

/// Generated protobuf types of the node-to-node Raft protocol (`raft.proto`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("isthmus.federation.v1");
}
