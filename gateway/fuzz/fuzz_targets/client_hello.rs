//! Read a server name from arbitrary bytes: never panic, and a name found maps or not.

#![no_main]

use isthmus_gateway::sni::{clusterset_service, server_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(name)) = server_name(data) {
        let _ = clusterset_service(&name);
    }
});
