//! Real QUIC connections on loopback between gateways with issued SVIDs: mutual TLS
//! succeeds between gateways of the federation, and a client without a valid
//! certificate is refused (a hole other QUIC servers have had).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::verify::tls::{SpiffeVerifier, provider};
use isthmus_ca::{SharedBundle, TrustBundle};
use isthmus_gateway::live_cert::LiveCert;
use isthmus_gateway::quic::{ALPN, ALPN_EXTENDED, quic_client_config, quic_server_config};
use isthmus_testkit::TestPki;
use quinn::crypto::rustls::QuicClientConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

const TIMEOUT: Duration = Duration::from_secs(20);

fn pki() -> TestPki {
    support::pki(&["east", "west"])
}

fn gateway(pki: &TestPki, cluster: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let leaf = pki
        .leaf(cluster, &format!("cluster/{cluster}/gateway/gw"))
        .unwrap();
    (leaf.chain.clone(), leaf.key_der())
}

fn verifier(bundle: &TrustBundle, expected: ExpectedIdentity) -> Arc<SpiffeVerifier> {
    SpiffeVerifier::new(SharedBundle::new(bundle.clone()), expected)
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A west gateway endpoint that accepts one connection and echoes one stream; returns
/// its address and the outcome of the server-side handshake.
fn spawn_west(pki: &TestPki) -> (SocketAddr, tokio::task::JoinHandle<Result<(), String>>) {
    let (chain, key) = gateway(pki, "west");
    let config = quic_server_config(
        verifier(
            &pki.bundle().unwrap(),
            ExpectedIdentity::GatewayOf("east".into()),
        ),
        LiveCert::new(chain, &key).unwrap(),
    )
    .unwrap();
    let endpoint = quinn::Endpoint::server(config, loopback()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let incoming = endpoint.accept().await.ok_or("endpoint closed")?;
        let connection = incoming.await.map_err(|e| e.to_string())?;
        assert_eq!(
            connection
                .handshake_data()
                .unwrap()
                .downcast::<quinn::crypto::rustls::HandshakeData>()
                .unwrap()
                .protocol
                .as_deref(),
            Some(ALPN_EXTENDED),
            "two gateways of this release speak isthmus/1.1"
        );
        let (mut send, mut recv) = connection.accept_bi().await.map_err(|e| e.to_string())?;
        let data = recv.read_to_end(1 << 20).await.map_err(|e| e.to_string())?;
        send.write_all(&data).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        connection.closed().await;
        Ok(())
    });
    (addr, task)
}

async fn echo_once(endpoint: &quinn::Endpoint, addr: SocketAddr) -> Result<Vec<u8>, String> {
    let connection = endpoint
        .connect(addr, "west.gateway")
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(b"hello west")
        .await
        .map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    let reply = recv.read_to_end(1 << 20).await.map_err(|e| e.to_string())?;
    connection.close(0u32.into(), b"done");
    Ok(reply)
}

fn client_endpoint(config: quinn::ClientConfig) -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client(loopback()).unwrap();
    endpoint.set_default_client_config(config);
    endpoint
}

#[tokio::test]
async fn gateways_of_two_clusters_connect_with_mutual_tls() {
    let pki = pki();
    let (addr, server) = spawn_west(&pki);
    let (chain, key) = gateway(&pki, "east");
    let client = client_endpoint(
        quic_client_config(
            verifier(
                &pki.bundle().unwrap(),
                ExpectedIdentity::GatewayOf("west".into()),
            ),
            LiveCert::new(chain, &key).unwrap(),
        )
        .unwrap(),
    );
    let reply = tokio::time::timeout(TIMEOUT, echo_once(&client, addr))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, b"hello west");
    tokio::time::timeout(TIMEOUT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let pki = pki();
    let (addr, server) = spawn_west(&pki);
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier(&pki.bundle().unwrap(), ExpectedIdentity::Any))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let client = client_endpoint(config);
    let outcome = tokio::time::timeout(TIMEOUT, echo_once(&client, addr))
        .await
        .unwrap();
    assert!(
        outcome.is_err(),
        "an unauthenticated client got through: {outcome:?}"
    );
    let refusal = tokio::time::timeout(TIMEOUT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(refusal.contains("no certificates"), "{refusal}");
}

#[tokio::test]
async fn a_client_from_another_root_is_refused() {
    let pki = pki();
    let impostor = self::pki();
    let (addr, server) = spawn_west(&pki);
    let (chain, key) = gateway(&impostor, "east");
    let client = client_endpoint(
        quic_client_config(
            verifier(&pki.bundle().unwrap(), ExpectedIdentity::Any),
            LiveCert::new(chain, &key).unwrap(),
        )
        .unwrap(),
    );
    let outcome = tokio::time::timeout(TIMEOUT, echo_once(&client, addr))
        .await
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    let refusal = tokio::time::timeout(TIMEOUT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(refusal.contains("UnknownRoot"), "{refusal}");
}

#[tokio::test]
async fn a_gateway_of_the_wrong_cluster_is_refused_by_the_client() {
    let pki = pki();
    let (addr, _server) = spawn_west(&pki);
    let (chain, key) = gateway(&pki, "east");
    // The client dials west but expects a gateway of east: the server's SVID does not match.
    let client = client_endpoint(
        quic_client_config(
            verifier(
                &pki.bundle().unwrap(),
                ExpectedIdentity::GatewayOf("east".into()),
            ),
            LiveCert::new(chain, &key).unwrap(),
        )
        .unwrap(),
    );
    let outcome = tokio::time::timeout(TIMEOUT, echo_once(&client, addr))
        .await
        .unwrap();
    let err = outcome.unwrap_err();
    assert!(
        err.contains("UnexpectedIdentity") && err.contains("a gateway of cluster east"),
        "{err}"
    );
}
