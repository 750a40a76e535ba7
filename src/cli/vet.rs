//! `isthmus vet DIR`: the admission checks, offline (`crate::vet`). Prints one
//! line per finding (`FILE: FIELD: MESSAGE`) or JSON; exits 1 when there are findings.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// How findings are printed.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// One line per finding.
    Text,
    /// `{"files": N, "findings": [{"file", "field", "message"}]}`.
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct VetArgs {
    /// A directory of gateway and federation configs (.toml, .json), policy documents
    /// (NAME.policy.json) and traffic claims (claims.toml or claims.json).
    dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: OutputFormat,
}

pub(crate) fn run(args: VetArgs) -> anyhow::Result<ExitCode> {
    if !args.dir.is_dir() {
        anyhow::bail!("{}: not a directory", args.dir.display());
    }
    let (findings, files) = crate::vet::vet_dir(&args.dir)
        .with_context(|| format!("vetting {}", args.dir.display()))?;
    match args.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({ "files": files, "findings": findings })
        ),
        OutputFormat::Text => {
            for f in &findings {
                println!("{}: {}: {}", f.file, f.field, f.message);
            }
            eprintln!("{files} file(s) vetted, {} finding(s)", findings.len());
        }
    }
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
