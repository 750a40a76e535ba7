//! The web UI, served by every node on its REST listener under `/ui/`: plain HTML, CSS
//! and a little JavaScript, embedded in the binary (nothing is fetched at run time),
//! each answer with `Content-Security-Policy: default-src 'self'`. The pages (overview,
//! topology, policy, alerts) hold no data: they read the admin API (`/v1/mesh` and its
//! event stream, `/v1/alerts`, `/v1/mesh/decisions`, `/v1/policies`) with the caller's
//! credentials — a client certificate, or the bearer token entered on the sign-in page
//! and kept in a `Secure; HttpOnly; SameSite=Strict` cookie. The API accepts that cookie
//! for reads only (GET), so a page elsewhere cannot make a signed-in browser write.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::admin::{Admin, Credentials};

/// The session cookie's name.
pub const COOKIE: &str = "isthmus_session";

const INDEX: &str = include_str!("assets/index.html");
const SIGNIN: &str = include_str!("assets/signin.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

const POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn page(status: StatusCode, kind: &'static str, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: with no referrer a browser sends `Origin: null`
    // on form posts, and the sign-in could not tell its own page from another's.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html(status: StatusCode, body: &'static str) -> Response {
    page(status, "text/html; charset=utf-8", body)
}

fn redirect(to: &'static str, cookie: Option<String>) -> Response {
    let mut response = html(StatusCode::SEE_OTHER, "");
    let h = response.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static(to));
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, value);
    }
    response
}

/// The session cookie a request carries, if any.
pub fn session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Whether a request made by a form comes from a page of this origin (a browser sends
/// `Origin` on every POST).
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (
        headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()),
        host,
    ) {
        (Some(origin), Some(host)) => origin == format!("https://{host}"),
        // Not a browser's form (curl, a script): nothing to forge.
        (None, _) => true,
        _ => false,
    }
}

const CROSS_ORIGIN: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Isthmus — refused</title></head><body><p data-error=\"cross-origin\">Refused: this form was not sent from this site's own page.</p></body></html>";

const REFUSED: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Isthmus — refused</title><link rel=\"stylesheet\" href=\"/ui/app.css\"></head><body><main class=\"signin\"><h1>Isthmus</h1><p data-error=\"token-refused\">That token was refused.</p><p><a href=\"/ui/signin\">Try again</a></p></main></body></html>";

async fn sign_in(State(admin): State<Arc<Admin>>, headers: HeaderMap, body: Bytes) -> Response {
    if !same_origin(&headers) {
        return html(StatusCode::FORBIDDEN, CROSS_ORIGIN);
    }
    let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .ok()
        .and_then(|form| form.into_iter().find(|(k, _)| k == "token").map(|(_, v)| v))
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    // A cookie value cannot hold every byte; tokens this federation mints never need to.
    let printable = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let credentials = Credentials {
        peer: None,
        authorization: Some(Ok(format!("Bearer {token}"))),
    };
    if !printable || admin.authenticate(&credentials).await.is_err() {
        return html(StatusCode::UNAUTHORIZED, REFUSED);
    }
    let cookie =
        format!("{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=43200");
    redirect("/ui/", Some(cookie))
}

async fn sign_out(headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return html(StatusCode::FORBIDDEN, CROSS_ORIGIN);
    }
    let cleared = format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    redirect("/ui/signin", Some(cleared))
}

/// The UI's routes (no authentication of their own: the pages hold no data).
pub fn router() -> Router<Arc<Admin>> {
    Router::new()
        .route("/ui", get(|| async { redirect("/ui/", None) }))
        .route("/ui/", get(|| async { html(StatusCode::OK, INDEX) }))
        .route("/ui/signin", get(|| async { html(StatusCode::OK, SIGNIN) }))
        .route(
            "/ui/app.js",
            get(|| async { page(StatusCode::OK, "text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { page(StatusCode::OK, "text/css; charset=utf-8", STYLE) }),
        )
        .route("/ui/session", post(sign_in))
        .route("/ui/signout", post(sign_out))
}
