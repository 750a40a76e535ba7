//! Every REST route once: its method and path, what the OpenAPI document says of it, and
//! its handler — decode the call, run one admin operation, answer. [`super::router`]
//! and [`super::openapi`] are both made from [`table`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Extension, Json};
use isthmus_federation_api::alerts::AlertList;
use isthmus_federation_api::mesh::{DecisionWindow, GatewayReport, MeshEvent, MeshPicture};
use isthmus_federation_api::model::{Cluster, ExportKey, Policy, ServiceExport, TrustBundleDoc};
use isthmus_federation_api::registration::Registration;
use isthmus_federation_api::request::{
    AddMember, CreateCluster, DeleteClaim, DeleteCluster, DeleteExport, DeletePolicy,
    JoinTokenReply, Listed, PutClaim, PutCluster, PutExport, PutPolicy, RegisterGateway,
    RevokeCluster, SetTrustBundle, Written,
};
use isthmus_federation_api::request::{DeleteRegistration, PutRegistration};
use isthmus_federation_api::status::{MemberStatus, NodeInfo, StatusReport};
use isthmus_federation_api::{ApiError, claims::Claim, model::GatewayEndpoint};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

use super::Failure;
use super::body::{
    Changes, ClaimBody, ClusterBody, ExportBody, GatewayBody, JoinTokenBody, MemberBody,
    PolicyText, RegistrationBody,
};
use super::call::Call;
use crate::access::Principal;
use crate::admin::{Admin, MeshChange, Op};

type St = State<Arc<Admin>>;
type Who = Extension<Principal>;
type Answer<T> = Result<Json<T>, Failure>;

/// A schema made by the document's generator.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// PUT.
    Put,
    /// POST.
    Post,
    /// DELETE.
    Delete,
}

impl Method {
    /// The lower-case name the OpenAPI document uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Put => "put",
            Self::Post => "post",
            Self::Delete => "delete",
        }
    }
}

/// The query parameters a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// None.
    Nothing,
    /// `consistency` (reads).
    Consistency,
    /// `expect_revision` (writes).
    ExpectRevision,
    /// `after_revision` and `wait_seconds` (the watch).
    Watch,
    /// `window_seconds` (the decisions).
    Window,
}

/// How a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// One JSON document.
    Json,
    /// Server-Sent Events, each one's data a JSON document of the answer's schema.
    EventStream,
}

/// One route.
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path, with `{parameter}`s.
    pub path: &'static str,
    /// The operation it calls (its `operationId`, and who may attempt it).
    pub op: Op,
    /// One line on what it does.
    pub summary: &'static str,
    /// Its path parameters, in order, with their schemas.
    pub params: &'static [(&'static str, SchemaFn)],
    /// Its query parameters.
    pub query: Query,
    /// Its request body, if it takes one, and whether it may be left out.
    pub body: Option<(SchemaFn, bool)>,
    /// The schema of its answer.
    pub answer: SchemaFn,
    /// How the answer is sent.
    pub media: Media,
    /// The handler.
    pub handler: MethodRouter<Arc<Admin>>,
}

use isthmus_federation_api::schema as s;

fn node_id(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({ "type": "integer", "minimum": 0, "format": "uint64" })
}

const NAME: &[(&str, SchemaFn)] = &[("name", s::label)];
const EXPORT: &[(&str, SchemaFn)] = &[
    ("cluster", s::label),
    ("namespace", s::label),
    ("name", s::label),
];

/// Every route, in the document's order.
pub fn table() -> Vec<Route> {
    use Method as M;
    use Query as Q;
    vec![
        Route {
            method: M::Get,
            path: "/openapi.json",
            op: Op::GetOpenApi,
            summary: "This document",
            params: &[],
            query: Q::Nothing,
            body: None,
            answer: |_| schemars::json_schema!({ "type": "object" }),
            media: Media::Json,
            handler: get(openapi),
        },
        Route {
            method: M::Get,
            path: "/v1/status",
            op: Op::GetStatus,
            summary: "Leader, term, members, applied index and each member's lag",
            params: &[],
            query: Q::Consistency,
            body: None,
            answer: schema::<StatusReport>,
            media: Media::Json,
            handler: get(status),
        },
        Route {
            method: M::Post,
            path: "/v1/init",
            op: Op::Init,
            summary: "Bootstrap a new federation with this node as its only voter",
            params: &[],
            query: Q::Nothing,
            body: None,
            answer: schema::<StatusReport>,
            media: Media::Json,
            handler: post(init),
        },
        Route {
            method: M::Get,
            path: "/v1/members",
            op: Op::ListMembers,
            summary: "Members with their lag",
            params: &[],
            query: Q::Consistency,
            body: None,
            answer: schema::<Vec<MemberStatus>>,
            media: Media::Json,
            handler: get(list_members),
        },
        Route {
            method: M::Post,
            path: "/v1/members",
            op: Op::AddMember,
            summary: "Add a node: it joins as a learner, catches up, then becomes a voter",
            params: &[],
            query: Q::Nothing,
            body: Some((schema::<MemberBody>, false)),
            answer: schema::<StatusReport>,
            media: Media::Json,
            handler: post(add_member),
        },
        Route {
            method: M::Delete,
            path: "/v1/members/{id}",
            op: Op::RemoveMember,
            summary: "Remove a node from the voters and from the federation",
            params: &[("id", node_id)],
            query: Q::Nothing,
            body: None,
            answer: schema::<StatusReport>,
            media: Media::Json,
            handler: delete(remove_member),
        },
        Route {
            method: M::Get,
            path: "/v1/clusters",
            op: Op::ListClusters,
            summary: "Every cluster",
            params: &[],
            query: Q::Consistency,
            body: None,
            answer: schema::<ListedView<Cluster>>,
            media: Media::Json,
            handler: get(list_clusters),
        },
        Route {
            method: M::Get,
            path: "/v1/clusters/{name}",
            op: Op::GetCluster,
            summary: "One cluster",
            params: NAME,
            query: Q::Consistency,
            body: None,
            answer: schema::<Cluster>,
            media: Media::Json,
            handler: get(get_cluster),
        },
        Route {
            method: M::Put,
            path: "/v1/clusters/{name}",
            op: Op::PutCluster,
            summary: "Create or replace a cluster",
            params: NAME,
            query: Q::ExpectRevision,
            body: Some((schema::<ClusterBody>, false)),
            answer: schema::<Written>,
            media: Media::Json,
            handler: put(put_cluster),
        },
        Route {
            method: M::Delete,
            path: "/v1/clusters/{name}",
            op: Op::DeleteCluster,
            summary: "Delete a cluster (refused while it exports services or a policy names it)",
            params: NAME,
            query: Q::ExpectRevision,
            body: None,
            answer: schema::<Written>,
            media: Media::Json,
            handler: delete(delete_cluster),
        },
        Route {
            method: M::Post,
            path: "/v1/clusters/{name}/join-token",
            op: Op::CreateCluster,
            summary: "Register a pending cluster and mint a one-time join token for its first gateway (a pending cluster gets a new token; the old one stops working)",
            params: NAME,
            query: Q::Nothing,
            body: Some((schema::<JoinTokenBody>, true)),
            answer: schema::<JoinTokenReply>,
            media: Media::Json,
            handler: post(create_cluster),
        },
        Route {
            method: M::Post,
            path: "/v1/clusters/{name}/revoke",
            op: Op::RevokeCluster,
            summary: "Cut a cluster off: peers refuse its gateways once they see the change",
            params: NAME,
            query: Q::Nothing,
            body: None,
            answer: schema::<Written>,
            media: Media::Json,
            handler: post(revoke_cluster),
        },
        Route {
            method: M::Put,
            path: "/v1/clusters/{name}/gateways/{gateway}",
            op: Op::RegisterGateway,
            summary: "Add or update one gateway endpoint of a cluster (gateways do this for their own cluster when they start)",
            params: &[("name", s::label), ("gateway", s::label)],
            query: Q::Nothing,
            body: Some((schema::<GatewayBody>, false)),
            answer: schema::<Written>,
            media: Media::Json,
            handler: put(register_gateway),
        },
        Route {
            method: M::Get,
            path: "/v1/exports",
            op: Op::ListExports,
            summary: "Every export",
            params: &[],
            query: Q::Consistency,
            body: None,
            answer: schema::<ListedView<ServiceExport>>,
            media: Media::Json,
            handler: get(list_exports),
        },
        Route {
            method: M::Get,
            path: "/v1/exports/{cluster}/{namespace}/{name}",
            op: Op::GetExport,
            summary: "One export",
            params: EXPORT,
            query: Q::Consistency,
            body: None,
            answer: schema::<ServiceExport>,
            media: Media::Json,
            handler: get(get_export),
        },
        Route {
            method: M::Put,
            path: "/v1/exports/{cluster}/{namespace}/{name}",
            op: Op::PutExport,
            summary: "Create or replace an export (its cluster must exist)",
            params: EXPORT,
            query: Q::ExpectRevision,
            body: Some((schema::<ExportBody>, false)),
            answer: schema::<Written>,
            media: Media::Json,
            handler: put(put_export),
        },
        Route {
            method: M::Delete,
            path: "/v1/exports/{cluster}/{namespace}/{name}",
            op: Op::DeleteExport,
            summary: "Delete an export",
            params: EXPORT,
            query: Q::ExpectRevision,
            body: None,
            answer: schema::<Written>,
            media: Media::Json,
            handler: delete(delete_export),
        },
        Route {
            method: M::Get,
            path: "/v1/policies",
            op: Op::ListPolicies,
            summary: "Every authorization policy (each document as JSON text)",
            params: &[],
            query: Q::Consistency,
            body: None,
            answer: schema::<ListedView<PolicyText>>,
            media: Media::Json,
            handler: get(list_policies),
        },
        Route {
            method: M::Get,
            path: "/v1/policies/{name}",
            op: Op::GetPolicy,
            summary: "One policy (its document as JSON text)",
            params: NAME,
            query: Q::Consistency,
            body: None,
            answer: schema::<PolicyText>,
            media: Media::Json,
            handler: get(get_policy),
        },
        Route {
            method: M::Put,
            path: "/v1/policies/{name}",
            op: Op::PutPolicy,
            summary: "Create or replace a policy; the body is the policy document",
            params: NAME,
            query: Q::ExpectRevision,
            body: Some((schema::<isthmus_federation_api::policy::PolicyBody>, false)),
            answer: schema::<Written>,
            media: Media::Json,
            handler: put(put_policy),
        },
        Route {
            method: M::Delete,
            path: "/v1/policies/{name}",
            op: Op::DeletePolicy,
            summary: "Delete a policy",
            params: NAME,
            query: Q::ExpectRevision,
            body: None,
            answer: schema::<Written>,
            media: Media::Json,
            handler: delete(delete_policy),
        },
        Route {
            method: M::Get,
            path: "/v1/claims",
            op: Op::ListClaims,
            summary: "Every traffic claim",
            params: &[],
            query: Q::Consistency,
            body: None,
            answer: schema::<ListedView<Claim>>,
            media: Media::Json,
            handler: get(list_claims),
        },
        Route {
            method: M::Put,
            path: "/v1/claims/{host}",
            op: Op::PutClaim,
            summary: "Claim a host for a namespace (refused if another namespace's claim overlaps)",
            params: &[("host", s::host_pattern)],
            query: Q::ExpectRevision,
            body: Some((schema::<ClaimBody>, false)),
            answer: schema::<Written>,
            media: Media::Json,
            handler: put(put_claim),
        },
        Route {
            method: M::Delete,
            path: "/v1/claims/{host}",
            op: Op::DeleteClaim,
            summary: "Give up a claim",
            params: &[("host", s::host_pattern)],
            query: Q::ExpectRevision,
            body: None,
            answer: schema::<Written>,
            media: Media::Json,
            handler: delete(delete_claim),
        },
        Route {
            method: M::Get,
            path: "/v1/registrations",
            op: Op::ListRegistrations,
            summary: "Every workload registration: who gets which identity from a cluster gateway's SPIFFE Workload API",
            params: &[],
            query: Q::Consistency,
            body: None,
            answer: schema::<ListedView<Registration>>,
            media: Media::Json,
            handler: get(list_registrations),
        },
        Route {
            method: M::Put,
            path: "/v1/registrations/{name}",
            op: Op::PutRegistration,
            summary: "Create or replace a workload registration (its cluster must exist; at least one of uid, gid, path)",
            params: NAME,
            query: Q::ExpectRevision,
            body: Some((schema::<RegistrationBody>, false)),
            answer: schema::<Written>,
            media: Media::Json,
            handler: put(put_registration),
        },
        Route {
            method: M::Delete,
            path: "/v1/registrations/{name}",
            op: Op::DeleteRegistration,
            summary: "Delete a workload registration",
            params: NAME,
            query: Q::ExpectRevision,
            body: None,
            answer: schema::<Written>,
            media: Media::Json,
            handler: delete(delete_registration),
        },
        Route {
            method: M::Get,
            path: "/v1/trust-bundle",
            op: Op::GetTrustBundle,
            summary: "The trust bundle",
            params: &[],
            query: Q::Consistency,
            body: None,
            answer: schema::<TrustBundleDoc>,
            media: Media::Json,
            handler: get(get_bundle),
        },
        Route {
            method: M::Put,
            path: "/v1/trust-bundle",
            op: Op::SetTrustBundle,
            summary: "Replace the trust bundle (refused if it would no longer trust the federation's own nodes)",
            params: &[],
            query: Q::ExpectRevision,
            body: Some((schema::<TrustBundleDoc>, false)),
            answer: schema::<Written>,
            media: Media::Json,
            handler: put(put_bundle),
        },
        Route {
            method: M::Get,
            path: "/v1/watch",
            op: Op::Watch,
            summary: "The changes after a revision (a full state first when the history no longer reaches back that far), waiting up to wait_seconds for the first: poll it with the last revision seen",
            params: &[],
            query: Q::Watch,
            body: None,
            answer: schema::<Changes>,
            media: Media::Json,
            handler: get(watch),
        },
        Route {
            method: M::Get,
            path: "/v1/mesh",
            op: Op::GetMesh,
            summary: "The mesh's security status as this node holds it: every gateway (up, stale, lost; certificates, bundle roots, catalog age, peers) and every edge (mutual TLS, app legs, connections, bytes, handshake failures, decisions), each with its age",
            params: &[],
            query: Q::Nothing,
            body: None,
            answer: schema::<MeshPicture>,
            media: Media::Json,
            handler: get(get_mesh),
        },
        Route {
            method: M::Get,
            path: "/v1/mesh/events",
            op: Op::WatchMesh,
            summary: "Server-Sent Events, one per change of an edge's or a gateway's status (event `gateway` or `edge`, id the picture's revision); `resync` when this stream fell behind and the picture must be read again",
            params: &[],
            query: Q::Nothing,
            body: None,
            answer: schema::<MeshEvent>,
            media: Media::EventStream,
            handler: get(watch_mesh),
        },
        Route {
            method: M::Post,
            path: "/v1/mesh/reports",
            op: Op::ReportGatewayStatus,
            summary: "A gateway's status report (gateways send one to every node every 2 s; soft state, not replicated)",
            params: &[],
            query: Q::Nothing,
            body: Some((schema::<GatewayReport>, false)),
            answer: schema::<ReportAccepted>,
            media: Media::Json,
            handler: post(report_gateway_status),
        },
        Route {
            method: M::Get,
            path: "/v1/mesh/decisions",
            op: Op::GetDecisions,
            summary: "Policy decisions within the last window_seconds (default 900, at most 3600), per rule, decision and edge: how many connections each rule allowed, denied and, for shadow rules, would have denied",
            params: &[],
            query: Q::Window,
            body: None,
            answer: schema::<DecisionWindow>,
            media: Media::Json,
            handler: get(get_decisions),
        },
        Route {
            method: M::Get,
            path: "/v1/alerts",
            op: Op::ListAlerts,
            summary: "The alerts this node evaluated: firing now and resolved lately (every node evaluates on its own picture; the leader delivers)",
            params: &[],
            query: Q::Nothing,
            body: None,
            answer: schema::<AlertList>,
            media: Media::Json,
            handler: get(list_alerts),
        },
    ]
}

async fn get_decisions(State(a): St, Extension(who): Who, call: Call) -> Answer<DecisionWindow> {
    let [window] = call.integers(&["window_seconds"])?[..] else {
        return Err(ApiError::Internal("decisions query".into()).into());
    };
    json(a.decision_window(
        &who,
        window.unwrap_or(crate::admin::DEFAULT_DECISION_WINDOW),
    ))
}

async fn list_alerts(State(a): St, Extension(who): Who, call: Call) -> Answer<AlertList> {
    call.no_query()?;
    json(a.alerts(&who))
}

/// The answer to a status report.
#[derive(Debug, serde::Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ReportAccepted {}

async fn get_mesh(State(a): St, Extension(who): Who, call: Call) -> Answer<MeshPicture> {
    call.no_query()?;
    json(a.mesh_picture(&who))
}

async fn report_gateway_status(
    State(a): St,
    Extension(who): Who,
    call: Call,
) -> Answer<ReportAccepted> {
    call.no_query()?;
    let report: GatewayReport = call.json(false)?;
    a.report_gateway_status(&who, report).await?;
    Ok(Json(ReportAccepted {}))
}

async fn watch_mesh(
    State(a): St,
    Extension(who): Who,
    call: Call,
) -> Result<
    Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>>,
    Failure,
> {
    call.no_query()?;
    let watch = a.watch_mesh(&who)?;
    let stream = futures_util::stream::unfold(watch, |mut watch| async move {
        let event = match watch.next().await? {
            MeshChange::Event(event) => {
                let (name, revision) = match &*event {
                    MeshEvent::Gateway { revision, .. } => ("gateway", *revision),
                    MeshEvent::Edge { revision, .. } => ("edge", *revision),
                };
                let data = serde_json::to_string(&event).unwrap_or_default();
                SseEvent::default()
                    .event(name)
                    .id(revision.to_string())
                    .data(data)
            }
            // The watcher missed changes: it must read the picture again; the stream
            // goes on from here.
            MeshChange::Lagged(n) => SseEvent::default()
                .event("resync")
                .data(format!("{{\"lagged\":{n}}}")),
        };
        Some((Ok(event), watch))
    });
    // A comment first: the client knows it is subscribed, and changes from here on
    // reach it.
    let subscribed = futures_util::stream::once(async {
        Ok(SseEvent::default().comment("watching the mesh's status"))
    });
    Ok(Sse::new(futures_util::StreamExt::chain(subscribed, stream))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// A list's answer, as the document describes it.
#[derive(Debug, serde::Serialize, JsonSchema)]
pub struct ListedView<T> {
    /// The revision the list reflects.
    pub revision: u64,
    /// The objects, in key order.
    pub items: Vec<T>,
}

impl<T> From<Listed<T>> for ListedView<T> {
    fn from(l: Listed<T>) -> Self {
        Self {
            revision: l.revision,
            items: l.items,
        }
    }
}

/// Names a field as this face's body does, where the operation names it under the
/// model's enclosing object.
fn unnest(prefix: &'static str) -> impl Fn(ApiError) -> ApiError {
    move |e| e.rename_field(|f| f.strip_prefix(prefix).map(str::to_owned).unwrap_or(f))
}

fn json<T, V: From<T>>(answer: Result<T, ApiError>) -> Answer<V> {
    Ok(Json(V::from(answer?)))
}

/// The document (the route's layer has authenticated the caller: any role may read it).
async fn openapi(State(admin): St, call: Call) -> Answer<Value> {
    call.no_query()?;
    Ok(Json(super::openapi::document(
        admin.federation().trust_domain(),
    )))
}

async fn status(State(a): St, Extension(who): Who, call: Call) -> Answer<StatusReport> {
    json(a.status(&who, call.consistency()?).await)
}

async fn init(State(a): St, Extension(who): Who, call: Call) -> Answer<StatusReport> {
    call.no_query()?;
    json(a.init(&who).await)
}

async fn list_members(State(a): St, Extension(who): Who, call: Call) -> Answer<Vec<MemberStatus>> {
    let report = a.status(&who, call.consistency()?).await?;
    Ok(Json(report.members))
}

async fn add_member(State(a): St, Extension(who): Who, call: Call) -> Answer<StatusReport> {
    call.no_query()?;
    let body: MemberBody = call.json(false)?;
    let request = AddMember {
        node_id: body.node_id,
        info: NodeInfo {
            name: body.name,
            raft_addr: body.raft_addr,
            admin_addr: body.admin_addr,
            rest_addr: body.rest_addr,
            enroll_addr: body.enroll_addr,
        },
    };
    // The body is the member itself: its fields are not under `member.`.
    json(a.add_member(&who, request).await.map_err(unnest("member.")))
}

async fn remove_member(State(a): St, Extension(who): Who, call: Call) -> Answer<StatusReport> {
    call.no_query()?;
    let id = call.param("id")?;
    let id = id
        .parse()
        .map_err(|_| ApiError::invalid("id", format!("{id:?} is not a node id")))?;
    json(a.remove_member(&who, id).await)
}

async fn list_clusters(
    State(a): St,
    Extension(who): Who,
    call: Call,
) -> Answer<ListedView<Cluster>> {
    json(a.list_clusters(&who, call.consistency()?).await)
}

async fn get_cluster(State(a): St, Extension(who): Who, call: Call) -> Answer<Cluster> {
    let consistency = call.consistency()?;
    json(a.get_cluster(&who, &call.param("name")?, consistency).await)
}

async fn put_cluster(State(a): St, Extension(who): Who, call: Call) -> Answer<Written> {
    let expect = call.expect()?;
    let body: ClusterBody = call.json(false)?;
    let cluster = body.into_cluster(call.param("name")?)?;
    json(a.put_cluster(&who, PutCluster { cluster, expect }).await)
}

async fn delete_cluster(State(a): St, Extension(who): Who, call: Call) -> Answer<Written> {
    let expect = call.expect()?;
    let name = call.param("name")?;
    json(a.delete_cluster(&who, DeleteCluster { name, expect }).await)
}

async fn create_cluster(State(a): St, Extension(who): Who, call: Call) -> Answer<JoinTokenReply> {
    call.no_query()?;
    let body: JoinTokenBody = call.json(true)?;
    let request = CreateCluster {
        name: call.param("name")?,
        locality: body.locality,
        ttl: body.ttl_seconds.map(Duration::from_secs),
    };
    json(a.create_cluster(&who, request).await)
}

async fn revoke_cluster(State(a): St, Extension(who): Who, call: Call) -> Answer<Written> {
    call.no_query()?;
    let name = call.param("name")?;
    json(a.revoke_cluster(&who, RevokeCluster { name }).await)
}

async fn register_gateway(State(a): St, Extension(who): Who, call: Call) -> Answer<Written> {
    call.no_query()?;
    let body: GatewayBody = call.json(false)?;
    let request = RegisterGateway {
        cluster: call.param("name")?,
        gateway: GatewayEndpoint {
            name: call.param("gateway")?,
            address: body.address,
        },
    };
    json(
        a.register_gateway(&who, request)
            .await
            .map_err(unnest("gateway.")),
    )
}

async fn list_exports(
    State(a): St,
    Extension(who): Who,
    call: Call,
) -> Answer<ListedView<ServiceExport>> {
    json(a.list_exports(&who, call.consistency()?).await)
}

fn export_key(call: &Call) -> Result<ExportKey, ApiError> {
    Ok(ExportKey {
        cluster: call.param("cluster")?,
        namespace: call.param("namespace")?,
        name: call.param("name")?,
    })
}

async fn get_export(State(a): St, Extension(who): Who, call: Call) -> Answer<ServiceExport> {
    let consistency = call.consistency()?;
    json(a.get_export(&who, &export_key(&call)?, consistency).await)
}

async fn put_export(State(a): St, Extension(who): Who, call: Call) -> Answer<Written> {
    let expect = call.expect()?;
    let key = export_key(&call)?;
    let body: ExportBody = call.json(false)?;
    let export = body.into_export(key.cluster, key.namespace, key.name)?;
    json(a.put_export(&who, PutExport { export, expect }).await)
}

async fn delete_export(State(a): St, Extension(who): Who, call: Call) -> Answer<Written> {
    let expect = call.expect()?;
    let key = export_key(&call)?;
    json(a.delete_export(&who, DeleteExport { key, expect }).await)
}

async fn list_policies(
    State(a): St,
    Extension(who): Who,
    call: Call,
) -> Answer<ListedView<PolicyText>> {
    let listed = a.list_policies(&who, call.consistency()?).await?;
    Ok(Json(ListedView {
        revision: listed.revision,
        items: listed.items.iter().map(PolicyText::from).collect(),
    }))
}

async fn get_policy(State(a): St, Extension(who): Who, call: Call) -> Answer<PolicyText> {
    let consistency = call.consistency()?;
    let policy = a
        .get_policy(&who, &call.param("name")?, consistency)
        .await?;
    Ok(Json(PolicyText::from(&policy)))
}

async fn put_policy(State(a): St, Extension(who): Who, call: Call) -> Answer<Written> {
    let expect = call.expect()?;
    let body = isthmus_federation_api::policy::parse_slice(call.bytes()?)?;
    let policy = Policy {
        name: call.param("name")?,
        body,
        revision: 0,
    };
    json(a.put_policy(&who, PutPolicy { policy, expect }).await)
}

async fn delete_policy(State(a): St, Extension(who): Who, call: Call) -> Answer<Written> {
    let expect = call.expect()?;
    let name = call.param("name")?;
    json(a.delete_policy(&who, DeletePolicy { name, expect }).await)
}

async fn list_claims(State(a): St, Extension(who): Who, call: Call) -> Answer<ListedView<Claim>> {
    json(a.list_claims(&who, call.consistency()?).await)
}

async fn put_claim(State(a): St, Extension(who): Who, call: Call) -> Answer<Written> {
    let expect = call.expect()?;
    let body: ClaimBody = call.json(false)?;
    let claim = Claim {
        host: call.param("host")?,
        namespace: body.namespace,
        revision: 0,
    };
    json(a.put_claim(&who, PutClaim { claim, expect }).await)
}

async fn delete_claim(State(a): St, Extension(who): Who, call: Call) -> Answer<Written> {
    let expect = call.expect()?;
    let host = call.param("host")?;
    json(a.delete_claim(&who, DeleteClaim { host, expect }).await)
}

async fn list_registrations(
    State(a): St,
    Extension(who): Who,
    call: Call,
) -> Answer<ListedView<Registration>> {
    json(a.list_registrations(&who, call.consistency()?).await)
}

async fn put_registration(State(a): St, Extension(who): Who, call: Call) -> Answer<Written> {
    let expect = call.expect()?;
    let body: RegistrationBody = call.json(false)?;
    let registration = Registration {
        name: call.param("name")?,
        cluster: body.cluster,
        namespace: body.namespace,
        service_account: body.service_account,
        uid: body.uid,
        gid: body.gid,
        path: body.path,
        revision: 0,
    };
    json(
        a.put_registration(
            &who,
            PutRegistration {
                registration,
                expect,
            },
        )
        .await,
    )
}

async fn delete_registration(State(a): St, Extension(who): Who, call: Call) -> Answer<Written> {
    let expect = call.expect()?;
    let name = call.param("name")?;
    json(
        a.delete_registration(&who, DeleteRegistration { name, expect })
            .await,
    )
}

async fn get_bundle(State(a): St, Extension(who): Who, call: Call) -> Answer<TrustBundleDoc> {
    json(a.get_trust_bundle(&who, call.consistency()?).await)
}

async fn put_bundle(State(a): St, Extension(who): Who, call: Call) -> Answer<Written> {
    let expect = call.expect()?;
    let bundle: TrustBundleDoc = call.json(false)?;
    json(
        a.set_trust_bundle(&who, SetTrustBundle { bundle, expect })
            .await,
    )
}

async fn watch(State(a): St, Extension(who): Who, call: Call) -> Answer<Changes> {
    let [after, wait] = call.integers(&["after_revision", "wait_seconds"])?[..] else {
        return Err(ApiError::Internal("watch query".into()).into());
    };
    let wait = Duration::from_secs(wait.unwrap_or(0));
    let messages = a.changes(&who, after.unwrap_or(0), wait).await?;
    Ok(Json(Changes {
        messages: messages.into_iter().map(Into::into).collect(),
    }))
}
