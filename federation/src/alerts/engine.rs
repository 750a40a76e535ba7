//! The alert loop of one node: every `evaluate_every` it reads its own picture of the
//! mesh and updates the alerts ([`super::state`]) and the [`AlertBook`]. Every node does
//! this (every gateway reports to every node, so their pictures agree): a new leader
//! already holds the alerts firing, with their start, and fires none of them again.
//! Only the leader delivers: it sets `isthmus_alerts_firing`, sends each change to the
//! webhooks and the firing alerts (again every `resend_every`, and at once when it
//! takes over, so that nothing the old leader fired and did not send is missed) and
//! each resolution to the Alertmanagers, which key alerts by their labels. A webhook
//! hears of a change once, from the node leading when it happened; one that happened
//! while no node led (an election) is told by the next leader's first evaluation only
//! if it is still a change there.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::book::AlertBook;
use super::config::AlertSettings;
use super::state::{Alert, Tracker, Transition};
use super::{deliver, rules};
use crate::mesh::{MeshStatus, unix_now};
use crate::metrics::{AlertLabels, FederationMetrics};
use crate::raft::Raft;
use isthmus_federation_api::status::NodeId;

/// What the loop needs.
pub struct AlertEngine {
    /// The settings.
    pub settings: AlertSettings,
    /// This node's picture.
    pub mesh: Arc<MeshStatus>,
    /// Where `isthmus_alerts_firing` lives.
    pub metrics: Arc<FederationMetrics>,
    /// Whether this node leads.
    pub raft: Raft,
    /// This node.
    pub node_id: NodeId,
    /// The alerts held for the API and the UI.
    pub book: Arc<AlertBook>,
}

impl AlertEngine {
    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut tracker = Tracker::default();
        let mut previous = None;
        let mut led = false;
        let mut last_sent: Option<Instant> = None;
        let mut every = tokio::time::interval(self.settings.evaluate_every);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let picture = self.mesh.picture();
            let conditions = rules::conditions(&picture, previous.as_ref(), &self.settings.rules);
            let (now, unix) = (Instant::now(), unix_now());
            let transitions = tracker.observe(conditions, now, unix, self.settings.keep_firing_for);
            previous = Some(picture);
            let firing = tracker.firing();
            let leads = self.raft.metrics().borrow().current_leader == Some(self.node_id);
            self.book.evaluated(unix, leads, &firing, &transitions);
            if !leads {
                if led {
                    self.publish(&[]);
                    led = false;
                }
                continue;
            }
            let took_over = !led;
            led = true;
            self.publish(&firing);
            let changed: Vec<Alert> = transitions
                .into_iter()
                .map(|t| match t {
                    Transition::Firing(a) => {
                        tracing::warn!(alert = a.alertname, labels = ?a.labels, summary = %a.summary, "alert firing");
                        a
                    }
                    Transition::Resolved(a) => {
                        tracing::info!(alert = a.alertname, labels = ?a.labels, "alert resolved");
                        a
                    }
                })
                .collect();
            if !changed.is_empty() {
                let body = deliver::webhook_body(&changed);
                for hook in &self.settings.webhooks {
                    if let Err(e) = deliver::post(hook, None, &body).await {
                        tracing::warn!(webhook = %hook.url(), error = %e, "alert webhook not delivered");
                    }
                }
            }
            let resend =
                took_over || last_sent.is_none_or(|at| at.elapsed() >= self.settings.resend_every);
            if !self.settings.alertmanagers.is_empty() && (resend || !changed.is_empty()) {
                let resolved = changed.iter().filter(|a| a.ends_at.is_some()).cloned();
                let batch: Vec<Alert> = firing.iter().cloned().chain(resolved).collect();
                if !batch.is_empty() {
                    // A firing alert ends unless sent again: four rounds of grace.
                    let body =
                        deliver::alertmanager_body(&batch, unix, self.settings.resend_every * 4);
                    for am in &self.settings.alertmanagers {
                        if let Err(e) = deliver::post(am, Some("/api/v2/alerts"), &body).await {
                            tracing::warn!(alertmanager = %am.url(), error = %e, "alerts not delivered to Alertmanager");
                        }
                    }
                }
                last_sent = Some(Instant::now());
            }
        }
    }

    fn publish(&self, firing: &[Alert]) {
        self.metrics.alerts_firing.clear();
        for a in firing {
            self.metrics
                .alerts_firing
                .get_or_create(&AlertLabels {
                    alertname: a.alertname.to_owned(),
                    severity: a.severity.as_str().to_owned(),
                })
                .inc();
        }
    }
}
