//! Machine-wide claims on the loopback ranges a mesh's clusters import into.
//!
//! The tests name fixed ranges (`127.77.0.0/16`, ...), different for each test, and an
//! import's address is the same on every run. Two processes running the same test at
//! once (a release and a debug run of the suite side by side) would both bind the same
//! import address: the second bind fails, that cluster serves no name for the service,
//! and the test fails far from the cause. A claim is an advisory `flock` on a file named
//! after the range, held while the mesh lives; the kernel drops it when the process dies,
//! so a killed run leaves nothing stale. A second process waits for the range, up to a
//! bound, instead of colliding.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fs2::FileExt;

/// A range claimed by this process until dropped.
#[derive(Debug)]
pub struct RangeClaim {
    // The lock lives as long as the open file.
    _file: File,
}

/// Why a range could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The lock file could not be opened or locked.
    #[error("claiming loopback range {range} ({path}): {source}")]
    Io {
        /// The range.
        range: String,
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process held the range for the whole wait.
    #[error(
        "loopback range {range} is held by another process for over {waited:?} (lock file {path}); \
         is another run of the mesh tests, or an `isthmus dev` on the same range, still up?"
    )]
    Held {
        /// The range.
        range: String,
        /// The lock file.
        path: PathBuf,
        /// How long this process waited.
        waited: Duration,
    },
}

/// The lock file for `range`.
fn lock_path(range: &str) -> PathBuf {
    let name: String = range
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    std::env::temp_dir().join(format!("isthmus-loopback-{name}.lock"))
}

/// Claims `range` for this process, waiting up to `wait` while another holds it.
pub async fn claim(range: &str, wait: Duration) -> Result<RangeClaim, ClaimError> {
    let path = lock_path(range);
    let io = |source| ClaimError::Io {
        range: range.to_owned(),
        path: path.clone(),
        source,
    };
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    let start = Instant::now();
    let mut told = false;
    loop {
        match file.try_lock_exclusive() {
            Ok(()) => return Ok(RangeClaim { _file: file }),
            Err(e) if e.raw_os_error() == fs2::lock_contended_error().raw_os_error() => {}
            Err(e) => return Err(io(e)),
        }
        let waited = start.elapsed();
        if waited >= wait {
            return Err(ClaimError::Held {
                range: range.to_owned(),
                path,
                waited,
            });
        }
        if !told {
            told = true;
            eprintln!(
                "loopback range {range} is held by another process ({}); waiting up to {wait:?}",
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_range_waits_then_says_who_to_look_for_and_is_free_once_dropped() {
        let range = format!("127.250.{}.0/24", std::process::id() % 250);
        let held = claim(&range, Duration::ZERO).await.unwrap();
        // flock locks belong to the open file description, so a second open in this
        // process contends like another process would.
        let refused = claim(&range, Duration::from_millis(300)).await.unwrap_err();
        let message = refused.to_string();
        assert!(matches!(refused, ClaimError::Held { .. }), "{message}");
        assert!(
            message.contains(&range) && message.contains("lock file"),
            "{message}"
        );
        drop(held);
        claim(&range, Duration::ZERO).await.unwrap();
    }
}
