//! The ingress: traffic from outside the mesh in. One TLS listener whose connections'
//! server name (SNI) picks a host — terminated here with that host's certificate and
//! routed by HTTP path (HTTP/1.1 and HTTP/2), or passed through undecrypted to a service
//! — and plain TCP listeners routed by port. Services may run in this cluster or any
//! other (then through the tunnel). Every connection and request is authorized by the
//! policy in force before it is routed (HTTP method and path included for HTTP).

pub mod config;
mod http;
mod idle;
mod pool;
pub mod table;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};

use crate::access_log::Pending;
use crate::access_log::entry::{AppTls, Direction, ResponseFlag, SecurityPolicy};
use crate::admission::{Admission, Refusal, Request, Source};
use crate::gateway::{Shared, StartError};
use crate::header::Status;
use crate::outbound::{accept_loop, read_client_hello, refuse_local};
use config::IngressSettings;
use table::{HostMode, HostTable, ServiceRef};

/// Where a started ingress listens.
#[derive(Debug, Clone)]
pub struct IngressAddrs {
    /// The TLS listener.
    pub tls: Option<SocketAddr>,
    /// The TCP routes' listeners, in config order.
    pub tcp: Vec<SocketAddr>,
}

type Hosts = HostTable<Arc<CertifiedKey>>;

/// Picks a terminated host's certificate by SNI.
#[derive(Debug)]
struct ByServerName(Arc<Hosts>);

impl ResolvesServerCert for ByServerName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match &self.0.host(hello.server_name()?)?.mode {
            HostMode::Terminate { certificate, .. } => Some(certificate.clone()),
            HostMode::Passthrough(_) => None,
        }
    }
}

fn load_certificate(
    field: &str,
    host: &table::HostPattern,
    (cert, key): &(std::path::PathBuf, std::path::PathBuf),
    base: &Path,
) -> Result<Arc<CertifiedKey>, StartError> {
    let fail = |what: &str, e: String| StartError::Tls(format!("{field}.{what}: {e}"));
    let cert_pem = std::fs::read_to_string(base.join(cert))
        .map_err(|e| fail("cert", format!("cannot read {}: {e}", cert.display())))?;
    let chain = isthmus_ca::pem::certs_from_pem(&cert_pem)
        .map_err(|e| fail("cert", format!("{}: {e}", cert.display())))?;
    let leaf = chain
        .first()
        .ok_or_else(|| fail("cert", format!("{} holds no certificate", cert.display())))?;
    let facts = isthmus_ca::CertFacts::parse(leaf)
        .map_err(|e| fail("cert", format!("{}: {e}", cert.display())))?;
    let wanted = host.to_string();
    let covered = facts.dns_names.iter().any(|san| {
        let san = san.to_ascii_lowercase();
        san == wanted
            || table::HostPattern::parse(&san).is_ok_and(|p| match host {
                table::HostPattern::Exact(name) => p.matches(name),
                table::HostPattern::Wildcard(_) => false,
            })
    });
    if !covered {
        return Err(fail(
            "cert",
            format!(
                "{} names {:?}, not {wanted}; issue it for the host",
                cert.display(),
                facts.dns_names
            ),
        ));
    }
    use rustls_pki_types::pem::PemObject;
    let key_der = rustls_pki_types::PrivateKeyDer::from_pem_file(base.join(key))
        .map_err(|e| fail("key", format!("{}: {e}", key.display())))?;
    let signing = isthmus_ca::verify::tls::provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| fail("key", format!("{}: {e}", key.display())))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        fail(
            "key",
            format!("{} does not match the certificate: {e}", key.display()),
        )
    })?;
    Ok(Arc::new(certified))
}

/// Binds the ingress's listeners (certificate paths relative to `base`) and serves them
/// as tracked tunnel tasks.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    settings: &IngressSettings,
    base: &Path,
) -> Result<IngressAddrs, StartError> {
    {
        let mut hosts = Vec::new();
        for (i, h) in settings.hosts.iter().enumerate() {
            let field = format!("ingress.hosts[{i}]");
            let mode = match &h.mode {
                HostMode::Terminate {
                    certificate,
                    routes,
                } => HostMode::Terminate {
                    certificate: load_certificate(&field, &h.pattern, certificate, base)?,
                    routes: routes.clone(),
                },
                HostMode::Passthrough(s) => HostMode::Passthrough(s.clone()),
            };
            hosts.push(table::HostEntry {
                pattern: h.pattern.clone(),
                namespace: h.namespace.clone(),
                mode,
            });
        }
        let hosts = Arc::new(HostTable::new(hosts));
        let bind = |what: String, addr: SocketAddr| async move {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    what: what.clone(),
                    addr,
                    source,
                })?;
            let local =
                listener
                    .local_addr()
                    .map_err(|source| StartError::Bind { what, addr, source })?;
            Ok::<_, StartError>((listener, local))
        };
        let mut addrs = IngressAddrs {
            tls: None,
            tcp: Vec::new(),
        };
        if let Some(listen) = settings.listen {
            let (listener, local) = bind("ingress.listen".into(), listen).await?;
            addrs.tls = Some(local);
            let mut config =
                rustls::ServerConfig::builder_with_provider(isthmus_ca::verify::tls::provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| StartError::Tls(e.to_string()))?
                    .with_no_client_auth()
                    .with_cert_resolver(Arc::new(ByServerName(hosts.clone())));
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            let pool = Arc::new(pool::Pool::default());
            shared
                .tunnels
                .spawn(accept_loop(listener, shared.clone(), move |tcp, shared| {
                    let hosts = hosts.clone();
                    let acceptor = acceptor.clone();
                    let pool = pool.clone();
                    async move { tls_connection(tcp, hosts, acceptor, pool, shared).await }
                }));
        }
        for (i, (listen, service)) in settings.tcp.iter().enumerate() {
            let (listener, local) = bind(format!("ingress.tcp[{i}].listen"), *listen).await?;
            addrs.tcp.push(local);
            let service = Arc::new(service.clone());
            shared
                .tunnels
                .spawn(accept_loop(listener, shared.clone(), move |tcp, shared| {
                    let service = service.clone();
                    async move {
                        let line = Pending::of_tcp(Direction::Ingress, &tcp);
                        pass_through(tcp, Vec::new(), &service, line, shared).await;
                    }
                }));
        }
        tracing::info!(tls = ?addrs.tls, tcp = ?addrs.tcp, hosts = settings.hosts.len(), "ingress started");
        Ok(addrs)
    }
}

/// Decides whether the ingress may send this connection or request to `service`, and
/// where: the same admission as a peer's stream, with this gateway's cluster as the
/// source (callers from outside have no mesh identity) and the HTTP method and path when
/// known.
pub(crate) fn admit(
    shared: &Shared,
    service: &ServiceRef,
    http: Option<(&str, &str)>,
) -> Result<Admission, Refusal> {
    let request = Request {
        source: Source::Ingress,
        namespace: &service.namespace,
        service: &service.name,
        port: service.port,
        http,
    };
    shared.admit(&request, None)
}

async fn tls_connection(
    mut tcp: TcpStream,
    hosts: Arc<Hosts>,
    acceptor: tokio_rustls::TlsAcceptor,
    pool: Arc<pool::Pool>,
    shared: Arc<Shared>,
) {
    let mut line = Pending::of_tcp(Direction::Ingress, &tcp);
    line.entry.connection_security_policy = SecurityPolicy::None;
    let (name, hello) = match read_client_hello(&mut tcp, shared.me.timeouts.stream_open).await {
        Ok(read) => read,
        Err(e) => {
            let msg = e.to_string();
            return refuse_local(tcp, &shared, "unknown", "bad_client_hello", &msg, line);
        }
    };
    line.entry.requested_server_name = Some(name.clone());
    let Some(entry) = hosts.host(&name) else {
        let msg = format!("no ingress host serves {name:?}");
        return refuse_local(tcp, &shared, "unknown", "unknown_host", &msg, line);
    };
    if let Err(unclaimed) = shared
        .catalog
        .current()
        .check_claim(&entry.pattern, &entry.namespace)
    {
        let msg = unclaimed.to_string();
        return refuse_local(tcp, &shared, "unknown", "unclaimed_host", &msg, line);
    }
    match &entry.mode {
        HostMode::Passthrough(service) => {
            line.entry.app_tls = AppTls::Passthrough;
            pass_through(tcp, hello, service, line, shared).await;
        }
        HostMode::Terminate { routes, .. } => {
            let stream = crate::prefixed::Prefixed::new(hello, tcp);
            let tls =
                match tokio::time::timeout(shared.me.timeouts.stream_open, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::info!(host = %name, error = %e, "ingress TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            http::serve(tls, name, routes.clone(), pool, shared).await;
        }
    }
}

/// Splices a client connection (TLS passthrough or a TCP route) to `service`, after
/// writing `first` (bytes already read from the client); `line` is its access-log line.
async fn pass_through(
    mut tcp: TcpStream,
    first: Vec<u8>,
    service: &ServiceRef,
    mut line: Pending,
    shared: Arc<Shared>,
) {
    let label = format!("{}.{}", service.name, service.namespace);
    line.entry.source_cluster = Some(shared.me.cluster.clone());
    line.entry.destination_service = Some(label.clone());
    let span = shared.tracing.span(
        "ingress.connection",
        opentelemetry::trace::SpanKind::Server,
        crate::telemetry::Parent::Root,
        vec![opentelemetry::KeyValue::new(
            "isthmus.destination.service",
            label.clone(),
        )],
    );
    line.traced(&span);
    let admitted = match admit(&shared, service, None) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            if let Some(verdict) = &refusal.verdict {
                line.entry.decided(verdict);
            }
            let status = match refusal.status {
                Status::Denied => "denied",
                Status::RateLimited => "rate_limited",
                _ => "unavailable",
            };
            return refuse_local(tcp, &shared, &label, status, &refusal.reason, line);
        }
    };
    line.entry.decided(&admitted.verdict);
    let connected =
        crate::upstream::connect(&shared, service, admitted.destination, span.traceparent()).await;
    let mut upstream = match connected {
        Ok(u) => u,
        Err(e) => {
            line.entry.upstream_transport_failure_reason = Some(e.to_string());
            return refuse_local(tcp, &shared, &label, "unavailable", &e.to_string(), line);
        }
    };
    use tokio::io::AsyncWriteExt;
    if !first.is_empty() && upstream.write_all(&first).await.is_err() {
        line.entry
            .response_flags
            .push(ResponseFlag::UpstreamConnectionFailure);
        return line.write(&shared.access_log, None);
    }
    if line.entry.app_tls == AppTls::None {
        line.entry.app_tls = AppTls::sniff(first.first().copied());
    }
    let copied = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut tcp, &mut upstream) => copied,
        () = shared.tunnels.cut.cancelled() => {
            line.entry.response_flags.push(ResponseFlag::Drained);
            return line.write(&shared.access_log, None);
        }
    };
    tracing::debug!(service = %service, ?copied, "ingress connection closed");
    if let Ok((from_client, to_client)) = copied {
        line.entry.bytes_received = first.len() as u64 + from_client;
        line.entry.bytes_sent = to_client;
    }
    line.write(&shared.access_log, None);
}
