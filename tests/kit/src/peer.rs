//! A hand-made peer gateway for tests that must send what a real gateway never would: a
//! QUIC connection with a leaf of the test's choosing, one stream, one header, and the
//! receiver's answer.

use std::net::SocketAddr;
use std::time::Duration;

use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::verify::tls::SpiffeVerifier;
use isthmus_ca::{Authority, SharedBundle, TrustBundle};
use isthmus_gateway::header::{Response, StreamHeader};

/// Connects to the gateway at `addr` as `gateway_id` (a leaf issued by `intermediate`),
/// trusting `server_bundle`, sends `header` on one stream and returns the answer; `Err`
/// says what failed first (the handshake, the stream, no answer within 10 s).
pub async fn open_stream_as(
    addr: SocketAddr,
    intermediate: &Authority,
    gateway_id: &str,
    server_bundle: TrustBundle,
    header: &StreamHeader,
) -> Result<Response, String> {
    let leaf = crate::pki::issue(intermediate, gateway_id, &[], Duration::from_secs(600))
        .map_err(|e| e.to_string())?;
    let cert = isthmus_gateway::live_cert::LiveCert::new(leaf.chain.clone(), &leaf.key_der())
        .map_err(|e| e.to_string())?;
    let verifier = SpiffeVerifier::new(
        SharedBundle::new(server_bundle),
        ExpectedIdentity::AnyGateway,
    );
    let config =
        isthmus_gateway::quic::quic_client_config(verifier, cert).map_err(|e| e.to_string())?;
    let local: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut endpoint = quinn::Endpoint::client(local).map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(config);
    let encoded = header.encode().map_err(|e| e.to_string())?;
    let exchange = async {
        let connection = endpoint
            .connect(addr, "gateway")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(&encoded).await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        loop {
            if let Some((response, _)) = Response::decode(&answer).map_err(|e| e.to_string())? {
                return Ok(response);
            }
            let mut chunk = [0u8; 512];
            match recv.read(&mut chunk).await.map_err(|e| e.to_string())? {
                Some(n) => answer.extend_from_slice(&chunk[..n]),
                None => return Err("the stream ended without an answer".to_owned()),
            }
        }
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer".into()));
    endpoint.close(0u32.into(), b"done");
    outcome
}

/// Opens a QUIC connection to the gateway at `addr` as a gateway of `cluster` with a
/// leaf issued by `intermediate`, sends a stream header for a service that does not
/// exist and waits for any answer: `Ok` when the gateway accepted the connection (its
/// certificate chain) and answered, whatever it answered.
pub async fn probe_gateway(
    addr: SocketAddr,
    intermediate: &Authority,
    cluster: &str,
    server_bundle: TrustBundle,
) -> Result<(), String> {
    let td = intermediate.trust_domain();
    let id = format!("spiffe://{td}/cluster/{cluster}/gateway/probe");
    let header = StreamHeader {
        request_id: 1,
        namespace: "demo".into(),
        service: "nothing".into(),
        port: 1,
        source: isthmus_ca::SpiffeId::parse(&id).map_err(|e| e.to_string())?,
        trace: None,
    };
    open_stream_as(addr, intermediate, &id, server_bundle, &header)
        .await
        .map(|_| ())
}
