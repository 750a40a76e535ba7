//! Feed arbitrary bytes as the federation's watch and catalog messages, as a gateway
//! receives them:
//!
//! - protobuf (prost `decode` of the generated `isthmus_federation_api::proto` types):
//!   `WatchResponse`, `Event`, `ClusterList`, `ExportList`, `PolicyList`,
//!   `TrustBundleRecord`, each through its conversion of `convert.rs`
//!   (`watch_from_proto_lenient`, `watch_from_proto`, `event_from_proto`, the list
//!   `TryFrom`s, `bundle_record`);
//! - a stream of length-delimited `WatchResponse`s applied in order to a
//!   `CatalogMirror` (`apply_watched`), the gateway's view derived after each
//!   (`membership::view::derive`);
//! - JSON (`serde_json::from_slice`) of the model types of `model.rs` and `watch.rs`:
//!   `RevisionEvents`, `Event`, `Cluster`, `ServiceExport`, `Policy`, `CatalogState`,
//!   `WatchMessage`.
//!
//! Asserts: nothing panics. A watch message that converts strictly converts back
//! (`watch_to_proto`) to one that converts to the same message, and the lenient
//! conversion agrees with the strict one; a mirror that refuses a message is unchanged;
//! JSON that reads as a model type writes back to JSON that reads as the same value.

#![no_main]

use isthmus_federation_api::convert::{
    bundle_record, event_from_proto, watch_from_proto, watch_from_proto_lenient, watch_to_proto,
};
use isthmus_federation_api::mirror::CatalogMirror;
use isthmus_federation_api::model::{
    CatalogState, Cluster, Event, Policy, RevisionEvents, ServiceExport,
};
use isthmus_federation_api::proto;
use isthmus_federation_api::request::Listed;
use isthmus_federation_api::watch::WatchMessage;
use isthmus_gateway::membership::view::derive;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn watch_response(message: proto::WatchResponse) {
    let strict = watch_from_proto(message.clone());
    match watch_from_proto_lenient(message) {
        Ok(watched) => match &strict {
            Ok(m) => {
                assert!(watched.unreadable.is_empty());
                assert_eq!(&watched.message, m, "lenient and strict agree");
            }
            Err(_) => assert!(
                !watched.unreadable.is_empty(),
                "strict refused it: {strict:?}"
            ),
        },
        Err(e) => {
            let _ = e.to_string();
            assert!(strict.is_err(), "lenient refused what strict read");
        }
    }
    if let Ok(message) = strict {
        let wire = watch_to_proto(message.clone()).expect("a read watch message encodes");
        let bytes = wire.encode_to_vec();
        let decoded = proto::WatchResponse::decode(bytes.as_slice()).expect("re-decodes");
        assert_eq!(decoded, wire);
        assert_eq!(
            watch_from_proto(decoded).as_ref().ok(),
            Some(&message),
            "a watch message survives the protobuf round trip"
        );
    }
}

fn protobuf(data: &[u8]) {
    if let Ok(message) = proto::WatchResponse::decode(data) {
        watch_response(message);
    }
    if let Ok(event) = proto::Event::decode(data) {
        let _ = event_from_proto(event).map_err(|e| e.to_string());
    }
    if let Ok(list) = proto::ClusterList::decode(data) {
        let _ = Listed::<Cluster>::try_from(list).map_err(|e| e.to_string());
    }
    if let Ok(list) = proto::ExportList::decode(data) {
        let _ = Listed::<ServiceExport>::try_from(list).map_err(|e| e.to_string());
    }
    if let Ok(list) = proto::PolicyList::decode(data) {
        let _ = Listed::<Policy>::try_from(list).map_err(|e| e.to_string());
    }
    if let Ok(record) = proto::TrustBundleRecord::decode(data) {
        let _ = bundle_record(record).map_err(|e| e.to_string());
    }
}

/// A stream of length-delimited watch responses, applied to a mirror in order.
fn stream(mut data: &[u8]) {
    let mut mirror = CatalogMirror::new();
    for _ in 0..32 {
        if data.is_empty() {
            break;
        }
        let Ok(message) = proto::WatchResponse::decode_length_delimited(&mut data) else {
            break;
        };
        let Ok(watched) = watch_from_proto_lenient(message) else {
            continue;
        };
        let before = (
            mirror.state().clone(),
            mirror.unreadable_policies().clone(),
            mirror.messages(),
        );
        match mirror.apply_watched(watched) {
            Ok(()) => assert_eq!(mirror.messages(), before.2 + 1),
            Err(e) => {
                let _ = e.to_string();
                let after = (
                    mirror.state().clone(),
                    mirror.unreadable_policies().clone(),
                    mirror.messages(),
                );
                assert_eq!(after, before, "a refused message changes nothing");
            }
        }
        let view = derive(mirror.state(), "east");
        assert!(
            !view.peers.contains_key("east"),
            "our own cluster is no peer"
        );
    }
}

fn json<T>(data: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(value) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let text = serde_json::to_vec(&value).expect("a read value writes");
    let again: T = serde_json::from_slice(&text).unwrap_or_else(|e| {
        panic!(
            "written JSON does not read back: {e}\n{}",
            String::from_utf8_lossy(&text)
        )
    });
    assert_eq!(again, value, "JSON round trip");
}

fuzz_target!(|data: &[u8]| {
    protobuf(data);
    stream(data);
    json::<RevisionEvents>(data);
    json::<Event>(data);
    json::<Cluster>(data);
    json::<ServiceExport>(data);
    json::<Policy>(data);
    json::<CatalogState>(data);
    json::<WatchMessage>(data);
});
