//! The workload mTLS listener of a member gateway (`[workload_api] mtls_listen`): where
//! a workload holding an SVID from this gateway's Workload API reaches an imported
//! service with mutual TLS, so that the exporting cluster decides on its namespace and
//! service account rather than on this gateway's cluster alone.
//!
//! ```text
//!  ClientHello ─▶ handshake: SVID chains to the bundle, a workload of this cluster
//!              ─▶ a registration gives it now ─▶ the server name names an import
//!              ─▶ stream to the exporter, carrying the workload's SPIFFE ID
//! ```
//!
//! The server name picks the service: `<svc>.<ns>.svc.clusterset.local`, or
//! `<port>.<svc>.<ns>.svc.clusterset.local` when several of its ports are imported. The
//! TLS ends here: the app's bytes go on through the tunnel's own mutual TLS. A caller
//! is refused (TLS alert, or RST after the handshake) with a stable reason in the
//! metrics and access log; a connection whose identity loses its last registration, or
//! whose chain the trust bundle no longer verifies, is cut
//! ([`crate::workload_api::Registrations`]).

use std::sync::Arc;

use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::verify::tls::{SpiffeVerifier, server_config_resolving, verify_error_of};
use isthmus_ca::{CertFacts, Identity, SharedBundle, SpiffeId};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::access_log::Pending;
use crate::access_log::entry::{Direction, SecurityPolicy};
use crate::gateway::Shared;
use crate::live_cert::LiveCert;
use crate::outbound::{
    RemoteService, WorkloadCaller, accept_loop, client, read_client_hello, refuse_local,
    refused_local,
};
use crate::prefixed::Prefixed;
use crate::sni::clusterset_target;
use crate::workload_api::{Registrations, WorkloadConnection};

/// The TLS side of the listener: this gateway's certificate, and client SVIDs required
/// and verified as workloads of `cluster` under `bundle`, on every handshake (no
/// resumption, so that every connection is verified against the bundle in force).
pub(crate) fn acceptor(
    bundle: SharedBundle,
    cert: Arc<LiveCert>,
    cluster: &str,
) -> Result<TlsAcceptor, rustls::Error> {
    let verifier = SpiffeVerifier::new(bundle, ExpectedIdentity::WorkloadOf(cluster.to_owned()));
    let config = server_config_resolving(verifier, cert, &[])?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts workloads on `listener` until the gateway stops.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    registrations: Registrations,
    shared: Arc<Shared>,
) {
    accept_loop(listener, shared, move |tcp, shared| {
        let (acceptor, registrations) = (acceptor.clone(), registrations.clone());
        async move { workload(tcp, acceptor, registrations, shared).await }
    })
    .await;
}

async fn workload(
    mut tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    registrations: Registrations,
    shared: Arc<Shared>,
) {
    let mut line = Pending::of_tcp(Direction::Outbound, &tcp);
    let within = shared.me.timeouts.stream_open;
    let (name, hello) = match read_client_hello(&mut tcp, within).await {
        Ok(read) => read,
        Err(e) => {
            let msg = e.to_string();
            return refuse_local(tcp, &shared, "unknown", "bad_client_hello", &msg, line);
        }
    };
    line.entry.requested_server_name = Some(name.clone());
    let tls = match tokio::time::timeout(within, acceptor.accept(Prefixed::new(hello, tcp))).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            // rustls has sent the alert; the reason is the verifier's, when it refused.
            let reason = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .and_then(verify_error_of)
                .map_or("handshake", |v| v.reason());
            let msg = format!("workload TLS handshake failed ({reason}): {e}");
            return refused_local(&shared, "unknown", "untrusted_workload", &msg, line);
        }
        Err(_) => {
            let msg = "no TLS handshake in time";
            return refused_local(&shared, "unknown", "untrusted_workload", msg, line);
        }
    };
    let Some((id, namespace, service_account, chain)) = presented(&tls) else {
        let msg = "the verified certificate names no workload identity";
        return refuse_local(tls, &shared, "unknown", "untrusted_workload", msg, line);
    };
    line.entry.source_principal = Some(id.to_string());
    // Held before the registration is looked at, so that a removal racing with this
    // check either refuses it here or cuts it there.
    let open = registrations.open(
        WorkloadConnection {
            namespace: namespace.clone(),
            service_account: service_account.clone(),
            chain,
        },
        shared.tunnels.cut.child_token(),
    );
    if !registrations.gives(&namespace, &service_account) {
        let msg = format!("no registration gives {id} now");
        return refuse_local(tls, &shared, "unknown", "no_registration", &msg, line);
    }
    let target = match target(&shared, &name) {
        Ok(target) => target,
        Err(msg) => return refuse_local(tls, &shared, "unknown", "unknown_service", &msg, line),
    };
    line.entry.connection_security_policy = SecurityPolicy::MutualTls;
    let caller = WorkloadCaller { id, open };
    client(tls, &target, Vec::new(), line, shared, Some(caller)).await;
}

/// What the client's verified chain says: the leaf's SPIFFE ID, its namespace and
/// service account, and the chain itself.
fn presented(tls: &crate::splice::WorkloadTls) -> Option<Presented> {
    let chain = tls.get_ref().1.peer_certificates()?;
    let id = SpiffeId::parse(CertFacts::parse(chain.first()?).ok()?.uris.first()?).ok()?;
    match id.identity().ok()? {
        Identity::Workload {
            namespace,
            service_account,
            ..
        } => Some((id, namespace, service_account, Arc::new(chain.to_vec()))),
        _ => None,
    }
}

type Presented = (
    SpiffeId,
    String,
    String,
    Arc<Vec<rustls_pki_types::CertificateDer<'static>>>,
);

/// The import a server name names: the config's imports first, then the federation's;
/// a name without a port must fit exactly one imported port.
fn target(shared: &Arc<Shared>, name: &str) -> Result<RemoteService, String> {
    let Some(wanted) = clusterset_target(name) else {
        return Err(format!(
            "{name:?} is not <service>.<namespace>.svc.clusterset.local (or <port>.<service>.<namespace>.svc.clusterset.local)"
        ));
    };
    let (namespace, service) = (&wanted.namespace, &wanted.service);
    let configured: Vec<_> = shared
        .routes
        .imports
        .iter()
        .filter(|i| &i.namespace == namespace && &i.name == service)
        .collect();
    let key = (namespace.clone(), service.clone());
    let ports: Vec<u16> = if configured.is_empty() {
        crate::membership::imports::ports(&shared.routes.federation, &key)
    } else {
        configured.iter().map(|i| i.port).collect()
    };
    let port = match (wanted.port, ports.as_slice()) {
        (_, []) => {
            return Err(format!(
                "{service}.{namespace} is not imported by this gateway"
            ));
        }
        (Some(port), ports) if ports.contains(&port) => port,
        (Some(port), ports) => {
            return Err(format!(
                "{service}.{namespace} is imported on port(s) {ports:?}, not {port}"
            ));
        }
        (None, [port]) => *port,
        (None, ports) => {
            return Err(format!(
                "{service}.{namespace} is imported on ports {ports:?}: name one as <port>.{service}.{namespace}.svc.clusterset.local"
            ));
        }
    };
    if let Some(import) = configured.iter().find(|i| i.port == port) {
        return Ok(RemoteService::of(import));
    }
    crate::membership::imports::route(&shared.routes.federation, &key, port, shared)
        .ok_or_else(|| format!("{service}.{namespace} is no longer imported"))
}
