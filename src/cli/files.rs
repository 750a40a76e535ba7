//! Writing CA output files: never over an existing file, keys readable by the owner only.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Whether a file holds a secret (written with mode 0600).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secrecy {
    /// Certificates, bundles, CSRs.
    Public,
    /// Private keys.
    Secret,
}

/// Creates `dir` if needed and refuses when any of `names` already exists in it, so that
/// a command either writes all its files or none.
pub(crate) fn prepare(dir: &Path, names: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        bail!(
            "{} already exists; refusing to overwrite it (choose another --out directory or move it away)",
            existing.display()
        );
    }
    Ok(paths)
}

/// Writes a new file; fails if it exists.
pub(crate) fn write_new(path: &Path, contents: &str, secrecy: Secrecy) -> anyhow::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secrecy == Secrecy::Secret {
            0o600
        } else {
            0o644
        });
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a text file, naming it in the error.
pub(crate) fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
