//! The OpenAPI 3.1 document of the REST face, made from the route table and the JSON
//! Schemas (2020-12) of the very types the routes parse and answer with: every check the
//! server makes that JSON Schema can say is in it (labels, addresses, lengths, ranges,
//! enums, this federation's trust domain), every error answer is the one envelope, and
//! both ways of authenticating are declared.

use isthmus_ca::TrustDomain;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::routes::{Media, Query, table};
use crate::access::Grant;

/// Statuses an operation may answer with besides 200, each with the error envelope.
const ERRORS: &[(&str, &str)] = &[
    ("400", "The request is malformed; `field` names the part"),
    ("401", "No acceptable client certificate or bearer token"),
    ("403", "The caller's role does not grant this call"),
    ("404", "The object (or endpoint) does not exist"),
    (
        "409",
        "The catalog's state refuses the change: compare-and-set lost, already exists, in use, or (kind `admission`) names an object that does not exist",
    ),
    ("413", "The body is larger than 1 MiB"),
    ("500", "A fault inside the federation (storage)"),
    (
        "503",
        "No leader or no quorum now; retry (`leader` names the leader when known)",
    ),
    (
        "504",
        "The change did not finish in time and may still take effect: read before retrying",
    ),
];

const KINDS: &[&str] = &[
    "invalid_argument",
    "admission",
    "not_found",
    "already_exists",
    "failed_precondition",
    "not_leader",
    "unavailable",
    "too_large",
    "timeout",
    "unauthenticated",
    "permission_denied",
    "internal",
];

const RULES: &str = "Rules the schemas cannot state, which the server also enforces: \
names are unique within a list (a policy's rules and limits, an export's port names and \
numbers, a cluster's gateways); an export's `health.healthy` is at most `health.total`; \
a policy document is at most 64 KiB; PEM fields hold certificates that parse (a cluster's \
`intermediate_pem` is one CA certificate whose subject names that cluster; a trust bundle's \
roots are CA certificates of this trust domain and must still trust the federation's own \
nodes). Writes that name an object that does not exist, or remove one still named, are \
refused with 409 (kind `admission`).";

fn grant(grant: Grant) -> &'static str {
    match grant {
        Grant::Read => "Any role.",
        Grant::Platform => "platform-admin only.",
        Grant::Export => {
            "platform-admin; namespace-admin of the export's namespace; a gateway of the export's cluster."
        }
        Grant::Policy => {
            "platform-admin; namespace-admin of every namespace the new and the replaced document govern."
        }
        Grant::Claim => {
            "platform-admin; namespace-admin of the claim's namespace (and of its holder's, for a host already claimed)."
        }
        Grant::RegisterGateway => "platform-admin; a gateway of that cluster.",
        Grant::Registration => {
            "platform-admin; namespace-admin of the registration's namespace (and of the replaced entry's)."
        }
    }
}

fn query(query: Query) -> Vec<Value> {
    let revision = |name: &str, description: &str| {
        json!({ "name": name, "in": "query", "required": false, "description": description,
                "schema": { "type": "integer", "minimum": 0, "maximum": u64::MAX } })
    };
    match query {
        Query::Nothing => vec![],
        Query::Consistency => vec![json!({
            "name": "consistency", "in": "query", "required": false,
            "description": "linearizable (default): reflects every write acknowledged before the read began; stale: whatever this node has applied",
            "schema": { "type": "string", "enum": ["linearizable", "stale"], "default": "linearizable" }
        })],
        Query::ExpectRevision => vec![revision(
            "expect_revision",
            "compare-and-set: 0 = must not exist yet; N = must be at revision N",
        )],
        Query::Window => vec![json!({
            "name": "window_seconds", "in": "query", "required": false,
            "description": "count the decisions of this many seconds before now (default 900)",
            "schema": { "type": "integer", "minimum": 1,
                        "maximum": isthmus_federation_api::mesh::DECISION_HISTORY.as_secs(),
                        "default": 900 }
        })],
        Query::Watch => vec![
            revision(
                "after_revision",
                "deliver changes after this revision (0: from the beginning)",
            ),
            json!({ "name": "wait_seconds", "in": "query", "required": false,
                    "description": "when nothing has changed, wait this long for a change (default 0)",
                    "schema": { "type": "integer", "minimum": 0, "maximum": crate::admin::MAX_WATCH_WAIT.as_secs() } }),
        ],
    }
}

/// Adds the bound each unsigned integer's width sets (schemars writes only
/// `"format": "uint32"`, which validators do not enforce).
fn integer_bounds(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            let max = match fields.get("format").and_then(Value::as_str) {
                Some("uint8") => Some(u64::from(u8::MAX)),
                Some("uint16") => Some(u64::from(u16::MAX)),
                Some("uint32") => Some(u64::from(u32::MAX)),
                Some("uint64") => Some(u64::MAX),
                _ => None,
            };
            if let Some(max) = max {
                fields.entry("maximum").or_insert_with(|| json!(max));
            }
            fields.values_mut().for_each(integer_bounds);
        }
        Value::Array(items) => items.iter_mut().for_each(integer_bounds),
        _ => {}
    }
}

/// The document, for a federation of `trust_domain`.
pub fn document(trust_domain: &TrustDomain) -> Value {
    let mut settings = SchemaSettings::draft2020_12().for_deserialize();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut generator = settings.into_generator();
    let mut paths = Map::new();
    for route in table() {
        let mut parameters: Vec<Value> = route
            .params
            .iter()
            .map(|(name, schema)| {
                json!({ "name": name, "in": "path", "required": true, "schema": schema(&mut generator).to_value() })
            })
            .collect();
        parameters.extend(query(route.query));
        let answer = (route.answer)(&mut generator).to_value();
        let mut responses = Map::new();
        let content = match route.media {
            Media::Json => json!({ "application/json": { "schema": answer } }),
            // OpenAPI 3.1 describes an event stream by its events' schema.
            Media::EventStream => json!({ "text/event-stream": {
                "schema": { "type": "string" },
                "x-isthmus-event-data": answer,
            } }),
        };
        responses.insert(
            "200".into(),
            json!({ "description": "OK", "content": content }),
        );
        for (status, _) in ERRORS {
            responses.insert(
                (*status).into(),
                json!({ "$ref": format!("#/components/responses/Error{status}") }),
            );
        }
        let mut operation = json!({
            "operationId": route.op.id(),
            "summary": route.summary,
            "description": format!("Who may call: {}", grant(route.op.grant())),
            "parameters": parameters,
            "responses": responses,
        });
        if let Some((body, optional)) = route.body {
            operation["requestBody"] = json!({
                "required": !optional,
                "content": { "application/json": { "schema": body(&mut generator).to_value() } }
            });
        }
        let item = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        item[route.method.name()] = operation;
    }
    let mut paths = Value::Object(paths);
    integer_bounds(&mut paths);
    let mut schemas = Value::Object(generator.take_definitions(true).into_iter().collect());
    integer_bounds(&mut schemas);
    // The trust domain is this federation's: no other is accepted.
    if let Some(doc) = schemas.get_mut("TrustBundleDoc") {
        doc["properties"]["trust_domain"] =
            json!({ "type": "string", "const": trust_domain.as_str() });
    }
    schemas["Error"] = json!({
        "type": "object", "required": ["error"], "additionalProperties": false,
        "properties": { "error": {
            "type": "object", "required": ["kind", "message"], "additionalProperties": false,
            "properties": {
                "kind": { "type": "string", "enum": KINDS },
                "message": { "type": "string" },
                "field": { "type": "string", "description": "the field to fix (kinds invalid_argument and admission)" },
                "leader": {
                    "type": "object", "required": ["node_id", "admin_addr", "rest_addr"], "additionalProperties": false,
                    "properties": {
                        "node_id": { "type": "integer", "minimum": 0 },
                        "admin_addr": { "type": "string" },
                        "rest_addr": { "type": "string" }
                    }
                }
            }
        } }
    });
    let responses: Map<String, Value> = ERRORS
        .iter()
        .map(|(status, description)| {
            (
                format!("Error{status}"),
                json!({ "description": description,
                        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }),
            )
        })
        .collect();
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Isthmus federation admin API",
            "version": format!("v1 (data model {})", isthmus_federation_api::model::MODEL_VERSION),
            "description": format!("Every call needs a client certificate (mutual TLS) of a federation node, a gateway or a configured admin identity, or a bearer token. {RULES}"),
        },
        "security": [ { "mutualTLS": [] }, { "bearerToken": [] } ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {
                "mutualTLS": { "type": "mutualTLS", "description": "A client certificate with a SPIFFE ID: a federation node (platform-admin), a gateway (its own cluster's objects), or an identity in the node's [[admin.identities]]" },
                "bearerToken": { "type": "http", "scheme": "bearer", "description": "A token from `isthmus federation token create`, granted a role in the node's [[admin.tokens]]; when sent with a certificate, the token decides" }
            }
        }
    })
}
