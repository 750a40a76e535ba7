//! Decode arbitrary bytes as a stream header and as a response. A decoded header must
//! encode, and its encoding must decode to the same header; the encoding is the input's
//! bytes exactly unless the input carried extensions of types this gateway skips (the
//! protocol has receivers skip unknown types), and never longer than the input. A
//! decoded response (no extensions) must encode back to the same bytes.

#![no_main]

use isthmus_gateway::header::{Response, StreamHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((header, used))) = StreamHeader::decode(data) {
        let again = header.encode().expect("a decoded header encodes");
        assert!(
            again.len() <= used,
            "re-encoding grew: {} > {used}",
            again.len()
        );
        let (back, whole) = StreamHeader::decode(&again)
            .expect("re-decodes")
            .expect("whole");
        assert_eq!(back, header);
        assert_eq!(whole, again.len());
        if again.len() == used {
            assert_eq!(&again[..], &data[..used]);
        }
    }
    if let Ok(Some((response, used))) = Response::decode(data) {
        let again = response.encode();
        assert_eq!(&again[..], &data[..used]);
        assert_eq!(
            Response::decode(&again)
                .expect("re-decodes")
                .expect("whole")
                .0,
            response
        );
    }
});
