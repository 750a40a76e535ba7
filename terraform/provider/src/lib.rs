//! The Terraform provider of an Isthmus federation as a library: what the
//! `terraform-provider-isthmus` binary serves ([`provider`], [`proto`]) and how it meets
//! Terraform ([`plugin`]). The binary is the thin edge; the library is also what the
//! fuzz target of Terraform values drives (`gateway/fuzz`, `terraform_values`).
//!
//! ```text
//!  terraform ──unix socket, TLS 1.3, pinned client──▶ server ──▶ resources ──▶ FederationClient ──gRPC──▶ federation
//!                                                       │
//!                                             schema (plan) · value (msgpack)
//! ```

mod diag;
pub mod plugin;
mod resource;
mod resources;
mod schema;
mod server;
mod settings;
pub mod value;

pub use server::IsthmusProvider;

/// Generated types of `tfplugin6`.
#[allow(
    missing_docs,
    unreachable_pub,
    dead_code,
    clippy::all,
    clippy::pedantic
)]
pub mod proto {
    tonic::include_proto!("tfplugin6");
}

/// The provider with every resource and data source, not yet configured.
pub fn provider() -> IsthmusProvider {
    IsthmusProvider::new(resources::all(), resources::data_sources())
}
