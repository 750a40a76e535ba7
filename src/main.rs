//! The `isthmus` binary: parses the command line and dispatches to the components.
//! Errors from the libraries are printed here with their full chain of causes.

#![forbid(unsafe_code)]

mod bench;
mod cli;
mod vet;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // One process-wide rustls provider (ring) for every TLS user: quinn, tonic, tokio-rustls.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ISTHMUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
