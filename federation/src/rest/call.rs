//! One REST request as a route sees it — path parameters, query and body — with
//! decoders that refuse what does not parse, naming the parameter or the field. Nothing
//! here rejects in axum's own words: every refusal is the API's error envelope.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts as _, RawPathParams, Request};
use axum::http::StatusCode;
use isthmus_federation_api::ApiError;
use isthmus_federation_api::model::Expect;
use isthmus_federation_api::status::Consistency;
use serde::de::DeserializeOwned;

use super::{BODY_DEADLINE, Failure, MAX_BODY};

/// A request's path parameters, query and body.
#[derive(Debug)]
pub(crate) struct Call {
    params: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Result<Bytes, ApiError>,
}

impl<S: Send + Sync> FromRequest<S> for Call {
    type Rejection = Failure;

    async fn from_request(request: Request, state: &S) -> Result<Self, Failure> {
        let (mut parts, body) = request.into_parts();
        let params = match RawPathParams::from_request_parts(&mut parts, state).await {
            Ok(params) => params
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            Err(e) => return Err(ApiError::invalid("path", e.body_text()).into()),
        };
        let query = match parts.uri.query() {
            None => Vec::new(),
            Some(raw) => serde_urlencoded::from_str(raw)
                .map_err(|e| ApiError::invalid("query", format!("{e} (in {raw:?})")))?,
        };
        let request = Request::from_parts(parts, body);
        let body = tokio::time::timeout(BODY_DEADLINE, Bytes::from_request(request, state)).await;
        let body = match body {
            Err(_) => Err(ApiError::invalid(
                "body",
                format!(
                    "not received within {} s of the request head; send the whole body at once",
                    BODY_DEADLINE.as_secs()
                ),
            )),
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(
                ApiError::TooLarge(format!("the body is over the {MAX_BODY}-byte limit")),
            ),
            Ok(Err(rejection)) => Err(ApiError::invalid("body", rejection.body_text())),
        };
        Ok(Self {
            params,
            query,
            body,
        })
    }
}

fn unknown_parameter(key: &str, known: &[&str]) -> ApiError {
    let known = if known.is_empty() {
        "no query parameters".to_owned()
    } else {
        known.join(", ")
    };
    ApiError::invalid(
        key,
        format!("unknown query parameter; this endpoint takes {known}"),
    )
}

impl Call {
    /// Path parameter `name` (the route declares it).
    pub(crate) fn param(&self, name: &str) -> Result<String, ApiError> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| ApiError::Internal(format!("route has no path parameter {name}")))
    }

    /// The query's parameters, each checked against `known`.
    fn query(&self, known: &[&str]) -> Result<&[(String, String)], ApiError> {
        if let Some((key, _)) = self
            .query
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            return Err(unknown_parameter(key, known));
        }
        Ok(&self.query)
    }

    /// A route that takes no query parameters.
    pub(crate) fn no_query(&self) -> Result<(), ApiError> {
        self.query(&[]).map(|_| ())
    }

    /// `?consistency=linearizable|stale` (default linearizable).
    pub(crate) fn consistency(&self) -> Result<Consistency, ApiError> {
        let mut consistency = Consistency::Linearizable;
        for (_, value) in self.query(&["consistency"])? {
            consistency = match value.as_str() {
                "linearizable" => Consistency::Linearizable,
                "stale" => Consistency::Stale,
                _ => {
                    return Err(ApiError::invalid(
                        "consistency",
                        format!("{value:?}: use linearizable or stale"),
                    ));
                }
            }
        }
        Ok(consistency)
    }

    /// `?expect_revision=N` (compare-and-set; absent: any).
    pub(crate) fn expect(&self) -> Result<Expect, ApiError> {
        let mut expect = None;
        for (_, value) in self.query(&["expect_revision"])? {
            expect = Some(revision("expect_revision", value)?);
        }
        Ok(Expect::from_api(expect))
    }

    /// Integer query parameters of a route that takes exactly `names`, each absent or
    /// a non-negative integer.
    pub(crate) fn integers(&self, names: &[&str]) -> Result<Vec<Option<u64>>, ApiError> {
        let query = self.query(names)?;
        names
            .iter()
            .map(|name| {
                query
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| revision(name, v))
                    .transpose()
            })
            .collect()
    }

    /// The body's bytes.
    pub(crate) fn bytes(&self) -> Result<&Bytes, ApiError> {
        self.body.as_ref().map_err(Clone::clone)
    }

    /// The body as JSON of `T`, the field path of a mistake kept; an empty body reads
    /// as `{}` when `empty_is_object` (a body whose every field is optional).
    pub(crate) fn json<T: DeserializeOwned>(&self, empty_is_object: bool) -> Result<T, ApiError> {
        let bytes = self.bytes()?;
        let bytes: &[u8] = if empty_is_object && bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            bytes
        };
        isthmus_federation_api::json::from_slice(bytes, "body", None)
    }
}

fn revision(name: &str, value: &str) -> Result<u64, ApiError> {
    // Digits only: `u64::from_str` would also take a leading `+`.
    value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse().ok())
        .flatten()
        .ok_or_else(|| ApiError::invalid(name, format!("{value:?} is not a non-negative integer")))
}
