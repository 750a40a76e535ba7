//! HTTP at the ingress, after TLS termination: HTTP/1.1 or HTTP/2 from the client (by
//! ALPN), each request routed by path to a service and forwarded over HTTP/1.1 on its
//! own upstream connection (a local endpoint or a tunnel stream). Answers the gateway
//! makes itself say why: 404 no route, 403 denied, 429 over a limit, 502/503 upstream.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::table::{HttpRoute, route};
use crate::admission::Destination;
use crate::gateway::Shared;
use crate::header::Status;
use crate::metrics::IngressLabels;
use crate::upstream::UpstreamError;
use hyper::client::conn::http1::SendRequest;

use super::pool::Pool;

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Headers that belong to one hop and are not forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// Serves HTTP on one terminated connection for host `host` until it closes.
pub(super) async fn serve<S>(
    stream: S,
    host: String,
    routes: Vec<HttpRoute>,
    pool: Arc<Pool>,
    shared: Arc<Shared>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let routes = Arc::new(routes);
    let host = Arc::new(host);
    let cut = shared.tunnels.cut.clone();
    let header_timeout = shared.me.timeouts.stream_open;
    let service = hyper::service::service_fn(move |request| {
        let routes = routes.clone();
        let shared = shared.clone();
        let host = host.clone();
        let pool = pool.clone();
        async move {
            Ok::<_, std::convert::Infallible>(handle(request, &host, &routes, &pool, &shared).await)
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its request head does not hold a connection forever.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let serving = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        served = serving => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "ingress HTTP connection ended");
            }
        }
        () = cut.cancelled() => {}
    }
}

fn answer(status: StatusCode, message: String) -> Response<Body> {
    let body = http_body_util::Full::new(Bytes::from(message + "\n"))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn handle(
    request: Request<Incoming>,
    host: &str,
    routes: &[HttpRoute],
    pool: &Pool,
    shared: &Arc<Shared>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let method = request.method().as_str().to_owned();
    let chosen = route(routes, &path).cloned();
    let (response, service) = match chosen {
        None => {
            drain(request).await;
            (
                answer(
                    StatusCode::NOT_FOUND,
                    format!("no route for {path} on {host}"),
                ),
                "none".to_owned(),
            )
        }
        Some(r) => {
            let label = format!("{}.{}", r.service.name, r.service.namespace);
            (
                forward(request, host, &r, &method, &path, pool, shared).await,
                label,
            )
        }
    };
    shared
        .metrics
        .ingress_requests
        .get_or_create(&IngressLabels {
            host: host.to_owned(),
            destination_service: service,
            code: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

/// Reads (and drops) up to 64 KiB of a request body the gateway answers itself, so
/// that a client still sending it reads the answer rather than a reset stream.
async fn drain(request: Request<Incoming>) {
    let limited = http_body_util::Limited::new(request.into_body(), 64 * 1024);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), limited.collect()).await;
}

async fn forward(
    mut request: Request<Incoming>,
    host: &str,
    r: &HttpRoute,
    method: &str,
    path: &str,
    pool: &Pool,
    shared: &Arc<Shared>,
) -> Response<Body> {
    let admitted = match super::admit(shared, &r.service, Some((method, path))) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            drain(request).await;
            let status = match refusal.status {
                Status::Denied => StatusCode::FORBIDDEN,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            return answer(status, refusal.reason);
        }
    };
    // Upstream is HTTP/1.1 with a Host header and an origin-form target, whatever the
    // client spoke.
    let authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| host.to_owned());
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.version_mut() = hyper::Version::HTTP_11;
    *request.uri_mut() = match target.parse() {
        Ok(uri) => uri,
        Err(_) => {
            return answer(
                StatusCode::BAD_REQUEST,
                format!("bad request target {target:?}"),
            );
        }
    };
    let headers = request.headers_mut();
    strip_hop_by_hop(headers);
    if let Ok(value) = HeaderValue::from_str(&authority) {
        headers.insert(hyper::header::HOST, value);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("https"),
    );
    let (mut sender, endpoint) = match sender(shared, pool, r, host, admitted.destination).await {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    match sender.send_request(request).await {
        Ok(response) => {
            // The connection serves the next request once this response is read.
            if let Some(addr) = endpoint {
                pool.put(addr, sender);
            }
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body.map_err(Into::into).boxed())
        }
        Err(e) => answer(StatusCode::BAD_GATEWAY, format!("{}: {e}", r.service)),
    }
}

/// A connection for one request to `r.service`: a kept connection to a local endpoint
/// when there is one ready, else a new one (a local endpoint, or a tunnel stream), with
/// the endpoint when it may be kept afterwards.
async fn sender(
    shared: &Arc<Shared>,
    pool: &Pool,
    r: &HttpRoute,
    host: &str,
    destination: Destination,
) -> Result<(SendRequest<Incoming>, Option<std::net::SocketAddr>), Response<Body>> {
    if let Destination::Local { order, .. } = &destination
        && let Some((sender, addr)) = order
            .iter()
            .find_map(|addr| pool.take(*addr).map(|s| (s, *addr)))
    {
        return Ok((sender, Some(addr)));
    }
    let upstream = match crate::upstream::connect(shared, &r.service, destination).await {
        Ok(u) => u,
        Err(e) => {
            let status = match &e {
                UpstreamError::Refused {
                    status: Status::Denied,
                    ..
                } => StatusCode::FORBIDDEN,
                UpstreamError::Refused {
                    status: Status::RateLimited,
                    ..
                } => StatusCode::TOO_MANY_REQUESTS,
                UpstreamError::Refused {
                    status: Status::NoHealthyEndpoint,
                    ..
                }
                | UpstreamError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            };
            tracing::warn!(host, service = %r.service, error = %e, "ingress upstream failed");
            return Err(answer(status, format!("{}: {e}", r.service)));
        }
    };
    let endpoint = upstream.local_endpoint();
    let (sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
            Ok(pair) => pair,
            Err(e) => {
                return Err(answer(
                    StatusCode::BAD_GATEWAY,
                    format!("{}: {e}", r.service),
                ));
            }
        };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "ingress upstream connection ended");
        }
    });
    Ok((sender, endpoint))
}

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    // Headers named in `connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}
