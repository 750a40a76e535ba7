//! The mesh's security status on one node: the gateways' reports held in memory (soft
//! state with an age, never in the Raft log; every gateway reports to every node, so
//! any node answers), the picture assembled from them ([`board`]) and the changes of
//! status, broadcast to the watchers of `/v1/mesh/events` and `WatchMesh`.

pub mod board;

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use isthmus_federation_api::mesh::{GatewayReport, MeshEvent, MeshPicture};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use board::{Board, LOST_AFTER, Refused, STALE_AFTER};

/// Changes a watcher may fall behind by before it is told to read the picture again.
const EVENTS: usize = 1024;

/// One node's view of the mesh.
#[derive(Debug)]
pub struct MeshStatus {
    board: Mutex<Board>,
    events: broadcast::Sender<MeshEvent>,
}

/// The wall clock in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl MeshStatus {
    /// An empty view of node `node`.
    pub fn new(node: &str) -> Self {
        Self {
            board: Mutex::new(Board::new(node)),
            events: broadcast::channel(EVENTS).0,
        }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        // Every update leaves the board whole: a poisoned one is still usable.
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tell(&self, events: Vec<MeshEvent>) {
        for event in events {
            // No watcher is not an error.
            let _ = self.events.send(event);
        }
    }

    /// Takes a gateway's report (its sender already checked).
    pub fn record(&self, report: GatewayReport) -> Result<(), Refused> {
        let events = self.board().record(report, Instant::now(), unix_now())?;
        self.tell(events);
        Ok(())
    }

    /// The picture now.
    pub fn picture(&self) -> MeshPicture {
        self.board().picture(Instant::now(), unix_now())
    }

    /// The changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<MeshEvent> {
        self.events.subscribe()
    }

    /// Tells the changes that time alone makes, every second, until `stop`.
    pub async fn tick(&self, stop: CancellationToken) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {
                    let events = self.board().tick(Instant::now(), unix_now());
                    self.tell(events);
                }
            }
        }
    }
}
