//! The mesh's security status operations: a gateway's report (soft state, held by this
//! node only; see [`crate::mesh`]), the picture, its changes, the policy decisions over
//! a window and the alerts. A namespace admin sees the edges, decisions and alerts of
//! services of its namespaces (and every gateway, and the alerts about gateways);
//! everyone else who may read sees everything.

use isthmus_ca::{Identity, SpiffeId};
use isthmus_federation_api::ApiError;
use isthmus_federation_api::alerts::{AlertList, AlertRecord};
use isthmus_federation_api::mesh::{
    DECISION_HISTORY, DecisionWindow, GatewayReport, MeshEdge, MeshEvent, MeshPicture,
};
use isthmus_federation_api::model::ClusterState;
use isthmus_federation_api::status::Consistency;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::Admin;
use crate::access::{Operation, Principal, Role};

/// Which edges a caller may see.
#[derive(Debug, Clone)]
pub struct MeshView(Option<std::collections::BTreeSet<String>>);

impl MeshView {
    fn of(who: &Principal) -> Self {
        match &who.role {
            Role::NamespaceAdmin(mine) => Self(Some(mine.clone())),
            _ => Self(None),
        }
    }

    /// Whether the caller may see what concerns `service` (`<service>.<namespace>`, or
    /// none for the cluster hop): a namespace admin, only the services of its
    /// namespaces.
    fn shows_service(&self, service: Option<&str>) -> bool {
        match &self.0 {
            None => true,
            Some(mine) => service
                .and_then(|s| s.rsplit_once('.'))
                .is_some_and(|(_, namespace)| mine.contains(namespace)),
        }
    }

    /// Whether the caller may see `edge`.
    pub fn shows(&self, edge: &MeshEdge) -> bool {
        self.shows_service(edge.service.as_deref())
    }

    /// Whether the caller may see `alert`: one about a service as its edge, any other
    /// (a gateway, a certificate, a cluster hop) as a gateway.
    fn shows_alert(&self, alert: &AlertRecord) -> bool {
        match alert.labels.get("destination_service") {
            Some(service) => self.shows_service(Some(service)),
            None => !alert.labels.contains_key("peer_cluster") || self.0.is_none(),
        }
    }

    /// Whether the caller may see `event`.
    pub fn shows_event(&self, event: &MeshEvent) -> bool {
        match event {
            MeshEvent::Gateway { .. } => true,
            MeshEvent::Edge { edge, .. } => self.shows(edge),
        }
    }
}

impl Admin {
    /// Takes a gateway's status report: from a gateway of that cluster (with the name of
    /// its certificate) or a platform admin, for an active cluster.
    pub async fn report_gateway_status(
        &self,
        who: &Principal,
        report: GatewayReport,
    ) -> Result<(), ApiError> {
        who.may(&Operation::ReportStatus {
            cluster: &report.cluster,
        })?;
        report.check()?;
        if let Role::Gateway(_) = &who.role {
            let named = SpiffeId::parse(&who.who)
                .ok()
                .and_then(|id| match id.identity().ok()? {
                    Identity::Gateway { name, .. } => Some(name),
                    _ => None,
                });
            if named.as_deref() != Some(report.gateway.as_str()) {
                return Err(ApiError::PermissionDenied(format!(
                    "{} may report only as itself, not as gateway {:?}",
                    who.who, report.gateway
                )));
            }
        }
        let state = self
            .federation
            .read(Consistency::Stale, |s| {
                s.clusters.get(&report.cluster).map(|c| c.state)
            })
            .await?;
        if state != Some(ClusterState::Active) {
            return Err(ApiError::admission(
                "cluster",
                format!(
                    "cluster {:?} is not an active member of the federation",
                    report.cluster
                ),
            ));
        }
        // A report overtaken by a newer one is not the sender's fault: it is already
        // superseded, and the call succeeds.
        if let Err(refused) = self.mesh.record(report) {
            tracing::debug!(%refused, "gateway status report dropped");
        }
        Ok(())
    }

    /// The mesh's security status as this node holds it.
    pub fn mesh_picture(&self, who: &Principal) -> Result<MeshPicture, ApiError> {
        who.may(&Operation::Read)?;
        let view = MeshView::of(who);
        let mut picture = self.mesh.picture();
        picture.edges.retain(|e| view.shows(e));
        Ok(picture)
    }

    /// The policy decisions of the last `window_seconds` (at most an hour).
    pub fn decision_window(
        &self,
        who: &Principal,
        window_seconds: u64,
    ) -> Result<DecisionWindow, ApiError> {
        who.may(&Operation::Read)?;
        if window_seconds == 0 || window_seconds > DECISION_HISTORY.as_secs() {
            return Err(ApiError::invalid(
                "window_seconds",
                format!(
                    "1 to {} seconds (a node keeps an hour of samples)",
                    DECISION_HISTORY.as_secs()
                ),
            ));
        }
        let view = MeshView::of(who);
        let mut window = self.mesh.decision_window(window_seconds);
        window
            .decisions
            .retain(|d| view.shows_service(Some(&d.service)));
        Ok(window)
    }

    /// The alerts this node holds: firing, and resolved lately.
    pub fn alerts(&self, who: &Principal) -> Result<AlertList, ApiError> {
        who.may(&Operation::Read)?;
        let view = MeshView::of(who);
        let mut list = self.alerts.list(self.mesh.node());
        list.firing.retain(|a| view.shows_alert(a));
        list.resolved.retain(|a| view.shows_alert(a));
        Ok(list)
    }

    /// The changes of status from now on that the caller may see.
    pub fn watch_mesh(&self, who: &Principal) -> Result<MeshWatch, ApiError> {
        who.may(&Operation::Read)?;
        Ok(MeshWatch {
            events: self.mesh.subscribe(),
            view: MeshView::of(who),
        })
    }
}

/// What a mesh watcher gets next.
#[derive(Debug)]
pub enum MeshChange {
    /// A change the caller may see.
    Event(Box<MeshEvent>),
    /// The watcher fell this many changes behind: it must read the picture again.
    Lagged(u64),
}

/// One caller's subscription to the changes of status (both faces read it).
#[derive(Debug)]
pub struct MeshWatch {
    events: broadcast::Receiver<MeshEvent>,
    view: MeshView,
}

impl MeshWatch {
    /// The next change the caller may see; `None` when the node stops.
    pub async fn next(&mut self) -> Option<MeshChange> {
        loop {
            match self.events.recv().await {
                Ok(event) if self.view.shows_event(&event) => {
                    return Some(MeshChange::Event(Box::new(event)));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => return Some(MeshChange::Lagged(n)),
                Err(RecvError::Closed) => return None,
            }
        }
    }
}
