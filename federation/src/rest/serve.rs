//! Serves the REST router on the connections the TLS acceptor hands over: HTTP/1.1 with
//! a bound on reading each request head, the verified client identity put in every
//! request, and a graceful shutdown that lets requests in progress finish.
//!
//! `axum::serve` sets no timer on hyper's connection builder, and without one hyper
//! never applies its header-read timeout: a client that had finished its TLS handshake
//! (a bearer-token caller needs no certificate for that) could hold a connection for
//! ever by sending its request head a byte at a time.

use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::{PeerIdentity, TlsListener};

/// How long a client may take to send a whole request head, from the first byte of a
/// request (or from the connection's start for the first).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `stop`, then waits for the connections to finish
/// the requests they have in progress.
pub async fn serve(mut listener: TlsListener, router: Router, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.incoming.recv() => accepted,
        };
        let Some((stream, _remote)) = accepted else {
            break;
        };
        // Reap what has finished, so that the set holds only live connections.
        while connections.try_join_next().is_some() {}
        let peer = PeerIdentity(crate::tls::peer_id(stream.get_ref().1.peer_certificates()));
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer.clone()));
            let router = router.clone();
            // The router never fails: its errors are answers.
            async move { router.oneshot(request).await }
        });
        let stop = stop.clone();
        connections.spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "REST connection ended");
                    }
                    return;
                }
                () = stop.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "REST connection ended");
            }
        });
    }
    while connections.join_next().await.is_some() {}
}
