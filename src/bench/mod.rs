//! `isthmus bench`: benchmarks that compare Isthmus with a peer measured in the same
//! run on the same machine, and print ratios (the machine is shared and noisy, so the
//! absolute numbers drift; the ratios much less). Not tests: nothing here passes or
//! fails. `docs/benchmarks.md` records the method and results.

mod chaos;
mod dns;
mod etcd;
mod federation;
mod ingress;
mod load;
mod soak;
mod systems;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// A 3-node federation against a 3-node etcd (Debian's etcd-server), both with
    /// fsync on: writes and linearizable reads per second with latency at N concurrent
    /// clients, and leader failover time.
    Federation(FederationArgs),
    /// A catalog change until it is in the DNS of every watching gateway (50 member
    /// gateways of a 3-node federation): p50 and p99.
    Propagation(dns::PropagationArgs),
    /// DNS queries per second of the gateway against dnsmasq and Knot (Debian packages)
    /// serving the same names, driven by dnsperf.
    Dns(dns::DnsArgs),
    /// HTTPS requests per second through the ingress against nginx doing the same job
    /// (TLS termination, proxy to one backend), driven by h2load over HTTP/1.1 and HTTP/2.
    Ingress(ingress::IngressArgs),
    /// The federation under seeded faults (kill, pause, partitions, one-way cuts,
    /// delay, stalls, a full disk) as processes, checked for linearizability, lost
    /// writes and watch gaps: one row per seed and the totals. Not a ratio: a pass or
    /// fail per seed.
    Chaos(chaos::ChaosArgs),
    /// A mesh under steady load for minutes while one long condition holds: a
    /// federation outage, one-minute leaves, a root rotation, or 10,000 connections.
    /// Zero failed exchanges is the pass; memory, descriptors and the catalog age are
    /// sampled.
    Soak(soak::SoakArgs),
}

/// Options of `isthmus bench federation`.
#[derive(Debug, Args)]
pub(crate) struct FederationArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub(crate) clients: usize,
    /// Connections the clients share, per system.
    #[arg(long, default_value_t = 8)]
    pub(crate) connections: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    pub(crate) seconds: u64,
    /// Interleaved rounds (the report shows medians).
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: usize,
    /// Leader kills per system.
    #[arg(long, default_value_t = 3)]
    pub(crate) failovers: usize,
    /// Run etcd with mutual TLS on client and peer links, certificates from the same
    /// root as the federation's (the like-for-like comparison).
    #[arg(long)]
    pub(crate) etcd_tls: bool,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    pub(crate) etcd: String,
}

impl FederationArgs {
    fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds)
    }
}

pub(crate) fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Federation(args) => federation::run(&args),
        BenchCommand::Propagation(args) => dns::propagation(&args),
        BenchCommand::Dns(args) => dns::dns(&args),
        BenchCommand::Ingress(args) => ingress::ingress(&args),
        BenchCommand::Chaos(args) => chaos::chaos(&args),
        BenchCommand::Soak(args) => soak::soak(&args),
    }
}
