//! Faults on the links between the nodes of one test harness: cut or delayed, each
//! way, per pair. Compiled only with the `testing` feature, which the federation's own
//! tests and the test kit enable; production builds have no fault hook.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::raft::NodeId;

/// A fault on the link from one node to another (test harness only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every call fails as unreachable.
    Cut,
    /// Every call waits this long first.
    Delay(Duration),
}

/// Faults injected on links between nodes, shared by the nodes of one test harness.
#[derive(Debug, Clone, Default)]
pub struct LinkFaults(Arc<Mutex<HashMap<(NodeId, NodeId), Fault>>>);

impl LinkFaults {
    fn set(&self, a: NodeId, b: NodeId, fault: Option<Fault>) {
        let mut links = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for key in [(a, b), (b, a)] {
            match fault {
                Some(f) => links.insert(key, f),
                None => links.remove(&key),
            };
        }
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        self.set(a, b, Some(Fault::Cut));
    }

    /// Delays every call between `a` and `b`, both ways.
    pub fn delay(&self, a: NodeId, b: NodeId, by: Duration) {
        self.set(a, b, Some(Fault::Delay(by)));
    }

    /// Restores the link between `a` and `b`.
    pub fn heal(&self, a: NodeId, b: NodeId) {
        self.set(a, b, None);
    }

    /// Restores every link.
    pub fn heal_all(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub(crate) async fn pass(&self, from: NodeId, to: NodeId) -> Result<(), LinkCut> {
        let fault = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(from, to))
            .copied();
        match fault {
            None => Ok(()),
            Some(Fault::Cut) => Err(LinkCut),
            Some(Fault::Delay(by)) => {
                tokio::time::sleep(by).await;
                Ok(())
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("link cut by the test harness")]
pub(crate) struct LinkCut;
