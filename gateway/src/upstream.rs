//! Reaching a named service port from this gateway once admission has said where it
//! goes: an endpoint of this cluster's own export (direct TCP, in the balancer's order),
//! or another cluster's export through a tunnel stream (static imports, or the
//! federation's catalog). Used by the ingress, whose routes name services rather than
//! listeners.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::admission::Destination;
use crate::catalog::ServicePort;
use crate::gateway::Shared;
use crate::header::Status;
use crate::ingress::table::ServiceRef;
use crate::outbound::RemoteService;
use crate::stream::OpenError;

/// The clusters that export `service`, when this cluster does not: static imports
/// first, then the federation's catalog (in the order a new connection tries them).
fn remote(shared: &Arc<Shared>, service: &ServiceRef) -> Option<RemoteService> {
    let clusters: Vec<String> = shared
        .routes
        .imports
        .iter()
        .filter(|i| {
            i.namespace == service.namespace && i.name == service.name && i.port == service.port
        })
        .map(|i| i.cluster.clone())
        .collect();
    if !clusters.is_empty() {
        return Some(RemoteService {
            namespace: service.namespace.clone(),
            name: service.name.clone(),
            port: service.port,
            clusters,
        });
    }
    crate::membership::imports::route(
        &shared.routes.federation,
        &(service.namespace.clone(), service.name.clone()),
        service.port,
        shared,
    )
}

/// Why a service could not be reached, with the status it maps to.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// No cluster exports it (that this gateway knows of).
    #[error("{0} is not exported by this cluster nor imported here")]
    Unknown(String),
    /// Every endpoint or cluster failed.
    #[error("{0}")]
    Unavailable(String),
    /// A peer refused it with a status.
    #[error("refused by the exporting gateway: {status} ({message})")]
    Refused {
        /// The peer's status.
        status: Status,
        /// Its message.
        message: String,
    },
}

/// A byte stream to a service port: a TCP connection to a local endpoint, or a tunnel
/// stream. Dropping it closes it (and releases the endpoint's balancer slot).
pub(crate) enum Upstream {
    /// A local endpoint.
    Local {
        /// The connection.
        tcp: TcpStream,
        /// Released on drop.
        slot: EndpointSlot,
    },
    /// A tunnel stream (with bytes the peer sent after its answer first).
    Remote {
        /// From the peer.
        recv: tokio::io::Chain<std::io::Cursor<Vec<u8>>, quinn::RecvStream>,
        /// Towards the peer.
        send: quinn::SendStream,
    },
}

/// A balancer slot of a local endpoint, given back on drop.
pub(crate) struct EndpointSlot {
    port: Arc<ServicePort>,
    addr: std::net::SocketAddr,
}

impl Drop for EndpointSlot {
    fn drop(&mut self) {
        self.port.balancer().closed(self.addr);
    }
}

/// Connects to `service` where admission sent it: an endpoint of this cluster's
/// export, in the admitted order, or another cluster's through a tunnel stream.
pub(crate) async fn connect(
    shared: &Arc<Shared>,
    service: &ServiceRef,
    destination: Destination,
    trace: Option<crate::telemetry::TraceParent>,
) -> Result<Upstream, UpstreamError> {
    match destination {
        Destination::Local { port, order } => {
            let label = format!("{}.{}", service.name, service.namespace);
            let (tcp, addr) =
                crate::endpoints::connect(&port, &label, &order, shared.me.timeouts.connect, None)
                    .await
                    .map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
            Ok(Upstream::Local {
                tcp,
                slot: EndpointSlot { port, addr },
            })
        }
        Destination::Elsewhere => {
            let target = remote(shared, service)
                .ok_or_else(|| UpstreamError::Unknown(service.to_string()))?;
            let header = shared.stream_header(&target, shared.me.id.clone(), trace);
            match crate::outbound::open_any(shared, &target, &header).await {
                Ok((opened, _cluster)) => {
                    use tokio::io::AsyncReadExt;
                    Ok(Upstream::Remote {
                        recv: std::io::Cursor::new(opened.early).chain(opened.recv),
                        send: opened.send,
                    })
                }
                Err(OpenError::Refused(r)) => Err(UpstreamError::Refused {
                    status: r.status,
                    message: r.message,
                }),
                Err(e) => Err(UpstreamError::Unavailable(e.to_string())),
            }
        }
    }
}

impl Upstream {
    /// The local endpoint this connects to (`None` for a tunnel stream).
    pub(crate) fn local_endpoint(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Local { slot, .. } => Some(slot.addr),
            Self::Remote { .. } => None,
        }
    }
}

impl AsyncRead for Upstream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Local { tcp, .. } => Pin::new(tcp).poll_read(cx, buf),
            Self::Remote { recv, .. } => Pin::new(recv).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upstream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Local { tcp, .. } => Pin::new(tcp).poll_write(cx, buf),
            Self::Remote { send, .. } => AsyncWrite::poll_write(Pin::new(send), cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Local { tcp, .. } => Pin::new(tcp).poll_flush(cx),
            Self::Remote { send, .. } => AsyncWrite::poll_flush(Pin::new(send), cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Local { tcp, .. } => Pin::new(tcp).poll_shutdown(cx),
            Self::Remote { send, .. } => AsyncWrite::poll_shutdown(Pin::new(send), cx),
        }
    }
}
