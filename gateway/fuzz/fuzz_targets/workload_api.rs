//! Feed arbitrary bytes as what a local process sends the gateway's SPIFFE Workload API:
//!
//! - the connection's bytes into the `:authority` rewriter
//!   (`workload_api::authority::Rewriter`), which reads HTTP/2 frame headers and HPACK
//!   header blocks before h2 does, cut into chunks at points the input chooses;
//! - the request messages, protobuf (prost `decode` of the generated
//!   `workload_api::proto` types: `X509SvidRequest`, `X509BundlesRequest`,
//!   `JwtsvidRequest`, `JwtBundlesRequest`).
//!
//! Input: one byte that seeds the chunk sizes, then the connection's bytes.
//!
//! Asserts: nothing panics; the rewriter releases exactly the bytes it was fed, in order,
//! changed only where a `%` became `_`; how the bytes were cut changes nothing of what
//! comes out; it never holds back more than a preface or one frame of `MAX_FRAME`
//! bytes (with its 9-byte header); a request that decodes encodes to bytes that decode
//! to the same request.

#![no_main]

use isthmus_gateway::workload_api::authority::{MAX_FRAME, Rewriter};
use isthmus_gateway::workload_api::proto;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// Feeds `bytes` in chunks whose sizes come from `seed` (a small xorshift, so that the
/// same input always cuts the same way); returns what came out.
fn rewrite(bytes: &[u8], seed: u8) -> Vec<u8> {
    let mut rewriter = Rewriter::default();
    let mut state = u32::from(seed) | 0x100;
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % 64 + 1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        out.extend(rewriter.feed(chunk));
        assert!(
            rewriter.held() <= 9 + MAX_FRAME,
            "holds {} bytes back",
            rewriter.held()
        );
        rest = tail;
    }
    out.extend(rewriter.finish());
    out
}

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(message) = M::decode(bytes) {
        let again = M::decode(message.encode_to_vec().as_slice()).expect("encoded decodes");
        assert_eq!(again, message);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let whole = {
        let mut rewriter = Rewriter::default();
        let mut out = rewriter.feed(bytes);
        out.extend(rewriter.finish());
        out
    };
    assert_eq!(whole.len(), bytes.len(), "every byte released, none added");
    for (i, (&before, &after)) in bytes.iter().zip(&whole).enumerate() {
        assert!(
            before == after || (before == b'%' && after == b'_'),
            "byte {i} changed from {before:#04x} to {after:#04x}"
        );
    }
    assert_eq!(rewrite(bytes, seed), whole, "the cut changed the output");

    round_trip::<proto::X509svidRequest>(bytes);
    round_trip::<proto::X509BundlesRequest>(bytes);
    round_trip::<proto::JwtsvidRequest>(bytes);
    round_trip::<proto::JwtBundlesRequest>(bytes);
});
