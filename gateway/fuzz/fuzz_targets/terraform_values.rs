//! Feed arbitrary bytes as the values Terraform sends the provider
//! (`terraform-provider-isthmus`), through the same `tfplugin6.Provider` handlers the
//! plugin serves, for every resource type:
//!
//! - `Value::from_msgpack` and `Value::from_json` (a `DynamicValue`'s two forms);
//! - `ValidateResourceConfig` with the bytes as the configuration;
//! - `PlanResourceChange` with the input cut in two: the prior state and the proposed
//!   new state (also the configuration);
//! - `UpgradeResourceState` with the bytes as the stored JSON state;
//! - `ImportResourceState` with the bytes (as text) as the import ID.
//!
//! Input: one byte choosing the resource type, two bytes (big endian) for the length of
//! the prior state, then the prior state and the proposed one.
//!
//! Asserts: nothing panics; none of these handlers waits on anything (each future is
//! ready at its first poll: they never reach the federation); a decoded value encodes
//! to MessagePack that decodes to a value encoding the same bytes; every value the
//! provider answers with decodes; a plan with no error, made again from its own planned
//! state, plans the same state (Terraform checks that a plan is stable and fails the
//! apply when it is not).

#![no_main]

use std::future::Future;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use terraform_provider_isthmus::proto::{self, provider_server::Provider};
use terraform_provider_isthmus::value::Value;
use terraform_provider_isthmus::{IsthmusProvider, provider};
use tonic::Request;

struct Fixture {
    provider: IsthmusProvider,
    types: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let provider = provider();
        let schema = ready(provider.get_provider_schema(Request::new(Default::default())))
            .expect("the schema")
            .into_inner();
        let types = schema.resource_schemas.keys().cloned().collect();
        Fixture { provider, types }
    })
}

/// The output of a future that must not wait.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a handler waited on something"),
    }
}

fn msgpack(bytes: &[u8]) -> Option<proto::DynamicValue> {
    Some(proto::DynamicValue {
        msgpack: bytes.to_vec(),
        json: Vec::new(),
    })
}

/// A decoded value's encoding is a fixed point (compared as bytes: a NaN is not equal
/// to itself as a value).
fn encodes_stably(value: &Value) {
    let encoded = value.to_msgpack();
    let again = Value::from_msgpack(&encoded).expect("an encoded value decodes");
    assert_eq!(again.to_msgpack(), encoded, "the encoding moved");
}

/// Decodes a value the provider answered with.
fn answered(value: Option<&proto::DynamicValue>) -> Option<Value> {
    let value = value?;
    assert!(value.json.is_empty(), "answers are MessagePack");
    let decoded = Value::from_msgpack(&value.msgpack).expect("the provider's value decodes");
    encodes_stably(&decoded);
    Some(decoded)
}

fn has_error(diagnostics: &[proto::Diagnostic]) -> bool {
    diagnostics
        .iter()
        .any(|d| d.severity == proto::diagnostic::Severity::Error as i32)
}

fn plan(type_name: &str, prior: &[u8], proposed: &[u8]) -> proto::plan_resource_change::Response {
    let request = proto::plan_resource_change::Request {
        type_name: type_name.to_owned(),
        prior_state: msgpack(prior),
        proposed_new_state: msgpack(proposed),
        config: msgpack(proposed),
        ..Default::default()
    };
    ready(
        fixture()
            .provider
            .plan_resource_change(Request::new(request)),
    )
    .expect("a known resource type")
    .into_inner()
}

fuzz_target!(|data: &[u8]| {
    let [choice, a, b, rest @ ..] = data else {
        return;
    };
    let fixture = fixture();
    let provider = &fixture.provider;
    let type_name = &fixture.types[usize::from(*choice) % fixture.types.len()];
    let cut = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
    let (prior, proposed) = rest.split_at(cut);

    for bytes in [rest, prior, proposed] {
        if let Ok(value) = Value::from_msgpack(bytes) {
            encodes_stably(&value);
        }
        if let Ok(value) = Value::from_json(bytes) {
            encodes_stably(&value);
        }
    }

    let validated = ready(provider.validate_resource_config(Request::new(
        proto::validate_resource_config::Request {
            type_name: type_name.clone(),
            config: msgpack(rest),
            ..Default::default()
        },
    )))
    .expect("a known resource type");
    let _ = validated.into_inner();

    let planned = plan(type_name, prior, proposed);
    let state = answered(planned.planned_state.as_ref());
    if let (Some(state), false) = (state, has_error(&planned.diagnostics)) {
        let again = plan(type_name, prior, &state.to_msgpack());
        assert!(
            !has_error(&again.diagnostics),
            "its own plan is refused: {:?}",
            again.diagnostics
        );
        assert_eq!(
            answered(again.planned_state.as_ref()).map(|v| v.to_msgpack()),
            Some(state.to_msgpack()),
            "planning the planned state changed it"
        );
    }

    let upgraded = ready(provider.upgrade_resource_state(Request::new(
        proto::upgrade_resource_state::Request {
            type_name: type_name.clone(),
            raw_state: Some(proto::RawState {
                json: rest.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )))
    .expect("a known resource type")
    .into_inner();
    answered(upgraded.upgraded_state.as_ref());

    let imported = ready(provider.import_resource_state(Request::new(
        proto::import_resource_state::Request {
            type_name: type_name.clone(),
            id: String::from_utf8_lossy(rest).into_owned(),
            ..Default::default()
        },
    )))
    .expect("a known resource type")
    .into_inner();
    for resource in &imported.imported_resources {
        answered(resource.state.as_ref());
    }
});
