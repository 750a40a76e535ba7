//! Isthmus gateways: east-west, ingress and egress, carrying service traffic between
//! clusters inside QUIC connections authenticated with mutual TLS.
//!
//! Today this crate holds the QUIC endpoint configuration that every gateway-to-gateway
//! connection uses ([`quic`]); the tunnel, listeners and load balancing come next.

pub mod quic;
