//! The sending side: local clients connect to an import's listener (or to the SNI
//! listener, which reads the destination from the TLS ClientHello without decrypting);
//! each connection becomes one stream to the exporting cluster's gateway.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

use crate::access_log::Pending;
use crate::access_log::entry::{AppTls, Direction, ResponseFlag, SecurityPolicy};
use crate::config::ImportEntry;
use crate::gateway::Shared;
use crate::header::{Status, StreamHeader};
use crate::inbound::byte_labels;
use crate::metrics::{
    ConnLabels, Direction as MetricDirection, Flow, PeerLabels, RefusalLabels, Security,
};
use crate::sni::{MAX_CLIENT_HELLO, clusterset_service, server_name};
use crate::splice::{Counters, Downstream, splice};
use crate::stream::{OpenError, open};
use crate::telemetry::Parent;

/// Where one client connection goes: a service port, and the clusters to try in order.
#[derive(Debug, Clone)]
pub(crate) struct RemoteService {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) clusters: Vec<String>,
}

impl RemoteService {
    /// The one cluster a configured import names.
    pub(crate) fn of(import: &ImportEntry) -> Self {
        Self {
            namespace: import.namespace.clone(),
            name: import.name.clone(),
            port: import.port,
            clusters: vec![import.cluster.clone()],
        }
    }
}

/// Accepts clients of one import until the gateway stops.
pub(crate) async fn serve_import(listener: TcpListener, import: ImportEntry, shared: Arc<Shared>) {
    let target = Arc::new(RemoteService::of(&import));
    accept_loop(listener, shared, move |tcp, shared| {
        let target = target.clone();
        async move {
            let line = Pending::of_tcp(Direction::Outbound, &tcp);
            client(tcp, &target, Vec::new(), line, shared, None).await;
        }
    })
    .await;
}

/// Accepts clients of a catalog import until `stop`; `route` picks each connection's
/// clusters when it arrives (exporters come and go).
pub(crate) async fn serve_catalog_import<R>(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: tokio_util::sync::CancellationToken,
    route: R,
) where
    R: Fn(&Arc<Shared>) -> Option<RemoteService> + Send + Sync + 'static,
{
    let route = Arc::new(route);
    let accepting = accept_loop(listener, shared, move |tcp, shared| {
        let route = route.clone();
        async move {
            let line = Pending::of_tcp(Direction::Outbound, &tcp);
            match route(&shared) {
                Some(target) => client(tcp, &target, Vec::new(), line, shared, None).await,
                None => refuse_local(
                    tcp,
                    &shared,
                    "unknown",
                    "unknown_service",
                    "the service is no longer imported",
                    line,
                ),
            }
        }
    });
    tokio::select! {
        () = accepting => {}
        () = stop.cancelled() => {}
    }
}

/// Accepts TLS clients on the SNI listener until the gateway stops.
pub(crate) async fn serve_sni(
    listener: TcpListener,
    imports: Vec<ImportEntry>,
    shared: Arc<Shared>,
) {
    let imports = Arc::new(imports);
    accept_loop(listener, shared, move |tcp, shared| {
        let imports = imports.clone();
        async move { sni_client(tcp, &imports, shared).await }
    })
    .await;
}

/// Accepts on `listener` until the gateway stops, running `handle` for each client as a
/// tracked tunnel task.
pub(crate) async fn accept_loop<F, Fut>(listener: TcpListener, shared: Arc<Shared>, handle: F)
where
    F: Fn(TcpStream, Arc<Shared>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.tunnels.stop.cancelled() => return,
        };
        match accepted {
            Ok((tcp, _)) => {
                // Small writes (a request, a TLS handshake's flight) must not wait for
                // an acknowledgement.
                let _ = tcp.set_nodelay(true);
                shared.tunnels.spawn(handle(tcp, shared.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Why no server name could be read from a client's first bytes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HelloError {
    /// The bytes are not a ClientHello with a server name.
    #[error(transparent)]
    Sni(#[from] crate::sni::SniError),
    /// The client sent no whole ClientHello in time.
    #[error("no ClientHello in time")]
    Timeout,
}

/// Reads the TLS ClientHello from the start of `tcp` within `within`: the server name
/// and the bytes read (to be passed on, since nothing is decrypted here).
pub(crate) async fn read_client_hello(
    tcp: &mut TcpStream,
    within: Duration,
) -> Result<(String, Vec<u8>), HelloError> {
    let mut hello = Vec::with_capacity(1024);
    let read = tokio::time::timeout(within, async {
        loop {
            if let Some(name) = server_name(&hello)? {
                return Ok(name);
            }
            if hello.len() >= MAX_CLIENT_HELLO {
                return Err(crate::sni::SniError::Fragmented);
            }
            let mut chunk = vec![0u8; MAX_CLIENT_HELLO - hello.len()];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    return Err(crate::sni::SniError::Malformed("connection closed early"));
                }
                Ok(n) => hello.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    match read {
        Ok(Ok(name)) => Ok((name, hello)),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(HelloError::Timeout),
    }
}

async fn sni_client(mut tcp: TcpStream, imports: &[ImportEntry], shared: Arc<Shared>) {
    let mut line = Pending::of_tcp(Direction::Outbound, &tcp);
    line.entry.app_tls = AppTls::Passthrough;
    let (name, hello) = match read_client_hello(&mut tcp, shared.me.timeouts.stream_open).await {
        Ok(read) => read,
        Err(e) => {
            let msg = e.to_string();
            return refuse_local(tcp, &shared, "unknown", "bad_client_hello", &msg, line);
        }
    };
    line.entry.requested_server_name = Some(name.clone());
    let Some((namespace, service)) = clusterset_service(&name) else {
        let msg = format!("{name} is not a <service>.<namespace>.svc.clusterset.local name");
        return refuse_local(tcp, &shared, "unknown", "unknown_service", &msg, line);
    };
    let Some(import) = imports
        .iter()
        .find(|i| i.namespace == namespace && i.name == service)
    else {
        let msg = format!("{service}.{namespace} is not imported by this gateway");
        return refuse_local(tcp, &shared, "unknown", "unknown_service", &msg, line);
    };
    client(tcp, &RemoteService::of(import), hello, line, shared, None).await;
}

/// Opens a stream to the first of `target.clusters` that accepts: a cluster whose
/// gateway is unreachable or has no healthy endpoint is skipped for the next; a policy
/// refusal ends the search.
pub(crate) async fn open_any(
    shared: &Shared,
    target: &RemoteService,
    header: &StreamHeader,
) -> Result<(crate::stream::Opened, String), OpenError> {
    let mut last = None;
    for (i, cluster) in target.clusters.iter().enumerate() {
        // Split the budget among the clusters left, so that one unreachable gateway
        // cannot use up the whole of it before the others are tried.
        let left = u32::try_from(target.clusters.len() - i).unwrap_or(u32::MAX);
        let budget = shared.me.timeouts.stream_open / left;
        match open(shared.connections.dialled(), cluster, header, budget).await {
            Ok(opened) => return Ok((opened, cluster.clone())),
            Err(OpenError::Refused(r)) if r.status == crate::header::Status::Denied => {
                return Err(OpenError::Refused(r));
            }
            Err(err) => {
                if matches!(err, OpenError::NoAnswer(_)) {
                    shared.connections.dialled().mark_failed(cluster).await;
                }
                tracing::info!(request = header.request_id, %cluster, error = %err, "exporting cluster failed; trying the next");
                last = Some(err);
            }
        }
    }
    Err(last.unwrap_or_else(|| OpenError::NoAnswer("no cluster exports this service".into())))
}

/// A workload that presented its SVID: the identity its stream carries, and its place
/// among the open connections that follow the registrations.
pub(crate) struct WorkloadCaller {
    /// Its verified SPIFFE ID.
    pub(crate) id: isthmus_ca::SpiffeId,
    /// Cut when no registration gives the identity any more, or the bundle no longer
    /// trusts its chain.
    pub(crate) open: crate::open_tunnels::OpenTunnel<crate::workload_api::WorkloadConnection>,
}

/// One local client of `target`: open a stream, then splice. `first` holds bytes already
/// read from the client (the ClientHello on the SNI listener); `line` is its access-log
/// line so far. A `workload` speaks for itself; any other client speaks as this gateway.
pub(crate) async fn client<D: Downstream>(
    tcp: D,
    target: &RemoteService,
    first: Vec<u8>,
    mut line: Pending,
    shared: Arc<Shared>,
    workload: Option<WorkloadCaller>,
) {
    let source = workload.as_ref().map_or(&shared.me.id, |w| &w.id);
    let service = format!("{}.{}", target.name, target.namespace);
    let attributes = vec![
        KeyValue::new("isthmus.destination.service", service.clone()),
        KeyValue::new("isthmus.source.cluster", shared.me.cluster.clone()),
    ];
    let span = shared
        .tracing
        .span("outbound", SpanKind::Client, Parent::Root, attributes);
    let open_span = shared.tracing.span(
        "stream.open",
        SpanKind::Client,
        Parent::Span(&span),
        vec![KeyValue::new("isthmus.clusters", target.clusters.join(","))],
    );
    let header = shared.stream_header(target, source.clone(), open_span.traceparent());
    let id = header.request_id;
    line.request(id);
    line.traced(&span);
    span.set(KeyValue::new(
        "isthmus.request_id",
        crate::access_log::entry::request_id(id),
    ));
    let entry = &mut line.entry;
    entry.source_cluster = Some(shared.me.cluster.clone());
    entry.source_principal = Some(source.to_string());
    entry.destination_service = Some(service.clone());
    let (mut opened, cluster) = match open_any(&shared, target, &header).await {
        Ok(opened) => opened,
        Err(err) => {
            let status = match &err {
                OpenError::Refused(response) => {
                    line.entry
                        .response_flags
                        .extend(ResponseFlag::of_status(response.status));
                    line.entry.refusal_reason = Some(response.message.clone());
                    match response.status {
                        Status::Denied => line.entry.policy_decision = Some("deny".into()),
                        Status::RateLimited => {
                            line.entry.policy_decision = Some("rate_limited".into());
                        }
                        _ => {}
                    }
                    response.status.label().to_owned()
                }
                OpenError::Peer(_) | OpenError::NoAnswer(_) => {
                    line.entry
                        .response_flags
                        .push(ResponseFlag::UpstreamConnectionFailure);
                    line.entry.upstream_transport_failure_reason = Some(err.to_string());
                    "peer_unavailable".to_owned()
                }
            };
            shared
                .metrics
                .refusals
                .get_or_create(&RefusalLabels {
                    direction: MetricDirection::Outbound,
                    status,
                    destination_service: service.clone(),
                })
                .inc();
            tracing::warn!(request = id, %service, clusters = ?target.clusters, error = %err, "outbound connection refused");
            open_span.fail(&err.to_string());
            span.fail(&err.to_string());
            tcp.reset();
            return line.write(&shared.access_log, None);
        }
    };
    open_span.set(KeyValue::new(
        "isthmus.destination.cluster",
        cluster.clone(),
    ));
    open_span.end();
    line.entry.destination_cluster = Some(cluster.clone());
    line.entry.upstream_cluster = Some(cluster.clone());
    line.entry.upstream_host = Some(opened.peer.to_string());
    line.entry.connection_security_policy = SecurityPolicy::MutualTls;
    let m = &shared.metrics;
    m.stream_open_seconds
        .get_or_create(&PeerLabels {
            peer_cluster: cluster,
        })
        .observe(opened.latency.as_secs_f64());
    if !first.is_empty() && opened.send.write_all(&first).await.is_err() {
        tcp.reset();
        line.entry
            .response_flags
            .push(ResponseFlag::UpstreamConnectionFailure);
        return line.write(&shared.access_log, None);
    }
    let labels = ConnLabels {
        direction: MetricDirection::Outbound,
        source_cluster: shared.me.cluster.clone(),
        destination_service: service.clone(),
        security: Security::MutualTls,
    };
    m.connections_opened.get_or_create(&labels).inc();
    m.connections_active.get_or_create(&labels).inc();
    let request = m
        .bytes
        .get_or_create_owned(&byte_labels(&labels, Flow::Request));
    request.inc_by(first.len() as u64);
    let counters = Counters {
        tcp_to_quic: request,
        quic_to_tcp: m
            .bytes
            .get_or_create_owned(&byte_labels(&labels, Flow::Response)),
    };
    let cut = workload
        .as_ref()
        .map_or(&shared.tunnels.cut, |w| w.open.cut());
    let summary = splice(
        tcp,
        opened.send,
        opened.recv,
        &opened.early,
        shared.me.timeouts.idle,
        &counters,
        cut,
    )
    .await;
    if let Some(verdict) = workload.as_ref().and_then(|w| w.open.revoked()) {
        tracing::warn!(request = id, %service, %source, rule = %verdict.rule, reason = %verdict.reason, "open connection cut (policy_revoked)");
        m.count_revoked(
            shared.me.cluster.clone(),
            service.clone(),
            verdict.rule.clone(),
        );
        line.entry.revoked(verdict.rule);
    }
    drop(workload);
    m.connections_active.get_or_create(&labels).dec();
    m.connections_closed.get_or_create(&labels).inc();
    tracing::debug!(request = id, %service, ?summary, "outbound connection closed");
    // The downstream of this hop is the local client; the ClientHello already read
    // counts as received from it.
    let from_client = first.len() as u64 + summary.from_tcp.bytes;
    line.entry.bytes_received = from_client;
    line.entry.bytes_sent = summary.from_quic.bytes;
    if line.entry.app_tls == AppTls::None {
        line.entry.app_tls = AppTls::sniff(first.first().copied().or(summary.from_tcp.first));
    }
    line.write(&shared.access_log, Some(&summary));
}

/// Refuses a local client (counted, logged, its access-log `line` written) with RST.
pub(crate) fn refuse_local(
    tcp: impl Downstream,
    shared: &Shared,
    service: &str,
    status: &str,
    message: &str,
    line: Pending,
) {
    tcp.reset();
    refused_local(shared, service, status, message, line);
}

/// Counts and logs a refused local client and writes its access-log `line`, the
/// connection already gone.
pub(crate) fn refused_local(
    shared: &Shared,
    service: &str,
    status: &str,
    message: &str,
    mut line: Pending,
) {
    shared
        .metrics
        .refusals
        .get_or_create(&RefusalLabels {
            direction: MetricDirection::Outbound,
            status: status.to_owned(),
            destination_service: service.to_owned(),
        })
        .inc();
    tracing::warn!(service, status, message, "refused local client");
    line.entry
        .response_flags
        .push(ResponseFlag::of_label(status));
    if line.entry.refusal_reason.is_none() {
        line.entry.refusal_reason = Some(message.to_owned());
    }
    if line.entry.destination_service.is_none() && service != "unknown" {
        line.entry.destination_service = Some(service.to_owned());
    }
    line.write(&shared.access_log, None);
}
