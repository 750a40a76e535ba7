//! Decode arbitrary bytes as a stream header and as a response; whatever decodes must
//! encode back to the same bytes and decode to the same value.

#![no_main]

use isthmus_gateway::header::{Response, StreamHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((header, used))) = StreamHeader::decode(data) {
        let again = header.encode().expect("a decoded header encodes");
        assert_eq!(&again[..], &data[..used]);
        let (back, _) = StreamHeader::decode(&again).expect("re-decodes").expect("whole");
        assert_eq!(back, header);
    }
    if let Ok(Some((response, used))) = Response::decode(data) {
        let again = response.encode();
        assert_eq!(&again[..], &data[..used]);
        assert_eq!(Response::decode(&again).expect("re-decodes").expect("whole").0, response);
    }
});
