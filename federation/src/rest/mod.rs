//! The admin API over REST/JSON (axum): each route authenticates its caller, decodes
//! its path, query and body ([`call`], [`body`]) and calls one operation of the admin
//! layer. One table ([`routes`]) makes both the router and the OpenAPI 3.1 document
//! ([`openapi`]) at `/openapi.json`. Every error answer is one envelope,
//! `{"error": {"kind", "message", "field"?, "leader"?}}`; bodies over 1 MiB get 413.

pub mod body;
mod call;
pub mod openapi;
pub mod routes;
pub mod serve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use isthmus_ca::SpiffeId;
use isthmus_federation_api::ApiError;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use crate::access::{Grant, Principal};
use crate::admin::{Admin, Credentials};

/// Largest request body.
pub const MAX_BODY: usize = 1024 * 1024;
/// How long a client may take to send a request body once its head is in: a body
/// dribbled slower is refused, and the connection is freed.
pub const BODY_DEADLINE: Duration = Duration::from_secs(20);

/// An error as a REST answer: its status and the error envelope.
#[derive(Debug)]
pub struct Failure(pub ApiError);

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut error = json!({ "kind": self.0.kind(), "message": self.0.to_string() });
        if let Some(field) = self.0.field() {
            error["field"] = json!(field);
        }
        if let ApiError::NotLeader {
            leader: Some(leader),
        } = &self.0
        {
            let (id, info) = &**leader;
            error["leader"] = json!({ "node_id": id, "admin_addr": info.admin_addr, "rest_addr": info.rest_addr });
        }
        (status, axum::Json(json!({ "error": error }))).into_response()
    }
}

/// The verified client certificate's SPIFFE ID, if the client sent one (the TLS layer
/// has checked it).
#[derive(Debug, Clone)]
pub struct PeerIdentity(Option<SpiffeId>);

/// Authenticates every request (client certificate or bearer token) and hands the
/// principal to the route; anonymous calls stop here.
async fn authenticate(
    State(admin): State<Arc<Admin>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut authorization = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str().map(str::to_owned).map_err(|_| ()));
    // The UI's session cookie is a bearer token, for reads only: a cross-site page
    // cannot make a signed-in browser write (and SameSite=Strict keeps it from sending
    // the cookie at all).
    let read = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if authorization.is_none()
        && read
        && let Some(token) = crate::ui::session(request.headers())
    {
        authorization = Some(Ok(format!("Bearer {token}")));
    }
    let credentials = Credentials {
        peer: peer.0,
        authorization,
    };
    match admin.authenticate(&credentials).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => Failure(e).into_response(),
    }
}

/// Refuses, before its request is decoded, a caller whose role can never make a call
/// of the route's kind.
async fn attempt(
    State(grant): State<Grant>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let refused = match request.extensions().get::<Principal>() {
        Some(principal) => principal.may_attempt(grant),
        None => Err(ApiError::Unauthenticated("no caller".into())),
    };
    match refused {
        Ok(()) => next.run(request).await,
        Err(e) => Failure(e).into_response(),
    }
}

/// The most of an oversized body read and thrown away so that its sender sees the 413:
/// a client that sends at once, without `Expect: 100-continue`, is still writing when
/// the answer comes, and a connection closed under it reads as a broken pipe, not an
/// answer. Bodies declared larger than this get the 413 without the wait.
const DISCARD_MAX: u64 = 4 * MAX_BODY as u64;
/// How long the throwing away may take.
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Refuses a body whose declared length is over [`MAX_BODY`] before decoding any of
/// it. axum's own limit answers only once it has read past the limit, which is after
/// hyper has told an `Expect: 100-continue` client to go ahead: the client then sends
/// its megabytes into a connection closed under it and never sees the 413.
async fn refuse_oversized(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(length) = declared.filter(|l| *l > MAX_BODY as u64) else {
        return next.run(request).await;
    };
    let asks_first = headers
        .get(axum::http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !asks_first && length <= DISCARD_MAX {
        use http_body_util::BodyExt;
        let mut body = request.into_body();
        let _ = tokio::time::timeout(DISCARD_TIME, async {
            while let Some(Ok(_)) = body.frame().await {}
        })
        .await;
    }
    Failure(ApiError::TooLarge(format!(
        "a body of {length} bytes; the limit is {MAX_BODY}"
    )))
    .into_response()
}

/// The REST router over `admin`.
pub fn router(admin: Arc<Admin>) -> Router {
    let auth = axum::middleware::from_fn_with_state(admin.clone(), authenticate);
    let mut api = Router::new();
    for route in routes::table() {
        let grant = axum::middleware::from_fn_with_state(route.op.grant(), attempt);
        api = api.route(route.path, route.handler.route_layer(grant));
    }
    let api = api
        .fallback(|| async {
            Failure(ApiError::NotFound(
                "no such endpoint; see /openapi.json".into(),
            ))
        })
        .layer(auth);
    Router::new()
        .merge(crate::ui::router())
        .merge(api)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(refuse_oversized))
        .with_state(admin)
}

/// The REST port's already-handshaken TLS connections, as the acceptor hands them over
/// ([`serve::serve`] serves them).
pub struct TlsListener {
    pub(crate) incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}
