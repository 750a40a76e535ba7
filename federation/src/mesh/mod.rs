//! The mesh's security status on one node: the gateways' reports held in memory (soft
//! state with an age, never in the Raft log; every gateway reports to every node, so
//! any node answers), the picture assembled from them ([`board`]) and the changes of
//! status, broadcast to the watchers of `/v1/mesh/events` and `WatchMesh`.

pub mod board;
pub mod decisions;

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use isthmus_federation_api::mesh::{DecisionWindow, GatewayReport, MeshEvent, MeshPicture};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use board::{Board, LOST_AFTER, Refused, STALE_AFTER};

/// Changes a watcher may fall behind by before it is told to read the picture again.
const EVENTS: usize = 1024;

/// One node's view of the mesh.
#[derive(Debug)]
pub struct MeshStatus {
    node: String,
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
            node: node.to_owned(),
            board: Mutex::new(Board::new(node)),
            events: broadcast::channel(EVENTS).0,
        }
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
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

    /// The policy decisions within the last `seconds`.
    pub fn decision_window(&self, seconds: u64) -> DecisionWindow {
        self.board().decision_window(unix_now(), seconds)
    }

    /// The changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<MeshEvent> {
        self.events.subscribe()
    }

    /// Tells the changes that time alone makes, every second, and samples the
    /// decision counters, until `stop`.
    pub async fn tick(&self, stop: CancellationToken) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        let mut sampled: Option<Instant> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {
                    let (now, unix) = (Instant::now(), unix_now());
                    let mut board = self.board();
                    let events = board.tick(now, unix);
                    if sampled.is_none_or(|at| now.duration_since(at) >= decisions::SAMPLE_EVERY) {
                        board.sample_decisions(unix);
                        sampled = Some(now);
                    }
                    drop(board);
                    self.tell(events);
                }
            }
        }
    }
}
