//! Isthmus gateways: carry TCP connections between clusters, each inside a stream of a
//! QUIC connection between the two clusters' gateways, authenticated both ways with
//! SPIFFE certificates.
//!
//! Pure cores: [`header`] (stream header codec), [`sni`] (ClientHello server name),
//! [`balancer`] (endpoint choice and outlier detection), [`config`] (validation),
//! [`names`] (which DNS names a gateway answers) and [`addresses`] (an address per
//! imported service). [`dns`] serves `clusterset.local` from a live table.
//! IO around them: [`gateway`] wires the [`quic`] endpoint, [`peers`] pool, inbound and
//! outbound sides, [`splice`] and [`metrics`].

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
mod outbound;
pub mod peers;
pub mod quic;
pub mod recheck;
pub mod sni;
pub mod splice;
pub mod stream;
mod upstream;

pub use gateway::{Addresses, DrainReport, Gateway, GatewayTls, StartError};
