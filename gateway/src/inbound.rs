//! The receiving side: accept peer gateways' QUIC connections, read each stream's header,
//! choose an endpoint of the exported service, answer with a status, then splice.

use std::net::SocketAddr;
use std::sync::Arc;

use isthmus_ca::{CertFacts, Identity, SpiffeId};
use quinn::{RecvStream, SendStream};
use rustls_pki_types::CertificateDer;

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

use crate::access_log::Pending;
use crate::access_log::entry::{AppTls, Direction, ResponseFlag, SecurityPolicy};
use crate::admission::{Destination, Refusal, Request, Source, UNKNOWN};
use crate::endpoints;
use crate::gateway::Shared;
use crate::header::{FrameError, MAX_BODY, Response, Status, StreamHeader};
use crate::metrics::{ConnLabels, Direction as MetricDirection, RefusalLabels, Security, Side};
use crate::splice::{Counters, splice};
use crate::stream::{ReadFrameError, read_frame};
use crate::telemetry::{Parent, Span};

/// What to do with a new connection attempt, before any handshake state exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Draining: refuse at once, so that the peer dials elsewhere instead of waiting.
    Refuse,
    /// The source address is not proven: answer with a Retry and keep no state.
    Retry,
    /// Handshake.
    Accept,
}

/// Decides an attempt (pure). Every address is validated with a Retry before the
/// handshake: until then QUIC lets a server send three times what it received (RFC 9000
/// §8.1), and quinn rounds that up to whole datagrams, so one spoofed 1,200-byte Initial
/// drew 4,360 bytes of certificate flight and retransmissions (3.6x, measured by
/// `tests/amplification.rs`). A Retry is one small packet and no connection state; the
/// price is one round trip per new peer connection, and peer connections are
/// long-lived (tunnelled connections are streams on them).
fn decide(draining: bool, address_validated: bool) -> Attempt {
    if draining {
        Attempt::Refuse
    } else if address_validated {
        Attempt::Accept
    } else {
        Attempt::Retry
    }
}

/// Accepts peer connections until the endpoint closes.
pub(crate) async fn serve(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let draining = shared.tunnels.stop.is_cancelled();
        match decide(draining, incoming.remote_address_validated()) {
            Attempt::Refuse => incoming.refuse(),
            Attempt::Retry => {
                if let Err(e) = incoming.retry() {
                    // Only when a Retry is not allowed: the Initial already answered
                    // one, so its address is proven after all.
                    tokio::spawn(connection(e.into_incoming(), shared.clone()));
                }
            }
            Attempt::Accept => {
                tokio::spawn(connection(incoming, shared.clone()));
            }
        }
    }
}

async fn connection(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let remote = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(err) => {
            if let Some(reason) = crate::quic::failure_reason(&err) {
                shared
                    .metrics
                    .handshake_failed(Side::Accept, UNKNOWN, reason);
            }
            tracing::info!(%remote, error = %err, "peer handshake failed");
            return;
        }
    };
    let Some(peer_cluster) = peer_cluster(&connection) else {
        shared
            .metrics
            .handshake_failed(Side::Accept, UNKNOWN, "unknown_peer");
        connection.close(1u32.into(), b"not a gateway identity");
        return;
    };
    let catalog = shared.catalog.current();
    if catalog.peer(&peer_cluster).is_none() {
        // A revoked cluster is named (the federation's list bounds the label values),
        // so that one still dialling raises its own alert; any other stays unknown.
        if catalog.is_revoked(&peer_cluster) {
            shared
                .metrics
                .handshake_failed(Side::Accept, &peer_cluster, "revoked");
        } else {
            shared
                .metrics
                .handshake_failed(Side::Accept, UNKNOWN, "unknown_peer");
        }
        tracing::warn!(%remote, cluster = %peer_cluster, "refusing a gateway of a cluster that is not a peer");
        connection.close(1u32.into(), b"cluster is not a peer");
        return;
    }
    tracing::debug!(%remote, cluster = %peer_cluster, "peer connected");
    let _registered = shared.connections.accepted(&peer_cluster, &connection);
    // The cluster may have stopped being a peer between the check above and the
    // registration: check again so that a revocation cannot slip through.
    if shared.catalog.current().peer(&peer_cluster).is_none() {
        connection.close(1u32.into(), b"cluster is not a peer");
    }
    // Runs until the connection closes; streams opened while draining are refused with a
    // status so that the peer fails fast and its other streams go on.
    while let Ok((mut send, recv)) = connection.accept_bi().await {
        if shared.tunnels.stop.is_cancelled() {
            let msg = "the gateway is draining";
            let line = Line::new(&shared, &peer_cluster, remote);
            line.refuse(&mut send, &shared, UNKNOWN, Status::Error, msg)
                .await;
            continue;
        }
        let shared2 = shared.clone();
        let cluster = peer_cluster.clone();
        shared
            .tunnels
            .spawn(async move { stream(send, recv, cluster, remote, shared2).await });
    }
}

/// The peer's cluster, from its verified certificate.
fn peer_cluster(connection: &quinn::Connection) -> Option<String> {
    let certs = connection
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    let facts = CertFacts::parse(certs.first()?).ok()?;
    let id = SpiffeId::parse(facts.uris.first()?).ok()?;
    match id.identity().ok()? {
        Identity::Gateway { cluster, .. } => Some(cluster),
        _ => None,
    }
}

/// The access-log line of one inbound stream, filled in as it is decided, and the edge
/// it is tallied under once its service is known to be one of ours.
struct Line {
    pending: Pending,
    edge: Option<crate::traffic::EdgeKey>,
    /// The connection was opened to an endpoint (and counted as open on its edge).
    carrying: bool,
    /// The export port is declared `app_protocol = "tls"`.
    expects_tls: bool,
}

impl std::ops::Deref for Line {
    type Target = Pending;
    fn deref(&self) -> &Pending {
        &self.pending
    }
}

impl std::ops::DerefMut for Line {
    fn deref_mut(&mut self) -> &mut Pending {
        &mut self.pending
    }
}

impl Line {
    fn new(shared: &Shared, peer: &str, remote: SocketAddr) -> Self {
        let mut line = Pending::new(Direction::Inbound);
        let entry = &mut line.entry;
        entry.downstream_remote_address = Some(remote.to_string());
        entry.downstream_local_address = Some(shared.me.quic.to_string());
        entry.source_cluster = Some(peer.to_owned());
        entry.destination_cluster = Some(shared.me.cluster.clone());
        entry.connection_security_policy = SecurityPolicy::MutualTls;
        Self {
            pending: line,
            edge: None,
            carrying: false,
            expects_tls: false,
        }
    }

    /// Tallies the stream under its edge (the service is one this gateway knows).
    fn on_edge(&mut self, header: &StreamHeader) {
        let source = self.entry.source_cluster.clone().unwrap_or_default();
        self.edge = Some((source, header.namespace.clone(), header.service.clone()));
    }

    /// The connection is open and carrying.
    fn carrying(&mut self, shared: &Shared) {
        if let Some(key) = &self.edge {
            shared.traffic.opened(key, &self.pending.entry);
            self.carrying = true;
        }
    }

    fn header(&mut self, header: &StreamHeader) {
        self.pending.request(header.request_id);
        self.entry.source_principal = Some(header.source.to_string());
        self.entry.destination_service = Some(format!("{}.{}", header.service, header.namespace));
    }

    fn write(self, shared: &Shared, summary: Option<&crate::splice::Summary>) {
        if let Some(key) = &self.edge {
            let carried = self.carrying.then_some(crate::traffic::Carried {
                plaintext_on_tls: self.expects_tls && self.pending.entry.app_tls == AppTls::None,
            });
            shared.traffic.ended(key, &self.pending.entry, carried);
        }
        self.pending.write(&shared.access_log, summary);
    }

    /// Answers the peer with a refusal, counts and logs it.
    async fn refuse(
        mut self,
        send: &mut SendStream,
        shared: &Shared,
        service: &str,
        status: Status,
        message: &str,
    ) {
        shared
            .metrics
            .refusals
            .get_or_create(&RefusalLabels {
                direction: MetricDirection::Inbound,
                status: status.label().to_owned(),
                destination_service: service.to_owned(),
            })
            .inc();
        let peer = self.entry.source_cluster.as_deref().unwrap_or(UNKNOWN);
        tracing::warn!(peer, service, %status, message, "refused inbound stream");
        let _ = send
            .write_all(&Response::new(status, message).encode())
            .await;
        // A finished stream is still delivered after it is dropped.
        let _ = send.finish();
        self.entry
            .response_flags
            .extend(ResponseFlag::of_status(status));
        if status == Status::NoHealthyEndpoint {
            self.entry.upstream_transport_failure_reason = Some(message.to_owned());
        }
        self.entry.refusal_reason = Some(message.to_owned());
        self.write(shared, None);
    }
}

async fn stream(
    mut send: SendStream,
    mut recv: RecvStream,
    peer: String,
    remote: SocketAddr,
    shared: Arc<Shared>,
) {
    let mut line = Line::new(&shared, &peer, remote);
    let read = tokio::time::timeout(
        shared.me.timeouts.stream_open,
        read_frame(&mut recv, 4 + MAX_BODY, StreamHeader::decode),
    )
    .await;
    let (header, early) = match read {
        Ok(Ok(frame)) => frame,
        Ok(Err(ReadFrameError::Frame(FrameError::UnsupportedVersion(v)))) => {
            let msg = format!("protocol version {v} is not supported; this gateway speaks 1");
            let status = Status::UnsupportedVersion;
            return line.refuse(&mut send, &shared, UNKNOWN, status, &msg).await;
        }
        Ok(Err(e)) => {
            let msg = format!("bad stream header: {e}");
            return line
                .refuse(&mut send, &shared, UNKNOWN, Status::Error, &msg)
                .await;
        }
        Err(_) => {
            let msg = "no stream header in time";
            line.entry
                .response_flags
                .push(ResponseFlag::DownstreamConnectionTermination);
            return line
                .refuse(&mut send, &shared, UNKNOWN, Status::Error, msg)
                .await;
        }
    };
    let id = header.request_id;
    line.header(&header);
    let span = shared.tracing.span(
        "stream.accept",
        SpanKind::Server,
        Parent::Remote(header.trace),
        vec![
            KeyValue::new("isthmus.source.cluster", peer.clone()),
            KeyValue::new("isthmus.source.principal", header.source.to_string()),
            KeyValue::new(
                "isthmus.destination.service",
                format!("{}.{}", header.service, header.namespace),
            ),
            KeyValue::new(
                "isthmus.request_id",
                crate::access_log::entry::request_id(id),
            ),
        ],
    );
    line.traced(&span);
    let request = Request {
        source: Source::Peer {
            cluster: &peer,
            identity: &header.source,
        },
        namespace: &header.namespace,
        service: &header.service,
        port: header.port,
        http: None,
    };
    let admitted = match shared.admit(&request, Some(id)) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let Refusal {
                status,
                reason,
                label,
                verdict,
                limit,
            } = refusal;
            if let Some(verdict) = &verdict {
                line.entry.decided(verdict);
            }
            if let Some(limit) = limit {
                line.entry.policy_decision = Some("rate_limited".into());
                line.entry.policy_rule = Some(limit);
            }
            // Refusals of a service this gateway names are tallied under its edge;
            // names only the peer made up are not (they would grow the table).
            if label != UNKNOWN {
                line.on_edge(&header);
            }
            decision_span(&shared, &span, &line.entry);
            span.fail(&reason);
            return line
                .refuse(&mut send, &shared, &label, status, &reason)
                .await;
        }
    };
    line.entry.decided(&admitted.verdict);
    line.on_edge(&header);
    decision_span(&shared, &span, &line.entry);
    let service = admitted.label;
    let Destination::Local { port, order } = admitted.destination else {
        // A peer's stream is only admitted to an export of this cluster.
        let msg = format!("{service} is not exported here");
        return line
            .refuse(&mut send, &shared, UNKNOWN, Status::UnknownService, &msg)
            .await;
    };
    line.expects_tls = port.expects_tls();
    // All endpoint attempts together stay inside the sender's wait for an answer.
    let budget = tokio::time::Instant::now() + shared.me.timeouts.stream_open.mul_f64(0.8);
    let connect_span = shared.tracing.span(
        "upstream.connect",
        SpanKind::Client,
        Parent::Span(&span),
        vec![],
    );
    let connected = endpoints::connect(
        &port,
        &service,
        &order,
        shared.me.timeouts.connect,
        Some(budget),
    )
    .await;
    let (tcp, addr) = match connected {
        Ok(pair) => pair,
        Err(e) => {
            let msg = e.to_string();
            connect_span.fail(&msg);
            span.fail(&msg);
            return line
                .refuse(
                    &mut send,
                    &shared,
                    &service,
                    Status::NoHealthyEndpoint,
                    &msg,
                )
                .await;
        }
    };
    connect_span.set(KeyValue::new("isthmus.endpoint", addr.to_string()));
    connect_span.end();
    line.entry.upstream_host = Some(addr.to_string());
    line.entry.upstream_cluster = Some(shared.me.cluster.clone());
    if send
        .write_all(&Response::new(Status::Ok, "").encode())
        .await
        .is_err()
    {
        port.balancer().closed(addr);
        line.entry
            .response_flags
            .push(ResponseFlag::DownstreamConnectionTermination);
        return line.write(&shared, None);
    }
    let labels = ConnLabels {
        direction: MetricDirection::Inbound,
        source_cluster: peer.clone(),
        destination_service: service.clone(),
        security: Security::MutualTls,
    };
    let m = &shared.metrics;
    m.connections_opened.get_or_create(&labels).inc();
    m.connections_active.get_or_create(&labels).inc();
    line.carrying(&shared);
    let counters = Counters {
        // Inbound: the stream carries the request, TCP the response.
        quic_to_tcp: m
            .bytes
            .get_or_create_owned(&byte_labels(&labels, crate::metrics::Flow::Request)),
        tcp_to_quic: m
            .bytes
            .get_or_create_owned(&byte_labels(&labels, crate::metrics::Flow::Response)),
    };
    tracing::debug!(request = id, %service, endpoint = %addr, source = %header.source, "inbound connection");
    // Decided again whenever the policy changes: cut if it no longer allows this.
    let open = shared.open_tunnels.register(
        crate::open_tunnels::Decided {
            cluster: peer.clone(),
            workload: admitted.workload,
            namespace: header.namespace.clone(),
            service: header.service.clone(),
            port: header.port,
        },
        shared.tunnels.cut.child_token(),
    );
    let summary = splice(
        tcp,
        send,
        recv,
        &early,
        shared.me.timeouts.idle,
        &counters,
        open.cut(),
    )
    .await;
    if let Some(verdict) = open.revoked() {
        tracing::warn!(request = id, %service, source = %header.source, rule = %verdict.rule, "open connection cut: the policy no longer allows it (policy_revoked)");
        line.entry.revoked(verdict.rule);
    }
    drop(open);
    port.balancer().closed(addr);
    drop(admitted.permit);
    m.connections_active.get_or_create(&labels).dec();
    m.connections_closed.get_or_create(&labels).inc();
    tracing::debug!(request = id, %service, ?summary, "inbound connection closed");
    // The downstream of this hop is the peer gateway: it sends the request bytes.
    line.entry.bytes_received = summary.from_quic.bytes;
    line.entry.bytes_sent = summary.from_tcp.bytes;
    line.entry.app_tls = AppTls::sniff(summary.from_quic.first);
    line.write(&shared, Some(&summary));
}

/// The policy's decision as an instant span under `span`.
fn decision_span(shared: &Shared, span: &Span, entry: &crate::access_log::entry::Entry) {
    let mut attributes = Vec::new();
    if let Some(decision) = &entry.policy_decision {
        attributes.push(KeyValue::new("isthmus.policy.decision", decision.clone()));
    }
    if let Some(rule) = &entry.policy_rule {
        attributes.push(KeyValue::new("isthmus.policy.rule", rule.clone()));
    }
    crate::telemetry::event(&shared.tracing, "policy.decision", span, attributes);
}

pub(crate) fn byte_labels(
    labels: &ConnLabels,
    flow: crate::metrics::Flow,
) -> crate::metrics::ByteLabels {
    crate::metrics::ByteLabels {
        direction: labels.direction,
        flow,
        source_cluster: labels.source_cluster.clone(),
        destination_service: labels.destination_service.clone(),
        security: labels.security,
    }
}

#[cfg(test)]
mod tests {
    use super::{Attempt, decide};

    #[test]
    fn unproven_addresses_are_retried_and_draining_refuses_everyone() {
        assert_eq!(decide(false, false), Attempt::Retry);
        assert_eq!(decide(false, true), Attempt::Accept);
        assert_eq!(decide(true, false), Attempt::Refuse);
        assert_eq!(decide(true, true), Attempt::Refuse);
    }
}
