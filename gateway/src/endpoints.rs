//! Connecting to an exported service's endpoints in the order its balancer chose: the
//! next endpoint when one fails (each failure counts towards its ejection), all within
//! an optional deadline. Used by peers' tunnel streams and by the ingress alike.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::catalog::ServicePort;

/// Why no endpoint took the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("all {tried} endpoints of {service} failed; last: {last}")]
pub(crate) struct NoEndpoint {
    /// The service (`name.namespace`).
    pub(crate) service: String,
    /// How many were in the order.
    pub(crate) tried: usize,
    /// How the last one failed.
    pub(crate) last: String,
}

/// Connects to the first endpoint of `order` that answers, each within `connect`, all
/// before `deadline` when there is one. The balancer learns of each success (the
/// connection counts as open on that endpoint until [`ServicePort`]'s `closed`) and each
/// failure.
pub(crate) async fn connect(
    port: &ServicePort,
    service: &str,
    order: &[SocketAddr],
    connect: Duration,
    deadline: Option<tokio::time::Instant>,
) -> Result<(TcpStream, SocketAddr), NoEndpoint> {
    let mut last = String::from("no endpoint to try");
    for addr in order {
        let now = tokio::time::Instant::now();
        let until = match deadline {
            Some(deadline) if now >= deadline => {
                last = format!("{addr}: not tried, the time for answering ran out");
                break;
            }
            Some(deadline) => deadline.min(now + connect),
            None => now + connect,
        };
        match tokio::time::timeout_at(until, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                port.balancer().connected(*addr);
                let _ = tcp.set_nodelay(true);
                return Ok((tcp, *addr));
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: no answer within {connect:?}"),
        }
        let ejected = port.balancer().failed(*addr, Instant::now());
        tracing::warn!(%service, endpoint = %addr, error = %last, ejected, "endpoint connect failed");
    }
    Err(NoEndpoint {
        service: service.to_owned(),
        tried: order.len(),
        last,
    })
}
