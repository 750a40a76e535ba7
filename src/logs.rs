//! Diagnostic logs on stderr: what a person running the binary should read, and the
//! same as JSON lines for a log shipper. (The access log, one line per connection, is
//! the gateway's own: `[access_log]`.)
//!
//! At the default level a line means something to act on or to know: our own crates log
//! at `info`, libraries at `warn`, and the races openraft reports as warnings while a
//! cluster forms or changes membership (a vote or membership that moved on before a
//! reply arrived: routine, and handled) are demoted to `debug`. `ISTHMUS_LOG` (or
//! `RUST_LOG`) replaces the whole filter, `ISTHMUS_LOG=debug` shows everything.

use tracing_subscriber::EnvFilter;

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable text (coloured on a terminal).
    Text,
    /// One JSON object per line: timestamp, level, target, fields.
    Json,
}

/// The filter when neither variable is set.
pub(crate) const DEFAULT_FILTER: &str = "warn,isthmus=info,isthmus_ca=info,isthmus_config=info,\
isthmus_federation=info,isthmus_federation_api=info,isthmus_gateway=info,isthmus_testkit=info,\
openraft::core::raft_core=error";

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogInitError {
    /// The filter in the environment does not parse.
    #[error("{var}: {source} (a filter such as \"info\" or \"warn,isthmus_gateway=debug\")")]
    Filter {
        /// Which variable.
        var: &'static str,
        /// Why.
        source: tracing_subscriber::filter::ParseError,
    },
}

/// Installs the process's log writer.
pub(crate) fn init(format: LogFormat) -> Result<(), LogInitError> {
    let filter = filter()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    Ok(())
}

fn filter() -> Result<EnvFilter, LogInitError> {
    for var in ["ISTHMUS_LOG", "RUST_LOG"] {
        if let Ok(text) = std::env::var(var)
            && !text.trim().is_empty()
        {
            return EnvFilter::try_new(&text)
                .map_err(|source| LogInitError::Filter { var, source });
        }
    }
    Ok(EnvFilter::new(DEFAULT_FILTER))
}
