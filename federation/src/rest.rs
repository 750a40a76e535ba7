//! The admin API over REST/JSON (axum), on the same service layer as gRPC, with its
//! OpenAPI 3 description at `/openapi.json`. Bodies are parsed with the field path
//! kept, so a bad body is refused naming the field; bodies over 1 MiB get 413.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use isthmus_ca::SpiffeId;

use crate::access::{AccessControl, Operation, Principal, Role};
use crate::claims::Claim;
use crate::command::{Command, Expect};
use crate::error::ApiError;
use crate::model::{Cluster, ExportKey, PolicyDoc, ServiceExport, TrustBundleDoc};
use crate::raft::{NodeId, NodeInfo};
use crate::service::{Consistency, Federation, MemberStatus, StatusReport};
use crate::validate;

/// Largest request body.
pub const MAX_BODY: usize = 1024 * 1024;

type Shared = State<Arc<Federation>>;

/// Query parameters every read accepts.
#[derive(Debug, Default)]
struct ReadQuery {
    consistency: Consistency,
}

/// Query parameters every write accepts.
#[derive(Debug, Default)]
struct WriteQuery {
    expect_revision: Option<u64>,
}

/// A write's answer.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Written {
    revision: u64,
}

/// A list's answer.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Listed<T> {
    revision: u64,
    items: Vec<T>,
}

/// The body of `POST /v1/members`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AddMember {
    node_id: NodeId,
    #[serde(flatten)]
    info: NodeInfo,
}

struct Failure(ApiError);

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
        match &self.0 {
            ApiError::InvalidArgument { field, .. } => error["field"] = json!(field),
            ApiError::NotLeader {
                leader: Some(leader),
            } => {
                let (id, info) = &**leader;
                error["leader"] = json!({ "node_id": id, "admin_addr": info.admin_addr, "rest_addr": info.rest_addr })
            }
            _ => {}
        }
        (status, axum::Json(json!({ "error": error }))).into_response()
    }
}

type Answer<T> = Result<axum::Json<T>, Failure>;

/// A request body as read, or why it could not be (too large, cut off).
type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

fn raw_body(bytes: &Body) -> Result<&Bytes, ApiError> {
    match bytes {
        Ok(bytes) => Ok(bytes),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(
            ApiError::TooLarge(format!("the body is over the {MAX_BODY}-byte limit")),
        ),
        Err(rejection) => Err(ApiError::invalid("body", rejection.body_text())),
    }
}

fn body<T: DeserializeOwned>(bytes: &Body) -> Result<T, ApiError> {
    let bytes = raw_body(bytes)?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name.to_owned(),
            (parent, Some(name)) => format!("{parent}.{name}"),
            (".", None) => "body".to_owned(),
            (path, None) => path.to_owned(),
        };
        ApiError::invalid(field, message)
    })
}

fn read_query(RawQuery(raw): RawQuery) -> Result<ReadQuery, ApiError> {
    let mut query = ReadQuery::default();
    for (key, value) in pairs(raw)? {
        match key.as_str() {
            "consistency" => {
                query.consistency = match value.as_str() {
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
            _ => return Err(unknown_parameter(&key, "consistency")),
        }
    }
    Ok(query)
}

fn write_query(RawQuery(raw): RawQuery) -> Result<WriteQuery, ApiError> {
    let mut query = WriteQuery::default();
    for (key, value) in pairs(raw)? {
        match key.as_str() {
            "expect_revision" => {
                let revision = value.parse().map_err(|_| {
                    ApiError::invalid(
                        "expect_revision",
                        format!("{value:?} is not a revision (a non-negative integer)"),
                    )
                })?;
                query.expect_revision = Some(revision);
            }
            _ => return Err(unknown_parameter(&key, "expect_revision")),
        }
    }
    Ok(query)
}

fn pairs(raw: Option<String>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    serde_urlencoded::from_str(&raw)
        .map_err(|e| ApiError::invalid("query", format!("{e} (in {raw:?})")))
}

fn unknown_parameter(key: &str, known: &str) -> ApiError {
    ApiError::invalid(
        key,
        format!("unknown query parameter; this endpoint takes {known}"),
    )
}

/// The verified client certificate's SPIFFE ID, if the client sent one (the TLS layer
/// has checked it); the connection's info for the access check.
#[derive(Debug, Clone)]
pub struct PeerIdentity(Option<SpiffeId>);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for PeerIdentity
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        let (_, session) = stream.io().get_ref();
        Self(crate::tls::peer_id(session.peer_certificates()))
    }
}

/// Authenticates every request (client certificate or bearer token) and hands the
/// principal to the handler, which checks the operation; anonymous calls stop here.
async fn authenticate(
    State((access, federation)): State<(Arc<AccessControl>, Arc<Federation>)>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::Unauthenticated("the authorization header is not text".into())
            })
        })
        .transpose();
    let principal = header.and_then(|h| access.principal(peer.0.as_ref(), h));
    let principal = match principal {
        Ok(p) => p,
        Err(e) => return Failure(e).into_response(),
    };
    if let Role::Gateway(cluster) = &principal.role {
        if let Err(e) = crate::grpc::gateway_cluster_active(&federation, cluster).await {
            return Failure(e).into_response();
        }
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

type Who = Extension<Principal>;

/// The REST router over `federation`; `access` says who may call.
pub fn router(federation: Arc<Federation>, access: Arc<AccessControl>) -> Router {
    let auth = axum::middleware::from_fn_with_state((access, federation.clone()), authenticate);
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/v1/status", get(status))
        .route("/v1/init", post(init))
        .route("/v1/members", get(list_members).post(add_member))
        .route("/v1/members/{id}", axum::routing::delete(remove_member))
        .route("/v1/clusters", get(list_clusters))
        .route(
            "/v1/clusters/{name}",
            get(get_cluster).put(put_cluster).delete(delete_cluster),
        )
        .route("/v1/exports", get(list_exports))
        .route(
            "/v1/exports/{cluster}/{namespace}/{name}",
            get(get_export).put(put_export).delete(delete_export),
        )
        .route("/v1/policies", get(list_policies))
        .route(
            "/v1/policies/{name}",
            get(get_policy).put(put_policy).delete(delete_policy),
        )
        .route("/v1/claims", get(list_claims))
        .route(
            "/v1/claims/{host}",
            axum::routing::put(put_claim).delete(delete_claim),
        )
        .route("/v1/trust-bundle", get(get_bundle).put(put_bundle))
        .fallback(|| async {
            Failure(ApiError::NotFound(
                "no such endpoint; see /openapi.json".into(),
            ))
        })
        .layer(auth)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(federation)
}

async fn status(State(f): Shared, Extension(who): Who, q: RawQuery) -> Answer<StatusReport> {
    who.may(&Operation::Read)?;
    let q = read_query(q)?;
    Ok(axum::Json(f.status(q.consistency).await?))
}

async fn init(State(f): Shared, Extension(who): Who) -> Answer<StatusReport> {
    who.may(&Operation::Platform)?;
    Ok(axum::Json(f.init().await?))
}

async fn list_members(
    State(f): Shared,
    Extension(who): Who,
    q: RawQuery,
) -> Answer<Vec<MemberStatus>> {
    who.may(&Operation::Read)?;
    let q = read_query(q)?;
    Ok(axum::Json(f.status(q.consistency).await?.members))
}

async fn add_member(State(f): Shared, Extension(who): Who, bytes: Body) -> Answer<StatusReport> {
    who.may(&Operation::Platform)?;
    let add: AddMember = body(&bytes)?;
    validate::member(add.node_id, &add.info)?;
    Ok(axum::Json(f.add_member(add.node_id, add.info).await?))
}

async fn remove_member(
    State(f): Shared,
    Extension(who): Who,
    Path(id): Path<String>,
) -> Answer<StatusReport> {
    who.may(&Operation::Platform)?;
    let id: NodeId = id
        .parse()
        .map_err(|_| ApiError::invalid("id", format!("{id:?} is not a node id")))?;
    Ok(axum::Json(f.remove_member(id).await?))
}

async fn list_clusters(
    State(f): Shared,
    Extension(who): Who,
    q: RawQuery,
) -> Answer<Listed<Cluster>> {
    who.may(&Operation::Read)?;
    let q = read_query(q)?;
    let listed = f
        .read(q.consistency, |s| Listed {
            revision: s.revision,
            items: s.clusters.values().cloned().collect(),
        })
        .await?;
    Ok(axum::Json(listed))
}

async fn get_cluster(
    State(f): Shared,
    Extension(who): Who,
    Path(name): Path<String>,
    q: RawQuery,
) -> Answer<Cluster> {
    who.may(&Operation::Read)?;
    let q = read_query(q)?;
    validate::name("name", &name)?;
    let found = f
        .read(q.consistency, |s| s.clusters.get(&name).cloned())
        .await?;
    found
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("cluster \"{name}\" does not exist")).into())
}

async fn put_cluster(
    State(f): Shared,
    Extension(who): Who,
    Path(name): Path<String>,
    q: RawQuery,
    bytes: Body,
) -> Answer<Written> {
    who.may(&Operation::Platform)?;
    let q = write_query(q)?;
    let cluster: Cluster = body(&bytes)?;
    if cluster.name != name {
        return Err(ApiError::invalid(
            "name",
            format!("{:?} differs from the path's {name:?}", cluster.name),
        )
        .into());
    }
    // `write` validates every command, naming the field.
    let expect = Expect::from_api(q.expect_revision);
    let revision = f.write(Command::PutCluster { cluster, expect }).await?;
    Ok(axum::Json(Written { revision }))
}

async fn delete_cluster(
    State(f): Shared,
    Extension(who): Who,
    Path(name): Path<String>,
    q: RawQuery,
) -> Answer<Written> {
    who.may(&Operation::Platform)?;
    let q = write_query(q)?;
    let expect = Expect::from_api(q.expect_revision);
    let revision = f.write(Command::DeleteCluster { name, expect }).await?;
    Ok(axum::Json(Written { revision }))
}

async fn list_exports(
    State(f): Shared,
    Extension(who): Who,
    q: RawQuery,
) -> Answer<Listed<ServiceExport>> {
    who.may(&Operation::Read)?;
    let q = read_query(q)?;
    let listed = f
        .read(q.consistency, |s| Listed {
            revision: s.revision,
            items: s.exports.values().cloned().collect(),
        })
        .await?;
    Ok(axum::Json(listed))
}

fn export_key((cluster, namespace, name): (String, String, String)) -> Result<ExportKey, ApiError> {
    let key = ExportKey {
        cluster,
        namespace,
        name,
    };
    validate::export_key(&key)?;
    Ok(key)
}

async fn get_export(
    State(f): Shared,
    Extension(who): Who,
    Path(path): Path<(String, String, String)>,
    q: RawQuery,
) -> Answer<ServiceExport> {
    who.may(&Operation::Read)?;
    let q = read_query(q)?;
    let key = export_key(path)?;
    let found = f
        .read(q.consistency, |s| s.exports.get(&key).cloned())
        .await?;
    found
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("export {key} does not exist")).into())
}

async fn put_export(
    State(f): Shared,
    Extension(who): Who,
    Path(path): Path<(String, String, String)>,
    q: RawQuery,
    bytes: Body,
) -> Answer<Written> {
    let q = write_query(q)?;
    let key = export_key(path)?;
    who.may(&Operation::Export {
        cluster: &key.cluster,
        namespace: &key.namespace,
    })?;
    let export: ServiceExport = body(&bytes)?;
    for (field, got, want) in [
        ("cluster", &export.cluster, &key.cluster),
        ("namespace", &export.namespace, &key.namespace),
        ("name", &export.name, &key.name),
    ] {
        if got != want {
            return Err(ApiError::invalid(
                field,
                format!("{got:?} differs from the path's {want:?}"),
            )
            .into());
        }
    }
    let expect = Expect::from_api(q.expect_revision);
    let revision = f.write(Command::PutExport { export, expect }).await?;
    Ok(axum::Json(Written { revision }))
}

async fn delete_export(
    State(f): Shared,
    Extension(who): Who,
    Path(path): Path<(String, String, String)>,
    q: RawQuery,
) -> Answer<Written> {
    let q = write_query(q)?;
    let key = export_key(path)?;
    who.may(&Operation::Export {
        cluster: &key.cluster,
        namespace: &key.namespace,
    })?;
    let expect = Expect::from_api(q.expect_revision);
    let revision = f.write(Command::DeleteExport { key, expect }).await?;
    Ok(axum::Json(Written { revision }))
}

async fn list_policies(
    State(f): Shared,
    Extension(who): Who,
    q: RawQuery,
) -> Answer<Listed<PolicyDoc>> {
    who.may(&Operation::Read)?;
    let q = read_query(q)?;
    let listed = f
        .read(q.consistency, |s| Listed {
            revision: s.revision,
            items: s.policies.values().cloned().collect(),
        })
        .await?;
    Ok(axum::Json(listed))
}

async fn get_policy(
    State(f): Shared,
    Extension(who): Who,
    Path(name): Path<String>,
    q: RawQuery,
) -> Answer<PolicyDoc> {
    who.may(&Operation::Read)?;
    let q = read_query(q)?;
    validate::name("name", &name)?;
    let found = f
        .read(q.consistency, |s| s.policies.get(&name).cloned())
        .await?;
    found
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("policy \"{name}\" does not exist")).into())
}

/// The body is the policy document itself (`{"rules": [...], "rate_limits": [...]}`),
/// kept as written; reads return it as `body` text, as the watch does.
async fn put_policy(
    State(f): Shared,
    Extension(who): Who,
    Path(name): Path<String>,
    q: RawQuery,
    bytes: Body,
) -> Answer<Written> {
    let q = write_query(q)?;
    validate::name("name", &name)?;
    let body = std::str::from_utf8(raw_body(&bytes)?)
        .map_err(|_| ApiError::invalid("body", "not UTF-8; send the policy as JSON"))?;
    let (namespaces, current) = crate::grpc::policy_scope(&f, &name, Some(body)).await?;
    who.may(&Operation::Policy { namespaces })?;
    let policy = PolicyDoc {
        name,
        body: body.to_owned(),
        revision: 0,
    };
    let expect = crate::grpc::scoped_expect(&who, q.expect_revision, current)?;
    let revision = f.write(Command::PutPolicy { policy, expect }).await?;
    Ok(axum::Json(Written { revision }))
}

async fn delete_policy(
    State(f): Shared,
    Extension(who): Who,
    Path(name): Path<String>,
    q: RawQuery,
) -> Answer<Written> {
    let q = write_query(q)?;
    validate::name("name", &name)?;
    let (namespaces, current) = crate::grpc::policy_scope(&f, &name, None).await?;
    who.may(&Operation::Policy { namespaces })?;
    let expect = crate::grpc::scoped_expect(&who, q.expect_revision, current)?;
    let revision = f.write(Command::DeletePolicy { name, expect }).await?;
    Ok(axum::Json(Written { revision }))
}

async fn list_claims(State(f): Shared, Extension(who): Who, q: RawQuery) -> Answer<Listed<Claim>> {
    who.may(&Operation::Read)?;
    let q = read_query(q)?;
    let listed = f
        .read(q.consistency, |s| Listed {
            revision: s.revision,
            items: s.claims.values().cloned().collect(),
        })
        .await?;
    Ok(axum::Json(listed))
}

/// The body of `PUT /v1/claims/{host}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ClaimBody {
    namespace: String,
}

async fn put_claim(
    State(f): Shared,
    Extension(who): Who,
    Path(host): Path<String>,
    q: RawQuery,
    bytes: Body,
) -> Answer<Written> {
    let q = write_query(q)?;
    let claim: ClaimBody = body(&bytes)?;
    let held = crate::grpc::claim_namespace(&f, &host).await?;
    who.may(&Operation::Claim {
        namespace: &claim.namespace,
        held: held.as_deref(),
    })?;
    let claim = Claim {
        host,
        namespace: claim.namespace,
        revision: 0,
    };
    let expect = Expect::from_api(q.expect_revision);
    let revision = f.write(Command::PutClaim { claim, expect }).await?;
    Ok(axum::Json(Written { revision }))
}

async fn delete_claim(
    State(f): Shared,
    Extension(who): Who,
    Path(host): Path<String>,
    q: RawQuery,
) -> Answer<Written> {
    let q = write_query(q)?;
    let held = crate::grpc::claim_namespace(&f, &host).await?;
    let namespace = held.clone().unwrap_or_default();
    who.may(&Operation::Claim {
        namespace: &namespace,
        held: held.as_deref(),
    })?;
    let expect = Expect::from_api(q.expect_revision);
    let revision = f.write(Command::DeleteClaim { host, expect }).await?;
    Ok(axum::Json(Written { revision }))
}

async fn get_bundle(State(f): Shared, Extension(who): Who, q: RawQuery) -> Answer<TrustBundleDoc> {
    who.may(&Operation::Read)?;
    let q = read_query(q)?;
    let found = f.read(q.consistency, |s| s.trust_bundle.clone()).await?;
    found
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound("no trust bundle has been set".into()).into())
}

async fn put_bundle(
    State(f): Shared,
    Extension(who): Who,
    q: RawQuery,
    bytes: Body,
) -> Answer<Written> {
    who.may(&Operation::Platform)?;
    let q = write_query(q)?;
    let trust_bundle: TrustBundleDoc = body(&bytes)?;
    let expect = Expect::from_api(q.expect_revision);
    let revision = f
        .write(Command::SetTrustBundle {
            trust_bundle,
            expect,
        })
        .await?;
    Ok(axum::Json(Written { revision }))
}

async fn openapi(Extension(who): Who) -> Answer<Value> {
    who.may(&Operation::Read)?;
    Ok(axum::Json(openapi_document()))
}

/// The OpenAPI 3 description of this API, with schemas generated from the same types
/// the handlers parse.
pub fn openapi_document() -> Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let schema = |r: schemars::Schema| r.to_value();
    let cluster = schema(generator.subschema_for::<Cluster>());
    let export = schema(generator.subschema_for::<ServiceExport>());
    let bundle = schema(generator.subschema_for::<TrustBundleDoc>());
    let status = schema(generator.subschema_for::<StatusReport>());
    let member = schema(generator.subschema_for::<AddMember>());
    let written = schema(generator.subschema_for::<Written>());
    let policy_doc = schema(generator.subschema_for::<PolicyDoc>());
    let policy_body = schema(generator.subschema_for::<crate::policy::PolicyBody>());
    let claim = schema(generator.subschema_for::<Claim>());
    let claim_body = schema(generator.subschema_for::<ClaimBody>());
    let components = Value::Object(generator.definitions().clone());
    let consistency = json!({
        "name": "consistency", "in": "query", "required": false,
        "schema": { "type": "string", "enum": ["linearizable", "stale"], "default": "linearizable" },
        "description": "linearizable (default): reflects every write acknowledged before the read began; stale: whatever this node has applied"
    });
    let expect = json!({
        "name": "expect_revision", "in": "query", "required": false,
        "schema": { "type": "integer", "minimum": 0 },
        "description": "compare-and-set: 0 = must not exist yet; N = must be at revision N"
    });
    let error = json!({ "description": "error: { error: { kind, message, field?, leader? } }" });
    let ok = |schema: &Value| json!({ "description": "OK", "content": { "application/json": { "schema": schema } } });
    let list = |item: &Value| json!({ "type": "object", "properties": { "revision": { "type": "integer" }, "items": { "type": "array", "items": item } } });
    let path_param = |name: &str| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } });
    let read = |summary: &str, schema: Value, params: Vec<Value>| {
        let mut params = params;
        params.push(consistency.clone());
        json!({ "summary": summary, "parameters": params, "responses": { "200": ok(&schema), "default": error } })
    };
    let write = |summary: &str, body: Option<&Value>, params: Vec<Value>| {
        let mut params = params;
        params.push(expect.clone());
        let mut op = json!({ "summary": summary, "parameters": params, "responses": { "200": ok(&written), "default": error } });
        if let Some(body) = body {
            op["requestBody"] =
                json!({ "required": true, "content": { "application/json": { "schema": body } } });
        }
        op
    };
    let export_params = || {
        vec![
            path_param("cluster"),
            path_param("namespace"),
            path_param("name"),
        ]
    };
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Isthmus federation admin API",
            "version": format!("v1 (data model {})", crate::model::MODEL_VERSION),
            "description": "Every call needs a client certificate (mutual TLS) of a federation node or a configured admin identity."
        },
        "paths": {
            "/v1/status": { "get": read("Leader, term, members, applied index and lags", status.clone(), vec![]) },
            "/v1/init": { "post": { "summary": "Bootstrap a new federation with this node as its only voter", "responses": { "200": ok(&status), "default": error } } },
            "/v1/members": {
                "get": read("Members with their lag", json!({ "type": "array" }), vec![]),
                "post": { "summary": "Add a node: learner, catch up, voter", "requestBody": { "required": true, "content": { "application/json": { "schema": member } } }, "responses": { "200": ok(&status), "default": error } }
            },
            "/v1/members/{id}": { "delete": { "summary": "Remove a node", "parameters": [path_param("id")], "responses": { "200": ok(&status), "default": error } } },
            "/v1/clusters": { "get": read("All clusters", list(&cluster), vec![]) },
            "/v1/clusters/{name}": {
                "get": read("One cluster", cluster.clone(), vec![path_param("name")]),
                "put": write("Create or replace a cluster", Some(&cluster), vec![path_param("name")]),
                "delete": write("Delete a cluster (refused while it exports services)", None, vec![path_param("name")])
            },
            "/v1/exports": { "get": read("All exports", list(&export), vec![]) },
            "/v1/exports/{cluster}/{namespace}/{name}": {
                "get": read("One export", export.clone(), export_params()),
                "put": write("Create or replace an export (its cluster must exist)", Some(&export), export_params()),
                "delete": write("Delete an export", None, export_params())
            },
            "/v1/policies": { "get": read("All authorization policies", list(&policy_doc), vec![]) },
            "/v1/policies/{name}": {
                "get": read("One policy (its body as JSON text)", policy_doc.clone(), vec![path_param("name")]),
                "put": write("Create or replace a policy; the body is the policy document", Some(&policy_body), vec![path_param("name")]),
                "delete": write("Delete a policy", None, vec![path_param("name")])
            },
            "/v1/claims": { "get": read("All traffic claims", list(&claim), vec![]) },
            "/v1/claims/{host}": {
                "put": write("Claim a host for a namespace (refused if another namespace's claim overlaps)", Some(&claim_body), vec![path_param("host")]),
                "delete": write("Give up a claim", None, vec![path_param("host")])
            },
            "/v1/trust-bundle": {
                "get": read("The trust bundle", bundle.clone(), vec![]),
                "put": write("Replace the trust bundle", Some(&bundle), vec![])
            }
        },
        "components": { "schemas": components }
    })
}

/// An axum listener over already-handshaken TLS streams.
pub struct TlsListener {
    pub(crate) incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    pub(crate) local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(pair) => pair,
            // The acceptor stopped: the server is shutting down; wait for it to.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
