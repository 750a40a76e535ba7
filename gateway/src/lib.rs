//! Isthmus gateways: carry TCP connections between clusters, each inside a stream of a
//! QUIC connection between the two clusters' gateways, authenticated both ways with
//! SPIFFE certificates.
//!
//! Pure cores: [`header`] (stream header codec), [`sni`] (ClientHello server name),
//! `admission` (whether a tunnel stream or an ingress request may go, and where),
//! [`authz`] (the policy in force, connection limits), [`balancer`] (endpoint choice and
//! outlier detection), [`backoff`], [`config`] (validation), [`names`] (which DNS names
//! a gateway answers) and [`addresses`] (an address per imported service). [`dns`]
//! serves `clusterset.local` from a live table.
//!
//! IO around them: [`Gateway`] is the whole life of one gateway (start binds every
//! listener and returns the addresses; run serves; drain stops), over the [`quic`]
//! endpoint, the [`peers`] pool, the inbound and outbound sides, [`ingress`], [`egress`],
//! [`splice`], [`metrics`] and, for a federation member, [`membership`].

pub mod access_log;
pub mod addresses;
mod admission;
pub mod authz;
pub mod backoff;
pub mod balancer;
pub mod catalog;
pub mod config;
mod connections;
pub mod dns;
pub mod egress;
mod endpoints;
pub mod gateway;
pub mod header;
pub mod identity;
mod inbound;
pub mod ingress;
pub mod live_cert;
pub mod membership;
pub mod metrics;
pub mod names;
mod open_tunnels;
mod outbound;
pub mod peers;
mod prefixed;
pub mod quic;
pub mod recheck;
pub mod sni;
pub mod splice;
pub mod stream;
pub mod telemetry;
mod traffic;
pub mod udp_socket;
mod upstream;
pub mod workload_api;
mod workload_mtls;

pub use gateway::{Addresses, DrainReport, Gateway, GatewayTls, StartError};
