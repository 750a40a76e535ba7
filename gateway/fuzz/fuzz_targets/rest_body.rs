//! Feed arbitrary bytes as the body of each REST write of the federation, as the routes
//! of `federation/src/rest/routes.rs` read them: `isthmus_federation_api::json::from_slice`
//! into the body types of `federation/src/rest/body.rs` (`ClusterBody`, `ExportBody`,
//! `ClaimBody`, `RegistrationBody`, `MemberBody`, `JoinTokenBody` with an empty body read
//! as `{}`, `GatewayBody`) and `policy::parse_slice` for a policy; then the model value
//! the route makes with fixed path parameters, the stateless checks of
//! `federation/api/src/validate.rs` (through `Command::validate`, or `validate::member`
//! for a member), and `command::apply` to a small catalog.
//!
//! `ClusterBody::into_cluster` and `ExportBody::into_export` are `pub(crate)`; their
//! effect (the path's names filled in, a different name in the body refused) is done
//! here on the JSON, and the model type read from it: the body and the model must agree
//! on whether the body reads.
//!
//! Asserts: nothing panics; a command that passes validation survives the Raft log's
//! encoding (JSON) unchanged; applying it either bumps the revision by one with at least
//! one event, every event's object carrying the new revision where it has one, or is
//! rejected and leaves the catalog unchanged.

#![no_main]

use std::sync::OnceLock;

use isthmus_ca::TrustDomain;
use isthmus_federation::command::{Command, apply};
use isthmus_federation::rest::body::{
    ClaimBody, ClusterBody, ExportBody, GatewayBody, JoinTokenBody, MemberBody, RegistrationBody,
};
use isthmus_federation_api::ApiError;
use isthmus_federation_api::claims::Claim;
use isthmus_federation_api::json::from_slice;
use isthmus_federation_api::model::{
    CatalogState, Cluster, ClusterState, Event, Expect, ExportPort, GatewayEndpoint, JoinGrant,
    Policy, PortProtocol, ServiceExport,
};
use isthmus_federation_api::registration::Registration;
use isthmus_federation_api::status::NodeInfo;
use isthmus_federation_api::validate;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde_json::Value;

const CLUSTER: &str = "east";
const NAMESPACE: &str = "shop";
const SERVICE: &str = "api";

fn trust_domain() -> &'static TrustDomain {
    static TD: OnceLock<TrustDomain> = OnceLock::new();
    TD.get_or_init(|| TrustDomain::new("mesh.example").expect("valid"))
}

/// A catalog with an active cluster `east` exporting `shop/api`, and a pending `north`.
fn base() -> &'static CatalogState {
    static BASE: OnceLock<CatalogState> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut state = CatalogState::default();
        let cluster = Cluster {
            name: CLUSTER.into(),
            gateways: vec![GatewayEndpoint {
                name: "gw-1".into(),
                address: "10.0.0.1:15443".into(),
            }],
            intermediate_pem: None,
            state: ClusterState::Active,
            locality: Some("eu/a".into()),
            join: None,
            revision: 0,
        };
        let export = ServiceExport {
            cluster: CLUSTER.into(),
            namespace: NAMESPACE.into(),
            name: SERVICE.into(),
            ports: vec![ExportPort {
                name: "http".into(),
                port: 8080,
                protocol: PortProtocol::Http,
            }],
            health: Default::default(),
            revision: 0,
        };
        for command in [
            Command::PutCluster {
                cluster,
                expect: Expect::Any,
            },
            Command::PutExport {
                export,
                expect: Expect::Any,
            },
            Command::CreateCluster {
                name: "north".into(),
                locality: None,
                join: grant(),
            },
        ] {
            command
                .validate(trust_domain())
                .expect("the base catalog is valid");
            apply(&mut state, command).expect("the base catalog applies");
        }
        state
    })
}

fn grant() -> JoinGrant {
    JoinGrant {
        token_id: "0123456789abcdef".into(),
        secret_sha256: "0".repeat(64),
        expires_at: 1_767_225_600,
    }
}

/// The revision an event's object carries, when it has one.
fn revision_of(event: &Event) -> Option<u64> {
    match event {
        Event::ClusterPut { cluster } => Some(cluster.revision),
        Event::ExportPut { export } => Some(export.revision),
        Event::PolicyPut { policy } => Some(policy.revision),
        Event::ClaimPut { claim } => Some(claim.revision),
        Event::RegistrationPut { registration } => Some(registration.revision),
        Event::TrustBundleSet { trust_bundle } => Some(trust_bundle.revision),
        _ => None,
    }
}

/// Validates `command` as every face does; what passes goes through the log and applies.
fn propose(command: Command) {
    if let Err(e) = command.validate(trust_domain()) {
        let _ = e.to_string();
        return;
    }
    let logged = serde_json::to_vec(&command).expect("a command encodes for the log");
    let read: Command = serde_json::from_slice(&logged).expect("a logged command decodes");
    assert_eq!(read, command, "the log keeps the command as it was");

    let mut state = base().clone();
    match apply(&mut state, command) {
        Ok((revision, events)) => {
            assert_eq!(revision, base().revision + 1);
            assert_eq!(state.revision, revision);
            assert!(!events.is_empty(), "an accepted command has events");
            for event in &events {
                if let Some(r) = revision_of(event) {
                    assert_eq!(r, revision, "an event's object carries its revision");
                }
            }
        }
        Err(rejection) => {
            let _ = (rejection.to_string(), ApiError::from(rejection));
            assert_eq!(&state, base(), "a rejected command changes nothing");
        }
    }
}

/// `into_cluster`/`into_export` on the JSON: each path field is filled in when the body
/// leaves it out (or null), and a body naming another value is refused (`None`).
fn with_path(data: &[u8], fields: &[(&str, &str)]) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(data).ok()?;
    let object = value.as_object_mut()?;
    for &(field, path) in fields {
        match object.get(field) {
            None | Some(Value::Null) => {
                object.insert(field.into(), Value::String(path.into()));
            }
            Some(Value::String(given)) if given == path => {}
            Some(Value::String(_)) => return None,
            Some(_) => return Some(data.to_vec()), // not a string: both refuse it
        }
    }
    serde_json::to_vec(&value).ok()
}

/// Reads `data` as `Body` (as REST does) and as `Model` (the route's conversion); both
/// read or neither does. Returns the model value.
fn body_and_model<Body, Model>(data: &[u8], path: &[(&str, &str)]) -> Option<Model>
where
    Body: DeserializeOwned + std::fmt::Debug,
    Model: DeserializeOwned + std::fmt::Debug,
{
    let body = from_slice::<Body>(data, "body", None);
    let adjusted = with_path(data, path)?;
    let model = from_slice::<Model>(&adjusted, "body", None);
    assert_eq!(
        body.is_ok(),
        model.is_ok(),
        "the body and the model disagree: {body:?} {model:?}"
    );
    model.ok()
}

fn cluster(data: &[u8]) {
    if let Some(cluster) = body_and_model::<ClusterBody, Cluster>(data, &[("name", CLUSTER)]) {
        propose(Command::PutCluster {
            cluster,
            expect: Expect::Any,
        });
    }
}

fn export(data: &[u8]) {
    let path = [
        ("cluster", CLUSTER),
        ("namespace", NAMESPACE),
        ("name", SERVICE),
    ];
    if let Some(export) = body_and_model::<ExportBody, ServiceExport>(data, &path) {
        propose(Command::PutExport {
            export,
            expect: Expect::Any,
        });
    }
}

fn policy(data: &[u8]) {
    match isthmus_federation_api::policy::parse_slice(data) {
        Ok(body) => propose(Command::PutPolicy {
            policy: Policy {
                name: "fuzz".into(),
                body,
                revision: 0,
            },
            expect: Expect::Any,
        }),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn others(data: &[u8]) {
    if let Ok(body) = from_slice::<ClaimBody>(data, "body", None) {
        propose(Command::PutClaim {
            claim: Claim {
                host: "api.example.com".into(),
                namespace: body.namespace,
                revision: 0,
            },
            expect: Expect::Any,
        });
    }
    if let Ok(body) = from_slice::<RegistrationBody>(data, "body", None) {
        propose(Command::PutRegistration {
            registration: Registration {
                name: "fuzz".into(),
                cluster: body.cluster,
                namespace: body.namespace,
                service_account: body.service_account,
                uid: body.uid,
                gid: body.gid,
                path: body.path,
                revision: 0,
            },
            expect: Expect::Any,
        });
    }
    if let Ok(body) = from_slice::<MemberBody>(data, "body", None) {
        let info = NodeInfo {
            name: body.name,
            raft_addr: body.raft_addr,
            admin_addr: body.admin_addr,
            rest_addr: body.rest_addr,
            enroll_addr: body.enroll_addr,
        };
        let _ = validate::member(body.node_id, &info).map_err(|e| e.to_string());
    }
    let empty_is_object = data.iter().all(u8::is_ascii_whitespace);
    let join = if empty_is_object { &b"{}"[..] } else { data };
    if let Ok(body) = from_slice::<JoinTokenBody>(join, "body", None) {
        propose(Command::CreateCluster {
            name: "north".into(),
            locality: body.locality,
            join: grant(),
        });
    }
    if let Ok(body) = from_slice::<GatewayBody>(data, "body", None) {
        propose(Command::SetGateway {
            cluster: CLUSTER.into(),
            gateway: GatewayEndpoint {
                name: "gw-2".into(),
                address: body.address,
            },
        });
    }
}

fuzz_target!(|data: &[u8]| {
    cluster(data);
    export(data);
    policy(data);
    others(data);
});
