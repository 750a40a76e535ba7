//! QUIC endpoint configs for gateway-to-gateway connections: TLS 1.3 with mutual
//! authentication by SPIFFE SVIDs, ALPN `isthmus/1`, on the same rustls (ring) as the
//! rest of the process.
//!
//! 0-RTT stays off: tunnelled streams are not idempotent, and replayed early data could
//! open a connection twice.

use std::sync::Arc;

use isthmus_ca::verify::tls::{SpiffeVerifier, provider};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use crate::live_cert::LiveCert;

/// The ALPN protocol of the Isthmus gateway tunnel, version 1.
pub const ALPN: &[u8] = b"isthmus/1";
/// Version 1 whose stream headers may carry extensions (the trace context); offered
/// first, so that two gateways of this release speak it and one of the previous
/// release (which offers `isthmus/1` alone) is never sent an extension.
pub const ALPN_EXTENDED: &[u8] = b"isthmus/1.1";

/// The protocols a gateway offers and accepts, preferred first.
fn protocols() -> Vec<Vec<u8>> {
    vec![ALPN_EXTENDED.to_vec(), ALPN.to_vec()]
}

/// Whether the peer of `connection` reads stream-header extensions.
pub fn speaks_extensions(connection: &quinn::Connection) -> bool {
    connection
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == ALPN_EXTENDED)
}

/// Why a QUIC config could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicConfigError {
    /// rustls refused the certificate, key or protocol settings.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// quinn refused the rustls configuration.
    #[error("QUIC configuration: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// Transport settings of gateway-to-gateway connections: keep-alives well inside the
/// idle timeout, so that a quiet connection stays up and a dead one is noticed.
pub fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(std::time::Duration::from_secs(5)));
    transport.max_idle_timeout(Some(quinn::VarInt::from_u32(20_000).into()));
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(16_384));
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    transport.datagram_receive_buffer_size(None);
    // Windows sized for a fast path between gateways; memory is only used when data is
    // actually in flight.
    transport.stream_receive_window(quinn::VarInt::from_u32(4 << 20));
    transport.send_window(32 << 20);

    // MTU discovery may search up to the largest UDP payload (the peer's endpoint must
    // accept it too: `endpoint_config`).
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    transport.mtu_discovery_config(Some(mtu));
    Arc::new(transport)
}

/// The gateway's QUIC endpoint on `socket` (see [`bind_udp`]), its GSO batches bounded
/// ([`crate::udp_socket`]).
pub fn endpoint(
    config: quinn::EndpointConfig,
    server: Option<quinn::ServerConfig>,
    socket: std::net::UdpSocket,
) -> std::io::Result<quinn::Endpoint> {
    use quinn::Runtime;
    let runtime = Arc::new(quinn::TokioRuntime);
    let socket = crate::udp_socket::BoundedGso::new(runtime.wrap_udp_socket(socket)?);
    quinn::Endpoint::new_with_abstract_socket(config, server, socket, runtime)
}

/// The largest UDP datagram payload sent or accepted (the IPv4 limit): what MTU
/// discovery may grow datagrams to where the path carries them. Paths of 1,500 bytes
/// stay at 1,452; loopback and jumbo-frame paths move far fewer, larger datagrams and pay
/// far fewer per-packet costs for the same bytes. Through the tunnel on loopback 65,507
/// beat 16,000 (1.66x against 1.00-1.16x the best TLS peer, `docs/benchmarks.md`).
/// quinn sizes its receive buffer from it (x 64 GRO segments x 32): 128 MiB of address
/// space, of which only what the kernel writes (at most 64 KB a slot) is ever touched.
pub const MAX_UDP_PAYLOAD: u16 = 65_507;

/// The gateway's endpoint settings: its stateless-reset key, and datagrams up to
/// [`MAX_UDP_PAYLOAD`] accepted from peers. quinn's default accepts 1,472 bytes and
/// advertises that to the peer, which caps the peer's MTU discovery at the Ethernet size
/// whatever its `upper_bound` says.
pub fn endpoint_config(reset_key: Arc<ring::hmac::Key>) -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::new(reset_key);
    // In bounds by construction (1200..=65527).
    let _ = config.max_udp_payload_size(MAX_UDP_PAYLOAD);
    config
}

/// Socket buffer size asked for on the QUIC socket. The kernel caps it at
/// `net.core.rmem_max` / `wmem_max`; see `docs/benchmarks.md`.
pub const UDP_BUFFER: usize = 4 << 20;

/// Binds the gateway's UDP socket with large buffers: the default (about 200 KiB) drops
/// datagrams during bursts, and every drop halves QUIC's congestion window.
pub fn bind_udp(addr: std::net::SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller cap still works, only less well under load.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A metrics label for a failed handshake; `None` when the verifier refused a
/// certificate (its observer counts those with the precise reason).
pub fn failure_reason(err: &quinn::ConnectionError) -> Option<&'static str> {
    use quinn::ConnectionError;
    match err {
        ConnectionError::TimedOut => Some("timeout"),
        ConnectionError::TransportError(e) if e.reason.contains("invalid peer certificate") => None,
        ConnectionError::TransportError(e) if e.reason.contains("no certificates") => {
            Some("no_certificate")
        }
        ConnectionError::TransportError(_) => Some("protocol"),
        ConnectionError::ConnectionClosed(_) => Some("refused_by_peer"),
        _ => Some("other"),
    }
}

/// The server side of a gateway's QUIC endpoint: presents the current certificate of
/// `cert`, requires a client SVID accepted by `verifier`.
pub fn quic_server_config(
    verifier: Arc<SpiffeVerifier>,
    cert: Arc<LiveCert>,
) -> Result<quinn::ServerConfig, QuicConfigError> {
    let protocols = protocols();
    let alpn: Vec<&[u8]> = protocols.iter().map(Vec::as_slice).collect();
    let tls = isthmus_ca::verify::tls::server_config_resolving(verifier, cert, &alpn)?;
    let quic = QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport_config());
    Ok(config)
}

/// The client side: presents the current certificate of `cert`, accepts a server SVID
/// accepted by `verifier`.
pub fn quic_client_config(
    verifier: Arc<SpiffeVerifier>,
    cert: Arc<LiveCert>,
) -> Result<quinn::ClientConfig, QuicConfigError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(cert);
    tls.resumption = rustls::client::Resumption::disabled();
    tls.alpn_protocols = protocols();
    let quic = QuicClientConfig::try_from(tls)?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}
