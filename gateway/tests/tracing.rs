//! Traces across clusters: two gateways export to an OTLP/gRPC receiver on loopback
//! (built on the OTLP protobuf definitions, `opentelemetry-proto`); one connection
//! through them is one trace, with east's `outbound` and `stream.open` and west's
//! `stream.accept`, `policy.decision` and `upstream.connect`, each parented as it
//! happened, and both access-log lines carry its trace id. A peer of the previous
//! release (ALPN `isthmus/1` only) is sent headers without the extension.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use isthmus_gateway::access_log::config::{AccessLogSettings, AccessLogSink};
use isthmus_gateway::telemetry::config::TracingSettings;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use support::*;

/// Every span the receiver was sent, with its resource's `service.name`.
#[derive(Debug, Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn receiver() -> (std::net::SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let service = TraceServiceServer::new(received.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (addr, received)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn traced(
    receiver: std::net::SocketAddr,
    log: &std::path::Path,
) -> impl Fn(&mut isthmus_gateway::config::GatewayConfig) {
    let log = log.to_owned();
    move |config| {
        config.tracing = Some(TracingSettings {
            otlp_endpoint: format!("http://{receiver}"),
            sample: 1.0,
        });
        config.access_log = Some(AccessLogSettings {
            sink: AccessLogSink::File(log.join(format!("{}.log", config.cluster))),
            sample: 1.0,
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_across_two_clusters_is_one_trace() {
    let (addr, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let (echo, _server) = echo_server().await;
    let tweak = traced(addr, dir.path());
    let Pair { east, west, .. } = Pair::start_tweaked(vec![echo], &tweak, &tweak).await;
    let import = east.addresses().imports[0].1;
    let reply = tokio::time::timeout(BOUND, round_trip(import, b"traced"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, b"traced");
    // Draining exports what is batched.
    east.drain(Duration::from_secs(5)).await;
    west.drain(Duration::from_secs(5)).await;

    let spans = received.0.lock().unwrap().clone();
    let named = |service: &str, name: &str| {
        spans
            .iter()
            .find(|(s, span)| s == service && span.name == name)
            .map(|(_, span)| span.clone())
            .unwrap_or_else(|| panic!("no {name} from {service}: {spans:#?}"))
    };
    let outbound = named("isthmus-gateway-east", "outbound");
    let open = named("isthmus-gateway-east", "stream.open");
    let accept = named("isthmus-gateway-west", "stream.accept");
    let decision = named("isthmus-gateway-west", "policy.decision");
    let connect = named("isthmus-gateway-west", "upstream.connect");
    for span in [&open, &accept, &decision, &connect] {
        assert_eq!(span.trace_id, outbound.trace_id, "one trace: {spans:#?}");
    }
    assert!(
        outbound.parent_span_id.is_empty(),
        "the outbound span is the root"
    );
    assert_eq!(open.parent_span_id, outbound.span_id);
    assert_eq!(
        accept.parent_span_id, open.span_id,
        "west continues east's stream.open"
    );
    assert_eq!(decision.parent_span_id, accept.span_id);
    assert_eq!(connect.parent_span_id, accept.span_id);
    let attribute = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .map(|v| format!("{:?}", v.value))
            .unwrap_or_default()
    };
    assert!(attribute(&decision, "isthmus.policy.rule").contains("configured-peers"));
    // Both access-log lines carry the trace, each with its own span.
    let trace = hex(&outbound.trace_id);
    for (cluster, span) in [("east", &outbound), ("west", &accept)] {
        let text = std::fs::read_to_string(dir.path().join(format!("{cluster}.log"))).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["trace_id"], trace.as_str(), "{cluster}: {line}");
        assert_eq!(
            line["span_id"],
            hex(&span.span_id).as_str(),
            "{cluster}: {line}"
        );
    }
}

/// A raw QUIC server that speaks only ALPN `isthmus/1`, as the previous release does,
/// and hands over the first stream header it receives.
async fn previous_release_peer(
    pki: &isthmus_testkit::TestPki,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Receiver<Vec<u8>>,
) {
    let identity = pki.gateway_identity("west").unwrap();
    let cert =
        isthmus_gateway::live_cert::LiveCert::new(identity.chain.clone(), &identity.key).unwrap();
    let verifier = isthmus_ca::verify::tls::SpiffeVerifier::new(
        isthmus_ca::SharedBundle::new(identity.bundle.clone()),
        isthmus_ca::verify::ExpectedIdentity::AnyGateway,
    );
    let mut tls = rustls::ServerConfig::builder_with_provider(isthmus_ca::verify::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    tls.alpn_protocols = vec![b"isthmus/1".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let endpoint = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(crypto)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let connection = endpoint.accept().await.unwrap().await.unwrap();
        let (_send, mut recv) = connection.accept_bi().await.unwrap();
        let mut prefix = [0u8; 4];
        recv.read_exact(&mut prefix).await.unwrap();
        let len = usize::from(u16::from_be_bytes([prefix[2], prefix[3]]));
        let mut body = vec![0u8; len];
        recv.read_exact(&mut body).await.unwrap();
        let _ = tx.send([&prefix[..], &body].concat());
        // Hold the connection until the gateway closes it (at its abort), bounded.
        let _ = tokio::time::timeout(BOUND, connection.closed()).await;
        drop(endpoint);
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_the_previous_release_is_sent_no_extension() {
    let (addr, _received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&["east", "west"]);
    let (old, header) = previous_release_peer(&pki).await;
    let mut config = east_config(old);
    traced(addr, dir.path())(&mut config);
    let east = isthmus_gateway::Gateway::start_with_identity(
        config,
        pki.gateway_identity("east").unwrap(),
        std::path::Path::new("."),
    )
    .await
    .unwrap();
    let import = east.addresses().imports[0].1;
    let client = tokio::spawn(async move { round_trip(import, b"x").await });
    let bytes = tokio::time::timeout(BOUND, header).await.unwrap().unwrap();
    let (decoded, used) = isthmus_gateway::header::StreamHeader::decode(&bytes)
        .unwrap()
        .unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(
        decoded.trace, None,
        "no extension on an isthmus/1 connection"
    );
    // The body is exactly the version 1 fields: what the previous release reads whole.
    let v1 = 8
        + 2
        + 1
        + decoded.namespace.len()
        + 1
        + decoded.service.len()
        + 2
        + decoded.source.as_str().len();
    assert_eq!(bytes.len() - 4, v1);
    client.abort();
    east.abort().await;
}

/// Through a dev mesh (enrolled members, policy from the federation): the connection's
/// lines on both gateways agree on request id, trace id and bytes, and the trace is the
/// one the collector received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_mesh_connection_is_one_line_on_each_gateway_in_one_trace() {
    use isthmus_testkit::{ClusterSpec, DevMesh, ExportSpec};
    let (addr, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = DevMesh::start(dir.path(), 3, Duration::from_secs(3600))
        .await
        .unwrap();
    mesh.allow_namespace("demo").await.unwrap();
    let traced = format!("[tracing]\notlp_endpoint = \"http://{addr}\"\n");
    let (echo, _server) = echo_server().await;
    let spec = |name: &str, range: &str, exports: Vec<ExportSpec>| ClusterSpec {
        name: name.into(),
        locality: "us".into(),
        import_range: range.into(),
        dns: false,
        exports,
        extra_config: traced.clone(),
    };
    let echo_export = ExportSpec {
        namespace: "demo".into(),
        name: "echo".into(),
        port: 8080,
        endpoint: echo,
    };
    mesh.add_cluster(&spec("west", "127.160.0.0/16", vec![echo_export]))
        .await
        .unwrap();
    mesh.add_cluster(&spec("east", "127.161.0.0/16", vec![]))
        .await
        .unwrap();
    let east = mesh.members["east"].metrics();
    let deadline = std::time::Instant::now() + BOUND;
    while east.imported_services.get() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "east never imported echo"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // East's import of echo listens on the first address of its range.
    let reply = tokio::time::timeout(
        BOUND,
        round_trip("127.161.0.1:8080".parse().unwrap(), b"one line each"),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(reply, b"one line each");
    let (east_log, west_log) = (mesh.access_log("east"), mesh.access_log("west"));
    mesh.shutdown().await;

    let line = |path: &std::path::Path| -> serde_json::Value {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        lines[0].clone()
    };
    let (sent, got) = (line(&east_log), line(&west_log));
    assert_eq!(
        (sent["direction"].as_str(), got["direction"].as_str()),
        (Some("outbound"), Some("inbound"))
    );
    for key in ["request_id", "trace_id", "bytes_sent", "bytes_received"] {
        assert!(!sent[key].is_null(), "{key}: {sent}");
        assert_eq!(sent[key], got[key], "{key}: {sent} / {got}");
    }
    assert_ne!(sent["span_id"], got["span_id"]);
    let spans = received.0.lock().unwrap().clone();
    let trace = sent["trace_id"].as_str().unwrap();
    let in_trace: Vec<&str> = spans
        .iter()
        .filter(|(_, s)| hex(&s.trace_id) == trace)
        .map(|(_, s)| s.name.as_str())
        .collect();
    for name in [
        "outbound",
        "stream.open",
        "stream.accept",
        "policy.decision",
        "upstream.connect",
    ] {
        assert!(in_trace.contains(&name), "{name} not in {in_trace:?}");
    }
}
