//! The federation under faults, as processes: [`run`] starts three or five
//! `isthmus federation serve` processes, puts load on them over gRPC and REST while a
//! seeded schedule kills, pauses, partitions, slows and starves them of disk, then heals
//! everything and checks what the clients and watchers recorded: linearizability per
//! key ([`linearizable`]), the fast necessary checks ([`necessary`]), the watch rules
//! ([`watch_rules`]) and that the nodes agree. The test target runs a few short seeds;
//! `isthmus bench chaos` runs many and prints a table.
//!
//! A seed fixes the faults, their order and offsets, and each client's calls; the
//! processes' own timing still varies, so a failing seed replays its faults, not its
//! exact interleaving.

pub mod history;
pub mod linearizable;
pub mod necessary;
pub mod nodes;
pub mod proxy;
pub mod reference;
mod run;
pub mod schedule;
pub mod watch_rules;
pub mod workload;

pub use run::{Options, Report, run};

/// Why a run could not be made (not a finding: the federation was never tested).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// A file or socket.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The test PKI.
    #[error("{0}")]
    Pki(#[from] crate::pki::PkiError),
    /// Starting or joining the nodes, or healing them at the end.
    #[error("{0}")]
    Setup(String),
}
