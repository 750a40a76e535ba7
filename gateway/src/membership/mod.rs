//! A gateway as a member of a federation: enrolled with a join token, its leaves issued
//! from its cluster's intermediate and renewed live, its imports and DNS names following
//! the federation catalog.
//!
//! Pure parts: [`view`] (what the catalog means for this gateway) and [`choose`] (which
//! exporting cluster a connection goes to). IO: [`identity`] (enrollment, leaves),
//! `sync` (the watch), `imports` (listeners and DNS records).

pub mod choose;
pub mod identity;
pub(crate) mod imports;
mod report;
mod sync;
pub mod view;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use isthmus_ca::SharedBundle;
use isthmus_federation_api::mirror::CatalogMirror;
use tokio_util::sync::CancellationToken;

use crate::config::GatewayConfig;
use crate::dns::{DnsServer, DnsTable};
use crate::gateway::{Gateway, GatewayTls, StartError};
use crate::live_cert::LiveCert;

/// What a member runs besides the gateway: the catalog watch, leaf renewal, DNS.
pub(crate) struct MemberTasks {
    dns: Option<DnsServer>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl MemberTasks {
    /// Stops the watch, renewal and DNS.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        if let Some(dns) = self.dns {
            dns.stop().await;
        }
    }
}

/// Enrolls (or loads the enrollment), starts the gateway, its DNS server, the catalog
/// watch and leaf renewal. `base` resolves the config's relative paths.
pub(crate) async fn start(config: GatewayConfig, base: &Path) -> Result<Gateway, StartError> {
    let settings = config.federation.clone().ok_or(StartError::NoIdentity)?;
    let advertise = settings.advertise.unwrap_or(config.listen.quic);
    let enrolled = identity::load_or_enroll(&settings, base, &config.cluster, advertise).await?;
    let id = identity::gateway_id(
        &enrolled.trust_domain,
        &config.cluster,
        &settings.gateway_name,
    )?;
    let (chain, key) = identity::issue(
        &enrolled.intermediate,
        &id,
        settings.leaf_lifetime,
        SystemTime::now(),
    )?;
    let cert = LiveCert::new(chain, &key).map_err(|e| StartError::Tls(e.to_string()))?;
    // The reset key must outlive leaf renewals: derive it from the intermediate's key.
    let reset_key = {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            format!(
                "isthmus stateless reset v1 {}",
                enrolled.intermediate.key_pem()
            )
            .as_bytes(),
        );
        Arc::new(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            digest.as_ref(),
        ))
    };
    let bundle = SharedBundle::new(enrolled.bundle.clone());
    let tls = GatewayTls {
        bundle: bundle.clone(),
        cert: cert.clone(),
        id: id.clone(),
        reset_key,
    };
    let exports = config.exports.clone();
    let cluster = config.cluster.clone();
    let workload_api = config.workload_api.clone();
    let dns_config = config.dns.clone();
    let mut gateway = Gateway::bind(config, tls, base).await?;
    let advertise = settings
        .advertise
        .unwrap_or(gateway.quic_addr())
        .to_string();

    let table = DnsTable::new();
    let (dns, dns_addr) = match &dns_config {
        Some(d) => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let (udp, tcp, local) = match bind_dns(d.listen, cores).await {
                Ok(bound) => bound,
                Err(e) => {
                    gateway.abort().await;
                    return Err(e);
                }
            };
            let server = DnsServer::start_many(table.clone(), udp, tcp, d.forward);
            (Some(server), Some(local))
        }
        None => (None, None),
    };

    let shared = gateway.shared();
    let stop = CancellationToken::new();
    let issuer: identity::SharedIssuer =
        Arc::new(std::sync::RwLock::new(Arc::new(enrolled.intermediate)));
    let (view_tx, revision) = tokio::sync::watch::channel(0);
    let workload_registrations = workload_api.as_ref().map(|w| {
        (
            crate::workload_api::Registrations::new(w.registrations.clone()),
            w.registrations.clone(),
        )
    });
    let sync = sync::Sync {
        workload_registrations: workload_registrations.clone(),
        shared: shared.clone(),
        cluster,
        gateway_name: settings.gateway_name.clone(),
        advertise,
        exports,
        admin_addrs: enrolled.admin_addrs.clone(),
        trust_domain: enrolled.trust_domain.clone(),
        bundle,
        cert: cert.clone(),
        issuer: issuer.clone(),
        id: id.clone(),
        leaf_lifetime: settings.leaf_lifetime,
        imports: imports::ImportRuntime::new(shared.clone(), settings.import_range, table),
        mirror: CatalogMirror::new(),
        applied: None,
        last_contact: Instant::now(),
        view_tx,
        state_dir: enrolled.state_dir.clone(),
        published: std::collections::HashMap::new(),
    };
    let (sync_cluster, bundle_for_workloads) = (sync.cluster.clone(), sync.bundle.clone());
    let reporter = report::Reporter {
        shared: shared.clone(),
        cluster: sync.cluster.clone(),
        gateway: settings.gateway_name.clone(),
        admin_addrs: enrolled.admin_addrs.clone(),
        bundle: sync.bundle.clone(),
        cert: cert.clone(),
        revision: revision.clone(),
    };
    let mut tasks = vec![
        tokio::spawn(sync.run(stop.clone())),
        tokio::spawn(reporter.run(stop.clone())),
    ];
    let mut workload_mtls = None;
    if let (Some(settings), Some((registrations, _))) = (workload_api, workload_registrations) {
        let api = crate::workload_api::WorkloadApi {
            settings,
            registrations,
            trust_domain: enrolled.trust_domain.clone(),
            cluster: sync_cluster.clone(),
            issuer: issuer.clone(),
            bundle: bundle_for_workloads.clone(),
        };
        if let Some(addr) = api.settings.mtls_listen {
            match start_workload_mtls(addr, &api, &cert, &shared).await {
                Ok(local) => workload_mtls = Some(local),
                Err(e) => {
                    stop.cancel();
                    gateway.abort().await;
                    return Err(e);
                }
            }
        }
        match crate::workload_api::serve(api, base, stop.clone()) {
            Ok(task) => tasks.push(task),
            Err(e) => {
                stop.cancel();
                gateway.abort().await;
                return Err(StartError::WorkloadApi(e));
            }
        }
    }
    let metrics = shared.metrics.clone();
    tasks.push(tokio::spawn(identity::renew(
        issuer,
        cert,
        id,
        settings.leaf_lifetime,
        Arc::new(move || {
            metrics.certificate_renewals.inc();
        }),
        stop.clone(),
    )));
    gateway.join(
        MemberTasks { dns, stop, tasks },
        dns_addr,
        workload_mtls,
        revision,
    );
    Ok(gateway)
}

/// Binds the workload mTLS listener and serves it; its bound address.
async fn start_workload_mtls(
    addr: std::net::SocketAddr,
    api: &crate::workload_api::WorkloadApi,
    cert: &Arc<crate::live_cert::LiveCert>,
    shared: &Arc<crate::gateway::Shared>,
) -> Result<std::net::SocketAddr, StartError> {
    let bind_err = |source| StartError::Bind {
        what: "workload_api.mtls_listen".into(),
        addr,
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    let acceptor = crate::workload_mtls::acceptor(api.bundle.clone(), cert.clone(), &api.cluster)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    shared.tunnels.spawn(crate::workload_mtls::serve(
        listener,
        acceptor,
        api.registrations.clone(),
        shared.clone(),
    ));
    tracing::info!(%local, "workload mTLS listener started");
    Ok(local)
}

/// The UDP sockets, the TCP listener and the address they share.
type DnsSockets = (
    Vec<tokio::net::UdpSocket>,
    tokio::net::TcpListener,
    SocketAddr,
);

/// Binds DNS on `addr`, UDP (`cores` sockets) and TCP on the same port. With port 0 the
/// UDP port is free for UDP only: when TCP finds it taken (an ephemeral port of some
/// connection), another port is tried, a few times.
async fn bind_dns(addr: SocketAddr, cores: usize) -> Result<DnsSockets, StartError> {
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = crate::dns::bind_udp(addr, cores).map_err(|source| StartError::Bind {
            what: "dns.listen (udp)".into(),
            addr,
            source,
        })?;
        let local = udp[0].local_addr().map_err(|source| StartError::Bind {
            what: "dns.listen".into(),
            addr,
            source,
        })?;
        match tokio::net::TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp, local)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < attempts => {
                tracing::debug!(%local, "DNS port taken for TCP; trying another");
            }
            Err(source) => {
                return Err(StartError::Bind {
                    what: "dns.listen (tcp)".into(),
                    addr: local,
                    source,
                });
            }
        }
    }
}
