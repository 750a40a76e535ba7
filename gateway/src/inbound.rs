//! The receiving side: accept peer gateways' QUIC connections, read each stream's header,
//! choose an endpoint of the exported service, answer with a status, then splice.

use std::sync::Arc;

use isthmus_ca::{CertFacts, Identity, SpiffeId};
use quinn::{RecvStream, SendStream};
use rustls_pki_types::CertificateDer;

use crate::admission::{Destination, Refusal, Request, Source, UNKNOWN};
use crate::endpoints;
use crate::gateway::Shared;
use crate::header::{FrameError, MAX_BODY, Response, Status, StreamHeader};
use crate::metrics::{ConnLabels, Direction, RefusalLabels, Security};
use crate::splice::{Counters, splice};
use crate::stream::{ReadFrameError, read_frame};

/// Accepts peer connections until the endpoint closes; while draining, refuses them at
/// once so that peers dial elsewhere instead of waiting for a timeout.
pub(crate) async fn serve(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        if shared.tunnels.stop.is_cancelled() {
            incoming.refuse();
            continue;
        }
        tokio::spawn(connection(incoming, shared.clone()));
    }
}

async fn connection(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let remote = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(err) => {
            if let Some(reason) = crate::quic::failure_reason(&err) {
                shared.metrics.handshake_failed(reason);
            }
            tracing::info!(%remote, error = %err, "peer handshake failed");
            return;
        }
    };
    let Some(peer_cluster) = peer_cluster(&connection) else {
        shared.metrics.handshake_failed("unknown_peer");
        connection.close(1u32.into(), b"not a gateway identity");
        return;
    };
    if shared.catalog.current().peer(&peer_cluster).is_none() {
        shared.metrics.handshake_failed("unknown_peer");
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
            refuse(
                &mut send,
                &shared,
                &peer_cluster,
                UNKNOWN,
                Status::Error,
                msg,
            )
            .await;
            continue;
        }
        let shared2 = shared.clone();
        let cluster = peer_cluster.clone();
        shared
            .tunnels
            .spawn(async move { stream(send, recv, cluster, shared2).await });
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

async fn stream(mut send: SendStream, mut recv: RecvStream, peer: String, shared: Arc<Shared>) {
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
            return refuse(&mut send, &shared, &peer, UNKNOWN, status, &msg).await;
        }
        Ok(Err(e)) => {
            let msg = format!("bad stream header: {e}");
            return refuse(&mut send, &shared, &peer, UNKNOWN, Status::Error, &msg).await;
        }
        Err(_) => {
            let msg = "no stream header in time";
            return refuse(&mut send, &shared, &peer, UNKNOWN, Status::Error, msg).await;
        }
    };
    let id = header.request_id;
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
                ..
            } = refusal;
            return refuse(&mut send, &shared, &peer, &label, status, &reason).await;
        }
    };
    let service = admitted.label;
    let Destination::Local { port, order } = admitted.destination else {
        // A peer's stream is only admitted to an export of this cluster.
        let msg = format!("{service} is not exported here");
        return refuse(
            &mut send,
            &shared,
            &peer,
            UNKNOWN,
            Status::UnknownService,
            &msg,
        )
        .await;
    };
    // All endpoint attempts together stay inside the sender's wait for an answer.
    let budget = tokio::time::Instant::now() + shared.me.timeouts.stream_open.mul_f64(0.8);
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
            return refuse(
                &mut send,
                &shared,
                &peer,
                &service,
                Status::NoHealthyEndpoint,
                &msg,
            )
            .await;
        }
    };
    if send
        .write_all(&Response::new(Status::Ok, "").encode())
        .await
        .is_err()
    {
        port.balancer().closed(addr);
        return;
    }
    let labels = ConnLabels {
        direction: Direction::Inbound,
        source_cluster: peer.clone(),
        destination_service: service.clone(),
        security: Security::MutualTls,
    };
    let m = &shared.metrics;
    m.connections_opened.get_or_create(&labels).inc();
    m.connections_active.get_or_create(&labels).inc();
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
    let summary = splice(
        tcp,
        send,
        recv,
        &early,
        shared.me.timeouts.idle,
        &counters,
        &shared.tunnels.cut,
    )
    .await;
    port.balancer().closed(addr);
    drop(admitted.permit);
    m.connections_active.get_or_create(&labels).dec();
    m.connections_closed.get_or_create(&labels).inc();
    tracing::debug!(request = id, %service, ?summary, "inbound connection closed");
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

async fn refuse(
    send: &mut SendStream,
    shared: &Shared,
    peer: &str,
    service: &str,
    status: Status,
    message: &str,
) {
    shared
        .metrics
        .refusals
        .get_or_create(&RefusalLabels {
            direction: Direction::Inbound,
            status: status.label().to_owned(),
            destination_service: service.to_owned(),
        })
        .inc();
    tracing::warn!(peer, service, %status, message, "refused inbound stream");
    let _ = send
        .write_all(&Response::new(status, message).encode())
        .await;
    // A finished stream is still delivered after it is dropped.
    let _ = send.finish();
}
