//! The `isthmus` binary: parses the command line and dispatches to the components.
//! Errors from the libraries are printed here with their full chain of causes.

#![forbid(unsafe_code)]

mod bench;
mod cli;
mod logs;
mod vet;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // One process-wide rustls provider (ring) for every TLS user: quinn, tonic, tokio-rustls.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = cli::Cli::parse();
    if let Err(err) = logs::init(args.log_format) {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
