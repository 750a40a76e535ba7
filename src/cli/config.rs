//! `isthmus config`: the JSON Schema of each config kind, and checking a file offline.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use isthmus_ca::policy::CaPolicyFile;

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

/// The config kinds that exist today; gateway and federation kinds come with their
/// components.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Kind {
    /// The CA policy: key algorithms, lifetimes, rotation, expiry warnings.
    Ca,
}

pub(crate) fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Schema { kind: Kind::Ca } => {
            let schema = isthmus_config::schema_of::<CaPolicyFile>();
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Check {
            kind: Kind::Ca,
            file,
        } => match isthmus_config::load::<CaPolicyFile>(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => {
                eprintln!("error: {err}");
                Ok(ExitCode::from(1))
            }
        },
    }
}
