//! A gRPC channel to a federation node over TLS with our own rustls config (the
//! SPIFFE verifier, not webpki's), connecting lazily: a node that is down is found out
//! at the first call, not when the channel is made.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};

/// A lazily connecting gRPC channel to `addr` over mutual TLS with `config`.
pub fn channel(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    timeout: Option<Duration>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    channel_from(addr, config, timeout, None)
}

/// [`channel`], its connections leaving from `source` when given (the kernel's choice
/// of local address otherwise).
pub fn channel_from(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    timeout: Option<Duration>,
    source: Option<IpAddr>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    if let Some(timeout) = timeout {
        endpoint = endpoint.timeout(timeout);
    }
    let connector = tower::service_fn(move |uri: tonic::codegen::http::Uri| {
        let config = config.clone();
        async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = match source {
                None => TcpStream::connect((host.as_str(), port)).await?,
                Some(source) => connect_from(source, &host, port).await?,
            };
            tcp.set_nodelay(true)?;
            // The verifier checks the SPIFFE ID, not this name; it only fills SNI.
            let name = ServerName::try_from(host).unwrap_or_else(|_| {
                ServerName::try_from("federation.isthmus").expect("valid name")
            });
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// Connects to `host:port` from `source`, trying each of the host's addresses of
/// `source`'s family in turn.
async fn connect_from(source: IpAddr, host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = None;
    for target in tokio::net::lookup_host((host, port)).await? {
        if target.is_ipv4() != source.is_ipv4() {
            continue;
        }
        let socket = if source.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(source, 0))?;
        match socket.connect(target).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{host} has no address of the family of source address {source}"),
        )
    }))
}
