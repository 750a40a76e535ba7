//! Feed arbitrary bytes as a DNS query datagram into the gateway's answer path: the
//! bytes are parsed as the UDP loop parses them (`hickory_proto::op::Message::from_vec`),
//! and each question goes to the pure decision `isthmus_gateway::dns::answer` over a
//! small fixed `DnsTable` (and its name to `names::classify`). The reply is then built
//! as the server builds it (question echoed, EDNS answered, answers dropped with TC
//! when over the client's UDP size; a copy of the private `encode_reply`).
//!
//! Asserts: nothing panics; an answer with records is NOERROR and every record is named
//! as the question; REFUSED only for names outside `clusterset.local`; letter case does
//! not change the answer; a reply with the answer serializes, decodes back to the same
//! records, and fits the UDP size or is truncated to one that does.

#![no_main]

use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use isthmus_gateway::dns::{Answer, DnsTable, ServiceRecord, answer, encode_reply};
use isthmus_gateway::names::{NameKind, classify};
use libfuzzer_sys::fuzz_target;

fn table() -> &'static Arc<DnsTable> {
    static TABLE: OnceLock<Arc<DnsTable>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let table = DnsTable::new();
        table.put(
            "demo",
            "echo",
            ServiceRecord {
                address: Ipv4Addr::new(127, 77, 0, 1),
                ports: vec![("http".into(), 8080), ("grpc".into(), 9090)],
            },
        );
        table.put(
            "shop",
            "api",
            ServiceRecord {
                address: Ipv4Addr::new(127, 77, 0, 2),
                ports: vec![("https".into(), 443)],
            },
        );
        table.put(
            "shop",
            "reviews",
            ServiceRecord {
                address: Ipv4Addr::new(127, 77, 0, 3),
                ports: Vec::new(),
            },
        );
        table
    })
}

/// The server's reply to `request`, as the server encodes it: it must encode, decode
/// back, keep the answer's code, and carry the answer's records unless it had to drop
/// them (TC) to fit the client's UDP size.
fn reply(request: &Message, answer: &Answer) {
    let bytes = encode_reply(request, answer.clone(), true).expect("a reply encodes");
    let decoded = Message::from_vec(&bytes).expect("a serialized reply decodes");
    if decoded.metadata.truncation {
        assert!(
            decoded.answers.is_empty(),
            "a truncated reply carries no answers"
        );
    } else {
        assert_eq!(
            decoded.answers, answer.records,
            "the answer survives the wire"
        );
    }
    assert_eq!(decoded.metadata.response_code, answer.code);
}

fn question(query: &Query) -> Answer {
    let name = query.name();
    let kind = query.query_type();
    let got = answer(table(), name, kind);
    if !got.records.is_empty() {
        assert_eq!(got.code, ResponseCode::NoError, "{got:?}");
        for record in &got.records {
            assert_eq!(&record.name, name, "a record is named as the question");
        }
    }
    let class = classify(&name.to_ascii());
    if got.code == ResponseCode::Refused {
        assert_eq!(
            class,
            NameKind::OutsideZone,
            "REFUSED inside the zone: {name}"
        );
    }
    let lower = answer(table(), &name.to_lowercase(), kind);
    assert_eq!(
        (lower.code, lower.records.len()),
        (got.code, got.records.len()),
        "letter case changed the answer to {name} {kind:?}"
    );
    got
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = Message::from_vec(data) else {
        return;
    };
    for query in &request.queries {
        let _ = question(query);
    }
    if request.metadata.message_type != MessageType::Query
        || request.metadata.op_code != OpCode::Query
    {
        return;
    }
    // As `DnsHandler::local`: one question is answered, several get FORMERR.
    let got = match request.queries.as_slice() {
        [query] => question(query),
        _ => Answer {
            code: ResponseCode::FormErr,
            records: Vec::new(),
        },
    };
    reply(&request, &got);
});
