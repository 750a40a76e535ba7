//! `isthmus config`: the JSON Schema of each config kind, and checking a file offline.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use isthmus_ca::policy::CaPolicyFile;
use isthmus_config::Validate;
use isthmus_federation::config::FederationConfigFile;
use isthmus_gateway::config::GatewayConfigFile;

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the JSON Schema of a config kind, generated from the parser's own types.
    Schema {
        /// Which config kind.
        kind: Kind,
    },
    /// Parse and validate a config file (.toml or .json); exit 1 with the problems.
    Check {
        /// Which config kind.
        kind: Kind,
        /// The file.
        file: PathBuf,
    },
}

/// The config kinds.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Kind {
    /// The CA policy: key algorithms, lifetimes, rotation, expiry warnings.
    Ca,
    /// A gateway: cluster, certificates, listeners, peers, exports, imports.
    Gateway,
    /// A federation node: id, name, data directory, listeners, certificates, Raft timing.
    Federation,
}

pub(crate) fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Schema { kind } => {
            let schema = match kind {
                Kind::Ca => isthmus_config::schema_of::<CaPolicyFile>(),
                Kind::Gateway => isthmus_config::schema_of::<GatewayConfigFile>(),
                Kind::Federation => isthmus_config::schema_of::<FederationConfigFile>(),
            };
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Check { kind, file } => match kind {
            Kind::Ca => check::<CaPolicyFile>(&file),
            Kind::Gateway => check::<GatewayConfigFile>(&file),
            Kind::Federation => check::<FederationConfigFile>(&file),
        },
    }
}

fn check<T: Validate>(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    match isthmus_config::load::<T>(file) {
        Ok(_) => {
            println!("{}: ok", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("error: {err}");
            Ok(ExitCode::from(1))
        }
    }
}
