//! A gRPC channel to a federation node over TLS with our own rustls config (the
//! SPIFFE verifier, not webpki's), connecting lazily: a node that is down is found out
//! at the first call, not when the channel is made.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

/// A lazily connecting gRPC channel to `addr` over mutual TLS with `config`.
pub fn channel(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    timeout: Option<Duration>,
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
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
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
