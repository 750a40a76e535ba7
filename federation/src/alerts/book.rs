//! The alerts one node holds for the API and the UI: what fires now and what resolved
//! lately (the last [`RESOLVED_KEPT`]), with whether this node is the one delivering.

use std::collections::VecDeque;
use std::sync::Mutex;

use isthmus_federation_api::alerts::{AlertList, AlertRecord, RESOLVED_KEPT};

use super::state::{Alert, Transition};

/// Shared by the alert loop (which writes) and the admin layer (which reads).
#[derive(Debug, Default)]
pub struct AlertBook(Mutex<Pages>);

#[derive(Debug, Default)]
struct Pages {
    delivering: bool,
    evaluated_at: Option<i64>,
    firing: Vec<AlertRecord>,
    resolved: VecDeque<AlertRecord>,
}

impl AlertBook {
    fn pages(&self) -> std::sync::MutexGuard<'_, Pages> {
        // Every write leaves the pages whole: a poisoned lock is still usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one evaluation: what fires, what changed, and who delivers.
    pub fn evaluated(
        &self,
        unix: i64,
        delivering: bool,
        firing: &[Alert],
        transitions: &[Transition],
    ) {
        let mut pages = self.pages();
        pages.delivering = delivering;
        pages.evaluated_at = Some(unix);
        pages.firing = firing.iter().map(record).collect();
        pages.firing.sort_by(|a, b| {
            b.starts_at
                .cmp(&a.starts_at)
                .then(a.alertname.cmp(&b.alertname))
        });
        for t in transitions {
            if let Transition::Resolved(a) = t {
                pages.resolved.push_front(record(a));
            }
        }
        pages.resolved.truncate(RESOLVED_KEPT);
    }

    /// What this node holds, as `node`.
    pub fn list(&self, node: &str) -> AlertList {
        let pages = self.pages();
        AlertList {
            node: node.to_owned(),
            delivering: pages.delivering,
            evaluated_at: pages.evaluated_at,
            firing: pages.firing.clone(),
            resolved: pages.resolved.iter().cloned().collect(),
        }
    }
}

/// The API's form of an alert.
pub fn record(a: &Alert) -> AlertRecord {
    AlertRecord {
        alertname: a.alertname.to_owned(),
        severity: a.severity.as_str().to_owned(),
        labels: a.labels.clone(),
        summary: a.summary.clone(),
        starts_at: a.starts_at,
        ends_at: a.ends_at,
        edge: a.edge.clone(),
    }
}
