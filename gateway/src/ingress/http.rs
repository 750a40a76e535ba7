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
use crate::access_log::entry::{AppTls, Direction, Entry, ResponseFlag, SecurityPolicy};
use crate::access_log::{AccessLog, Pending};
use crate::admission::Destination;
use crate::gateway::Shared;
use crate::header::Status;
use crate::metrics::IngressLabels;
use crate::telemetry::{Parent, Span, TraceParent};
use crate::upstream::UpstreamError;
use hyper::client::conn::http1::SendRequest;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

use super::idle::{Activity, Tracked};
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
    let (idle, drain) = (shared.me.timeouts.idle, shared.me.timeouts.drain);
    let activity = Activity::new();
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |request| {
            let routes = routes.clone();
            let shared = shared.clone();
            let host = host.clone();
            let pool = pool.clone();
            let in_progress = activity.begin();
            async move {
                let response = handle(request, &host, &routes, &pool, &shared).await;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| Tracked::new(body, in_progress)),
                )
            }
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its request head does not hold a connection forever.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let serving = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(serving);
    tokio::select! {
        served = serving.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "ingress HTTP connection ended");
            }
            return;
        }
        () = cut.cancelled() => return,
        () = activity.idled(idle) => {}
    }
    // Idle: HTTP/2 gets a GOAWAY (and a PING, whose answer tells h2 that no request
    // crossed the GOAWAY), HTTP/1.1 a close. A client that does not answer is dropped
    // after IDLE_GOODBYE; a request that began in the meantime runs on, to the drain
    // deadline at most.
    tracing::debug!(idle = ?idle, "ingress HTTP connection idle: closing it");
    serving.as_mut().graceful_shutdown();
    let goodbye = async {
        tokio::time::sleep(IDLE_GOODBYE).await;
        activity.idled(std::time::Duration::ZERO).await;
    };
    tokio::select! {
        _ = serving => {}
        () = goodbye => {}
        () = tokio::time::sleep(drain) => {}
        () = cut.cancelled() => {}
    }
}

/// How long an idle connection being closed has to answer the goodbye.
const IDLE_GOODBYE: std::time::Duration = std::time::Duration::from_secs(2);

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
    mut request: Request<Incoming>,
    host: &str,
    routes: &[HttpRoute],
    pool: &Pool,
    shared: &Arc<Shared>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let method = request.method().as_str().to_owned();
    let mut line = Pending::new(Direction::Ingress);
    line.request(shared.next_request_id());
    request_line(&mut line.entry, &request, host);
    line.entry.source_cluster = Some(shared.me.cluster.clone());
    let remote = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let span = shared.tracing.span(
        "ingress.request",
        SpanKind::Server,
        Parent::Remote(remote),
        vec![
            KeyValue::new("http.request.method", method.clone()),
            KeyValue::new("url.path", path.clone()),
            KeyValue::new("server.address", host.to_owned()),
        ],
    );
    line.traced(&span);
    // The service (and a gateway it is behind) continues this trace.
    let trace = span.traceparent();
    if let Some(value) = trace.and_then(|t| HeaderValue::from_str(&t.to_string()).ok()) {
        request.headers_mut().insert(TRACEPARENT, value);
    }
    // The upstream and the service's logs can tell the request by the same id.
    if !request.headers().contains_key(REQUEST_ID)
        && let Some(id) = line.entry.request_id.as_deref()
        && let Ok(value) = HeaderValue::from_str(id)
    {
        request.headers_mut().insert(REQUEST_ID, value);
    }
    let routed = handle_routed(
        request, host, routes, pool, shared, &path, &method, &mut line, trace,
    )
    .await;
    finish(routed, host, shared, line, span)
}

/// The answer to a request and the service label it counts under.
type Routed = (Response<Body>, String);

/// Counts the answer and sends it with a body that writes the access-log line when it
/// has been sent (or dropped).
fn finish(
    (response, service): Routed,
    host: &str,
    shared: &Arc<Shared>,
    mut line: Pending,
    span: Span,
) -> Response<Body> {
    shared
        .metrics
        .ingress_requests
        .get_or_create(&IngressLabels {
            host: host.to_owned(),
            destination_service: service,
            code: response.status().as_u16().to_string(),
        })
        .inc();
    let code = response.status();
    line.entry.response_code = Some(code.as_u16());
    span.set(KeyValue::new(
        "http.response.status_code",
        i64::from(code.as_u16()),
    ));
    if code.is_server_error() || code == StatusCode::FORBIDDEN {
        span.fail(code.as_str());
    }
    let flag = match code {
        StatusCode::NOT_FOUND if line.entry.destination_service.is_none() => {
            Some(ResponseFlag::NoRoute)
        }
        StatusCode::FORBIDDEN => Some(ResponseFlag::PolicyDenied),
        StatusCode::TOO_MANY_REQUESTS => Some(ResponseFlag::RateLimited),
        StatusCode::SERVICE_UNAVAILABLE => Some(ResponseFlag::NoHealthyUpstream),
        StatusCode::BAD_GATEWAY if line.entry.upstream_transport_failure_reason.is_some() => {
            Some(ResponseFlag::UpstreamConnectionFailure)
        }
        _ => None,
    };
    line.entry.response_flags.extend(flag);
    let (parts, body) = response.into_parts();
    let logged = Logged {
        inner: body,
        line: Some(line),
        log: shared.access_log.clone(),
        sent: 0,
        _span: span,
    };
    Response::from_parts(parts, logged.boxed())
}

#[allow(clippy::too_many_arguments)]
async fn handle_routed(
    request: Request<Incoming>,
    host: &str,
    routes: &[HttpRoute],
    pool: &Pool,
    shared: &Arc<Shared>,
    path: &str,
    method: &str,
    line: &mut Pending,
    trace: Option<TraceParent>,
) -> Routed {
    let chosen = route(routes, path).cloned();
    match chosen {
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
            line.entry.destination_service = Some(label.clone());
            (
                forward(request, host, &r, method, path, pool, shared, line, trace).await,
                label,
            )
        }
    }
}

/// The header that carries a request's id (Envoy's).
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C trace context header.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The HTTP fields of an access-log line.
fn request_line(entry: &mut Entry, request: &Request<Incoming>, host: &str) {
    entry.protocol = match request.version() {
        hyper::Version::HTTP_2 => "HTTP/2",
        hyper::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    entry.method = Some(request.method().as_str().to_owned());
    entry.path = Some(request.uri().path().to_owned());
    entry.authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| header(request, hyper::header::HOST));
    entry.user_agent = header(request, hyper::header::USER_AGENT);
    entry.requested_server_name = Some(host.to_owned());
    entry.connection_security_policy = SecurityPolicy::None;
    entry.app_tls = AppTls::Terminated;
    if let Some(id) = header(request, REQUEST_ID) {
        entry.request_id = Some(id);
    }
    // The declared body size: the body itself streams through uncounted.
    entry.bytes_received = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
}

fn header(request: &Request<Incoming>, name: HeaderName) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect())
}

/// A response body that counts what it sends and writes the request's access-log line
/// when it is done: sent whole, or dropped because the client went away.
struct Logged {
    inner: Body,
    line: Option<Pending>,
    log: AccessLog,
    sent: u64,
    /// The request's span, ended with the response.
    _span: Span,
}

impl hyper::body::Body for Logged {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.sent += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(mut line) = self.line.take() {
            line.entry.bytes_sent = self.sent;
            line.write(&self.log, None);
        }
    }
}

/// Reads (and drops) up to 64 KiB of a request body the gateway answers itself, so
/// that a client still sending it reads the answer rather than a reset stream.
async fn drain(request: Request<Incoming>) {
    let limited = http_body_util::Limited::new(request.into_body(), 64 * 1024);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), limited.collect()).await;
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    mut request: Request<Incoming>,
    host: &str,
    r: &HttpRoute,
    method: &str,
    path: &str,
    pool: &Pool,
    shared: &Arc<Shared>,
    line: &mut Pending,
    trace: Option<TraceParent>,
) -> Response<Body> {
    let admitted = match super::admit(shared, &r.service, Some((method, path))) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            if let Some(verdict) = &refusal.verdict {
                line.entry.decided(verdict);
            }
            if let Some(limit) = &refusal.limit {
                line.entry.policy_decision = Some("rate_limited".into());
                line.entry.policy_rule = Some(limit.clone());
            }
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
    line.entry.decided(&admitted.verdict);
    if let Destination::Local { .. } = &admitted.destination {
        line.entry.destination_cluster = Some(shared.me.cluster.clone());
        line.entry.upstream_cluster = Some(shared.me.cluster.clone());
    }
    let (mut sender, endpoint) =
        match sender(shared, pool, r, host, admitted.destination, trace).await {
            Ok(pair) => pair,
            Err((response, why)) => {
                line.entry.upstream_transport_failure_reason = Some(why);
                return response;
            }
        };
    line.entry.upstream_host = endpoint.map(|a| a.to_string());
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
    trace: Option<TraceParent>,
) -> Result<(SendRequest<Incoming>, Option<std::net::SocketAddr>), (Response<Body>, String)> {
    if let Destination::Local { order, .. } = &destination
        && let Some((sender, addr)) = order
            .iter()
            .find_map(|addr| pool.take(*addr).map(|s| (s, *addr)))
    {
        return Ok((sender, Some(addr)));
    }
    let upstream = match crate::upstream::connect(shared, &r.service, destination, trace).await {
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
            let why = e.to_string();
            return Err((answer(status, format!("{}: {e}", r.service)), why));
        }
    };
    let endpoint = upstream.local_endpoint();
    let (sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
            Ok(pair) => pair,
            Err(e) => {
                let why = e.to_string();
                return Err((
                    answer(StatusCode::BAD_GATEWAY, format!("{}: {e}", r.service)),
                    why,
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
