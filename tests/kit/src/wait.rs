//! Bounded waits on a condition, for the testkit's procedures and soaks: poll every
//! 20 ms, give up with what was awaited.

use std::time::{Duration, Instant};

use crate::mesh::DevMeshError;

/// How long a waited-for condition may take.
pub(crate) const BOUND: Duration = Duration::from_secs(60);

/// Polls `done` every 20 ms until it holds, for at most [`BOUND`]; how long it took.
pub(crate) async fn until<F, Fut>(what: &str, mut done: F) -> Result<Duration, DevMeshError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        if started.elapsed() >= BOUND {
            return Err(DevMeshError(format!("not within {BOUND:?}: {what}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed())
}
