//! The catalog watch: publish this cluster's exports and gateway address, then follow the
//! federation's changes into the running gateway. While the federation is unreachable
//! the gateway keeps its last known-good catalog, reports its age, and resumes the watch
//! from the last revision it applied when a federation node answers again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use isthmus_ca::{SharedBundle, TrustDomain};
use isthmus_federation_api::client::{ClientError, ClientTls, FederationClient};
use isthmus_federation_api::mirror::CatalogMirror;
use isthmus_federation_api::model::{
    EndpointHealth, Expect, ExportKey, ExportPort, GatewayEndpoint, PortProtocol, ServiceExport,
};
use isthmus_federation_api::request::{DeleteExport, PutExport, RegisterGateway};
use isthmus_federation_api::status::Consistency;
use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, Retry};
use crate::config::Export;
use crate::gateway::Shared;
use crate::live_cert::LiveCert;
use crate::membership::identity::{SharedIssuer, issue};
use crate::membership::imports::ImportRuntime;
use crate::membership::view::{GatewayView, derive};

/// How often an open watch is confirmed with a cheap status call.
const CONFIRM_EVERY: Duration = Duration::from_secs(1);
/// Reconnections after the watch is lost (kept growing across sessions, as a federation
/// that keeps dropping the watch should not be hammered).
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// The longest any one call to the federation may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a session with a federation node ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// The client could not be set up.
    #[error("client TLS: {0}")]
    Setup(String),
    /// A call failed.
    #[error(transparent)]
    Call(#[from] ClientError),
    /// The node ended the watch.
    #[error("the federation ended the watch")]
    Ended,
    /// The watch broke its guarantees.
    #[error("{0}; re-reading the catalog")]
    Mirror(#[from] isthmus_federation_api::mirror::MirrorError),
}

/// What the watch needs.
pub(crate) struct Sync {
    /// The Workload API's registrations, and the config's among them, when it serves.
    pub(crate) workload_registrations: Option<(
        crate::workload_api::Registrations,
        Vec<crate::workload_api::attest::Registration>,
    )>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) cluster: String,
    pub(crate) gateway_name: String,
    pub(crate) advertise: String,
    pub(crate) exports: Vec<Export>,
    pub(crate) admin_addrs: Vec<String>,
    pub(crate) trust_domain: TrustDomain,
    pub(crate) bundle: SharedBundle,
    pub(crate) cert: Arc<LiveCert>,
    pub(crate) issuer: SharedIssuer,
    pub(crate) id: isthmus_ca::SpiffeId,
    pub(crate) leaf_lifetime: Duration,
    pub(crate) imports: ImportRuntime,
    pub(crate) mirror: CatalogMirror,
    pub(crate) applied: Option<GatewayView>,
    pub(crate) last_contact: Instant,
    pub(crate) view_tx: tokio::sync::watch::Sender<u64>,
    pub(crate) state_dir: std::path::PathBuf,
    /// Healthy endpoints last published, per export.
    pub(crate) published: std::collections::HashMap<(String, String), usize>,
}

impl Sync {
    /// Runs until `stop`.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let mut reconnect = Retry::new(RECONNECT);
        let mut next = 0usize;
        let mut age = tokio::time::interval(Duration::from_millis(500));
        loop {
            let addr = self.admin_addrs[next % self.admin_addrs.len()].clone();
            next += 1;
            let outcome = self.session(&addr, &stop).await;
            self.shared.metrics.federation_connected.set(0);
            match outcome {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(federation = %addr, error = %e, revision = self.mirror.revision(), "catalog watch lost; serving the last known catalog");
                }
            }
            let wait = tokio::time::sleep(reconnect.failed());
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = &mut wait => break,
                    _ = age.tick() => self.report_age(),
                }
            }
        }
    }

    fn report_age(&self) {
        self.shared
            .metrics
            .catalog_age_seconds
            .set(self.last_contact.elapsed().as_secs_f64());
    }

    /// A client of the one node at `addr`, presenting this gateway's live leaf.
    fn client(&self, addr: &str) -> Result<FederationClient, SessionError> {
        let tls = ClientTls::live(self.bundle.clone(), self.cert.clone())
            .map_err(|e| SessionError::Setup(e.to_string()))?;
        Ok(FederationClient::new([addr], tls)?.with_timeout(CALL_TIMEOUT))
    }

    /// One connection to one federation node: publish, then follow. Returns `Ok` only
    /// when stopped.
    async fn session(&mut self, addr: &str, stop: &CancellationToken) -> Result<(), SessionError> {
        let client = self.client(addr)?;
        client
            .register_gateway(RegisterGateway {
                cluster: self.cluster.clone(),
                gateway: GatewayEndpoint {
                    name: self.gateway_name.clone(),
                    address: self.advertise.clone(),
                },
            })
            .await?;
        self.published.clear();
        self.publish(&client).await?;
        let mut stream = client.watch(self.mirror.revision()).await?;
        self.contact();
        self.shared.metrics.federation_connected.set(1);
        tracing::info!(federation = %addr, after = self.mirror.revision(), "catalog watch open");
        let mut pruned = false;
        let mut confirm = tokio::time::interval(CONFIRM_EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                message = stream.message() => {
                    let watched = message.ok_or(SessionError::Ended)??;
                    if let Err(e) = self.mirror.apply_watched(watched) {
                        // Start over from a full state rather than apply out of order.
                        self.mirror = CatalogMirror::new();
                        return Err(SessionError::Mirror(e));
                    }
                    self.contact();
                    self.apply().await;
                    if !pruned && self.mirror.revision() > 0 {
                        pruned = true;
                        self.prune(&client).await?;
                    }
                }
                _ = confirm.tick() => {
                    self.report_age();
                    // Endpoints ejected or back: tell the federation, so that other
                    // clusters weigh this one by what it can serve now.
                    self.publish(&client).await?;
                    client.status(Consistency::Stale).await?;
                    self.contact();
                }
            }
        }
    }

    /// Puts each export whose healthy-endpoint count differs from what was last
    /// published (all of them at the start of a session).
    async fn publish(&mut self, client: &FederationClient) -> Result<(), ClientError> {
        let catalog = self.shared.catalog.current();
        let now = Instant::now();
        for export in &self.exports {
            let total = export
                .ports
                .iter()
                .map(|p| p.endpoints.len())
                .max()
                .unwrap_or(0);
            let healthy = catalog.export_health(&export.namespace, &export.name, now);
            let key = (export.namespace.clone(), export.name.clone());
            if self.published.get(&key) == Some(&healthy) {
                continue;
            }
            let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            let put = PutExport {
                export: ServiceExport {
                    cluster: self.cluster.clone(),
                    namespace: export.namespace.clone(),
                    name: export.name.clone(),
                    ports: export
                        .ports
                        .iter()
                        .map(|p| ExportPort {
                            name: format!("tcp-{}", p.port),
                            port: p.port,
                            protocol: PortProtocol::Tcp,
                        })
                        .collect(),
                    health: EndpointHealth {
                        healthy: count(healthy),
                        total: count(total),
                    },
                    revision: 0,
                },
                expect: Expect::Any,
            };
            client.put_export(put).await?;
            if self.published.contains_key(&key) {
                tracing::info!(namespace = %key.0, service = %key.1, healthy, total, "export health changed");
            }
            self.published.insert(key, healthy);
        }
        Ok(())
    }

    fn contact(&mut self) {
        self.last_contact = Instant::now();
        self.report_age();
    }

    /// Deletes exports of this cluster that the config no longer lists (left by an
    /// earlier run), so that peers stop routing to them.
    async fn prune(&self, client: &FederationClient) -> Result<(), ClientError> {
        let stale: Vec<ExportKey> = self
            .mirror
            .state()
            .exports
            .keys()
            .filter(|k| k.cluster == self.cluster)
            .filter(|k| {
                !self
                    .exports
                    .iter()
                    .any(|e| e.namespace == k.namespace && e.name == k.name)
            })
            .cloned()
            .collect();
        for key in stale {
            tracing::info!(%key, "withdrawing an export the config no longer lists");
            client
                .delete_export(DeleteExport {
                    key,
                    expect: Expect::Any,
                })
                .await?;
        }
        Ok(())
    }

    /// Puts the mirrored catalog in force.
    async fn apply(&mut self) {
        let mut view = derive(self.mirror.state(), &self.cluster);
        view.unreadable_policies = self.mirror.unreadable_policies().clone();
        let m = self.shared.metrics.clone();
        m.catalog_revision
            .set(i64::try_from(self.mirror.revision()).unwrap_or(i64::MAX));
        if self.applied.as_ref() == Some(&view) {
            let _ = self.view_tx.send(self.mirror.revision());
            return;
        }
        if let Some(doc) = &view.bundle {
            let roots = |b: &isthmus_federation_api::model::TrustBundleDoc| {
                (b.roots_pem.clone(), b.retired_pem.clone())
            };
            let before = self
                .applied
                .as_ref()
                .and_then(|v| v.bundle.as_ref())
                .map(roots);
            // The revision alone changes on a no-op write; only the roots matter here.
            if before != Some(roots(doc)) {
                match isthmus_federation_api::validate::trust_bundle(doc, Some(&self.trust_domain))
                {
                    Ok(bundle) => {
                        self.bundle.replace(bundle.clone());
                        m.bundle_updates.inc();
                        tracing::info!(revision = doc.revision, "trust bundle updated");
                        crate::recheck::recheck(&self.shared, &bundle).await;
                        if let Some((registrations, _)) = &self.workload_registrations {
                            registrations.recheck_bundle(&bundle, &self.cluster);
                        }
                        // The next start verifies the federation with this bundle.
                        if let Err(e) = crate::membership::identity::save(
                            &self.state_dir,
                            "bundle.pem",
                            &bundle.to_pem(),
                            false,
                        ) {
                            tracing::error!(error = %e, "cannot save the trust bundle");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the federation's trust bundle is unusable; keeping the current one")
                    }
                }
            }
        }
        if let Some(pem) = &view.own_intermediate {
            if self
                .applied
                .as_ref()
                .and_then(|v| v.own_intermediate.as_ref())
                != Some(pem)
                && self.adopt_intermediate(pem)
            {
                // Our connections were authenticated with the leaf from the old
                // intermediate: new streams get fresh ones, under the new chain, so that
                // when the old root is removed only streams opened before now are on
                // connections it authenticated (those are closed after the grace).
                let retired = self.shared.connections.dialled().retire_all().await;
                tracing::info!(
                    retired,
                    "new streams use connections authenticated under the new intermediate"
                );
            }
        }
        let mut current = self.shared.catalog.current();
        let policy_changed = self
            .applied
            .as_ref()
            .map(|v| (&v.policies, &v.unreadable_policies))
            != Some((&view.policies, &view.unreadable_policies));
        if policy_changed {
            let authorization = crate::authz::Authorization::from_policies(
                view.policies.values(),
                &view.unreadable_policies,
            );
            match &authorization {
                crate::authz::Authorization::Unusable(why) => {
                    tracing::error!(error = %why, "authorization policies unusable; denying every inbound connection")
                }
                _ => tracing::info!(
                    policies = view.policies.len(),
                    "authorization policies applied"
                ),
            }
            current = std::sync::Arc::new(current.with_authorization(authorization));
        }
        if self.applied.as_ref().map(|v| &v.claims) != Some(&view.claims) {
            current = std::sync::Arc::new(current.with_claims(view.claims.clone()));
        }
        let before: Vec<String> = self
            .applied
            .as_ref()
            .map(|v| v.peers.keys().cloned().collect())
            .unwrap_or_default();
        self.shared.catalog.replace(
            current
                .with_peers(view.peers.iter().map(|(c, a)| (c.clone(), *a)))
                .with_revoked(view.revoked.clone()),
        );
        if policy_changed {
            self.revoke_what_the_policy_no_longer_allows();
        }
        if let Some((registrations, configured)) = &self.workload_registrations {
            let mut entries = configured.clone();
            entries.extend(
                view.registrations
                    .iter()
                    .map(crate::workload_api::from_federation),
            );
            registrations.replace(entries);
        }
        for gone in before.iter().filter(|c| !view.peers.contains_key(*c)) {
            tracing::warn!(cluster = %gone, "cluster is no longer a peer (revoked or removed); cutting its connections");
            self.shared
                .connections
                .cut_cluster(gone, "cluster is no longer a peer")
                .await;
        }
        self.imports.apply(&view).await;
        m.imported_services
            .set(i64::try_from(view.imports.len()).unwrap_or(i64::MAX));
        self.applied = Some(view);
        let _ = self.view_tx.send(self.mirror.revision());
    }

    /// The catalog carries a new certificate for this cluster's intermediate (re-signed
    /// during a root rotation): when it is for our key, issue leaves under it from now on.
    /// Whether it was adopted.
    fn adopt_intermediate(&mut self, pem: &str) -> bool {
        let current = self
            .issuer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if current.cert_chain_pem().trim() == pem.trim() {
            return false;
        }
        let adopted =
            isthmus_ca::Authority::from_pem(pem, &current.key_pem(), Some(&self.trust_domain));
        match adopted {
            Ok(authority) => {
                let authority = Arc::new(authority);
                match issue(
                    &authority,
                    &self.id,
                    self.leaf_lifetime,
                    std::time::SystemTime::now(),
                ) {
                    Ok((chain, key)) => {
                        if let Err(e) = self.cert.replace(chain, &key) {
                            tracing::error!(error = %e, "cannot present the leaf from the new intermediate");
                            return false;
                        }
                        if let Err(e) = crate::membership::identity::save(
                            &self.state_dir,
                            "intermediate.pem",
                            pem,
                            false,
                        ) {
                            tracing::error!(error = %e, "cannot save the re-signed intermediate");
                        }
                        *self.issuer.write().unwrap_or_else(|p| p.into_inner()) = authority;
                        self.shared.metrics.certificate_renewals.inc();
                        tracing::info!("adopted the re-signed cluster intermediate; leaf reissued");
                        true
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot issue from the new intermediate");
                        false
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the catalog's intermediate for this cluster is not for this gateway's key; ignoring it");
                false
            }
        }
    }
}

impl Sync {
    /// Decides every open inbound tunnel again under the authorization now in force and
    /// cuts those it no longer allows, counting and logging each with its rule.
    fn revoke_what_the_policy_no_longer_allows(&self) {
        let catalog = self.shared.catalog.current();
        let cut = self.shared.open_tunnels.recheck(catalog.authorization());
        for (tunnel, verdict) in cut {
            let service = format!("{}.{}", tunnel.service, tunnel.namespace);
            tracing::warn!(source = %tunnel.cluster, %service, rule = %verdict.rule, "cutting an open connection the new policy denies");
            self.shared
                .metrics
                .count_revoked(tunnel.cluster, service, verdict.rule);
        }
    }
}
