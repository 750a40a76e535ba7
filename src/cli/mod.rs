//! Command-line definitions (clap) and the dispatch from each command to its handler.

mod ca;
mod config;
mod dev;
mod federation;
mod files;
mod gateway;
mod vet;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Isthmus: a multi-cluster mesh gateway and federation appliance.
#[derive(Debug, Parser)]
#[command(name = "isthmus", version, about, long_about = None)]
pub(crate) struct Cli {
    /// How diagnostic logs (stderr) are written: `text` for people, `json` (one object
    /// per line) for log shippers. The level is set by ISTHMUS_LOG or RUST_LOG.
    #[arg(long, global = true, value_enum, default_value_t = crate::logs::LogFormat::Text)]
    pub(crate) log_format: crate::logs::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The mesh CA: roots, cluster intermediates, SPIFFE certificates, inspection.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Config files: print the JSON Schema of a kind, or check a file.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Run an east-west gateway.
    #[command(subcommand)]
    Gateway(gateway::GatewayCommand),
    /// Benchmarks against a peer measured in the same run (not tests).
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Run and administer the federation service.
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Start a local mesh: a 3-node federation, clusters east and west with gateways,
    /// and a sample service exported by west; Ctrl-C stops it.
    Dev(dev::DevArgs),
    /// Check a directory of configs, policies and claims offline: the admission checks
    /// (exit 1 on findings).
    Vet(vet::VetArgs),
}

/// Runs one command; `Ok` carries the exit code for commands that report findings.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ca(command) => ca::run(command),
        Command::Config(command) => config::run(command),
        Command::Gateway(command) => gateway::run(command),
        Command::Federation(command) => federation::run(command),
        Command::Bench(command) => crate::bench::run(command),
        Command::Dev(args) => dev::run(args),
        Command::Vet(args) => vet::run(args),
    }
}
