//! QUIC's anti-amplification bound on the gateway's tunnel port, measured with an outside
//! client: aioquic (PyPI, from the hashed `tests/quic/requirements.lock`) sends its first
//! Initial from an address that then never answers. Before an address is validated a
//! server may send at most three times what it received from it (RFC 9000 §8.1), and
//! that must hold over the whole window, retransmissions included, or the gateway is a
//! reflector for spoofed sources. The gateway answers such an Initial with one Retry and
//! nothing more (quinn alone, bounding by whole datagrams, sent 4,360 bytes for 1,200:
//! the first flight and a retransmission). Needs `target/quic-venv` (`scripts/test` makes it; or
//! `ISTHMUS_QUIC_PYTHON`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

/// How long the client listens: long enough for several of the server's retransmission
/// timeouts (from 1 s, doubling), each of which would resend its flight if unbounded.
const WINDOW_SECONDS: &str = "8";

fn python() -> PathBuf {
    std::env::var_os("ISTHMUS_QUIC_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/quic-venv/bin/python"),
        PathBuf::from,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unvalidated_address_gets_at_most_three_times_what_it_sent() {
    let python = python();
    assert!(
        python.exists(),
        "{} is missing: scripts/test makes target/quic-venv",
        python.display()
    );
    let pki = support::pki(&["east", "west"]);
    let gateway = isthmus_gateway::Gateway::start_with_identity(
        support::west_config(vec![]),
        pki.gateway_identity("west").unwrap(),
        Path::new("."),
    )
    .await
    .unwrap();
    let addr = gateway.quic_addr();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/quic/amplification.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([addr.ip().to_string(), addr.port().to_string()])
            .arg(WINDOW_SECONDS)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{seen}");
    let (sent, received) = (
        seen["sent"].as_u64().unwrap(),
        seen["received"].as_u64().unwrap(),
    );
    assert!(
        sent >= 1200,
        "a client Initial is padded to 1200 bytes: {seen}"
    );
    // The gateway did answer: the bound is what it sent, not silence.
    assert!(
        received > 0,
        "the gateway never answered the Initial: {seen}"
    );
    assert!(
        received <= 3 * sent,
        "the gateway sent {received} bytes to an address that sent {sent} and never validated: {seen}"
    );
    let replies = seen["replies"].as_array().unwrap();
    assert!(
        replies.len() == 1 && replies[0][2] == "retry",
        "an unproven address gets one Retry and nothing more: {seen}"
    );
    gateway.drain(std::time::Duration::ZERO).await;
}
