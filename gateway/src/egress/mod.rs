//! The egress: the one controlled way out of the mesh. Listeners take connections from
//! apps (or, through an export of the listener, from other clusters); the external host
//! comes from the TLS server name (passthrough: bytes pass undecrypted) or the HTTP
//! `Host` header (originate: the gateway opens TLS to the host and verifies it). Only
//! hosts and ports on the allow-list are reached; every decision is logged and counted.

pub mod config;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::access_log::Pending;
use crate::access_log::entry::{AppTls, Direction, ResponseFlag, SecurityPolicy};
use crate::gateway::{Shared, StartError};
use crate::metrics::EgressLabels;
use crate::outbound::{accept_loop, read_client_hello, refuse_local};
use config::{AllowedHost, EgressDecision, EgressListener, EgressMode, EgressSettings};

/// The largest HTTP request head an originate listener reads to find `Host`.
const MAX_HEAD: usize = 16 * 1024;

/// The egress in force: the allow-list and, per host, the TLS client for origination.
struct Egress {
    settings: EgressSettings,
    /// Index-aligned with `settings.hosts`.
    tls: Vec<Option<Arc<rustls::ClientConfig>>>,
}

fn client_config(ca: &Path, field: &str) -> Result<Arc<rustls::ClientConfig>, StartError> {
    let fail = |e: String| StartError::Tls(format!("{field}: {}: {e}", ca.display()));
    let pem = std::fs::read_to_string(ca).map_err(|e| fail(format!("cannot read: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in isthmus_ca::pem::certs_from_pem(&pem).map_err(|e| fail(e.to_string()))? {
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("holds no certificate".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(isthmus_ca::verify::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Binds the egress listeners (CA paths relative to `base`) and serves them as tracked
/// tunnel tasks; returns their addresses in config order.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    settings: &EgressSettings,
    base: &Path,
) -> Result<Vec<SocketAddr>, StartError> {
    {
        let mut tls = Vec::new();
        for (i, host) in settings.hosts.iter().enumerate() {
            tls.push(match &host.ca {
                Some(ca) => Some(client_config(
                    &base.join(ca),
                    &format!("egress.hosts[{i}].ca"),
                )?),
                None => None,
            });
        }
        let egress = Arc::new(Egress {
            settings: settings.clone(),
            tls,
        });
        let mut addrs = Vec::new();
        for (i, listener) in settings.listeners.iter().enumerate() {
            let what = format!("egress.listeners[{i}].listen");
            let bound =
                TcpListener::bind(listener.listen)
                    .await
                    .map_err(|source| StartError::Bind {
                        what: what.clone(),
                        addr: listener.listen,
                        source,
                    })?;
            addrs.push(bound.local_addr().map_err(|source| StartError::Bind {
                what,
                addr: listener.listen,
                source,
            })?);
            let egress = egress.clone();
            let listener = listener.clone();
            shared
                .tunnels
                .spawn(accept_loop(bound, shared.clone(), move |tcp, shared| {
                    let egress = egress.clone();
                    let listener = listener.clone();
                    async move { connection(tcp, &egress, &listener, shared).await }
                }));
        }
        tracing::info!(listeners = ?addrs, hosts = settings.hosts.len(), "egress started");
        Ok(addrs)
    }
}

async fn connection(
    mut tcp: TcpStream,
    egress: &Egress,
    listener: &EgressListener,
    shared: Arc<Shared>,
) {
    let mut line = Pending::of_tcp(Direction::Egress, &tcp);
    line.request(shared.next_request_id());
    line.entry.source_cluster = Some(shared.me.cluster.clone());
    line.entry.connection_security_policy = SecurityPolicy::None;
    line.entry.app_tls = match listener.mode {
        EgressMode::Passthrough => AppTls::Passthrough,
        EgressMode::Originate => AppTls::None,
    };
    let (host, first) = match listener.mode {
        EgressMode::Passthrough => read_client_hello(&mut tcp, shared.me.timeouts.stream_open)
            .await
            .map_err(|e| HostError::Hello(e.to_string())),
        EgressMode::Originate => read_host_header(&mut tcp, shared.me.timeouts.stream_open).await,
    }
    .map_or_else(|e| (Err(e), Vec::new()), |(h, f)| (Ok(h), f));
    let host = match host {
        Ok(host) => host,
        Err(e) => return refuse_local(tcp, &shared, "egress", "bad_request", &e.to_string(), line),
    };
    let port = listener.port;
    let span = shared.tracing.span(
        "egress.decision",
        opentelemetry::trace::SpanKind::Client,
        crate::telemetry::Parent::Root,
        vec![
            opentelemetry::KeyValue::new("server.address", host.clone()),
            opentelemetry::KeyValue::new("server.port", i64::from(port)),
        ],
    );
    line.traced(&span);
    line.entry.requested_server_name = Some(host.clone());
    line.entry.destination_service = Some(format!("{host}:{port}"));
    let count = |pattern: &str, decision: &str| {
        shared
            .metrics
            .egress_decisions
            .get_or_create(&EgressLabels {
                host: pattern.to_owned(),
                port: port.to_string(),
                decision: decision.to_owned(),
            })
            .inc();
    };
    let entry = match egress.settings.decide(&host, port) {
        EgressDecision::Allow(entry) => entry,
        EgressDecision::Deny(why) => {
            // Unlisted names come from clients: they are logged, not used as labels.
            let pattern = egress
                .settings
                .hosts
                .iter()
                .find(|h| h.pattern.matches(&host.to_ascii_lowercase()))
                .map_or_else(|| "unlisted".to_owned(), |h| h.pattern.to_string());
            count(&pattern, "deny");
            line.entry.policy_decision = Some("deny".into());
            line.entry.policy_rule = Some(format!("egress/{pattern}"));
            span.fail("denied: not on the allow-list");
            tracing::warn!(%host, port, reason = %why, "egress denied");
            return refuse_local(tcp, &shared, "egress", "denied", &why, line);
        }
    };
    if let Err(why) = shared
        .catalog
        .current()
        .check_claim(&entry.pattern, &entry.namespace)
    {
        count(&entry.pattern.to_string(), "deny");
        line.entry.policy_decision = Some("deny".into());
        line.entry.policy_rule = Some(format!("egress/{}", entry.pattern));
        tracing::warn!(%host, port, reason = %why, "egress denied");
        return refuse_local(
            tcp,
            &shared,
            "egress",
            "unclaimed_host",
            &why.to_string(),
            line,
        );
    }
    count(&entry.pattern.to_string(), "allow");
    line.entry.policy_decision = Some("allow".into());
    line.entry.policy_rule = Some(format!("egress/{}", entry.pattern));
    span.set(opentelemetry::KeyValue::new(
        "isthmus.policy.rule",
        format!("egress/{}", entry.pattern),
    ));
    tracing::info!(%host, port, mode = ?listener.mode, namespace = %entry.namespace, "egress allowed");
    let mut out = match dial(&host, port, entry, &shared).await {
        Ok(out) => out,
        Err(e) => {
            line.entry.upstream_transport_failure_reason = Some(e.to_string());
            tracing::warn!(%host, port, error = %e, "egress connect failed");
            return refuse_local(tcp, &shared, "egress", "unavailable", &e.to_string(), line);
        }
    };
    line.entry.upstream_host = out.peer_addr().ok().map(|a| a.to_string());
    let copied = match listener.mode {
        EgressMode::Passthrough => {
            if out.write_all(&first).await.is_err() {
                return failed(line, &shared);
            }
            tokio::select! {
                copied = tokio::io::copy_bidirectional(&mut tcp, &mut out) => copied,
                () = shared.tunnels.cut.cancelled() => return cut(line, &shared),
            }
        }
        EgressMode::Originate => {
            let Some(config) = egress
                .settings
                .hosts
                .iter()
                .position(|h| std::ptr::eq(h, entry))
                .and_then(|i| egress.tls[i].clone())
            else {
                return refuse_local(
                    tcp,
                    &shared,
                    "egress",
                    "denied",
                    "no ca configured for TLS origination",
                    line,
                );
            };
            let Ok(name) = rustls_pki_types::ServerName::try_from(host.to_ascii_lowercase()) else {
                return refuse_local(
                    tcp,
                    &shared,
                    "egress",
                    "bad_request",
                    "not a server name",
                    line,
                );
            };
            let connector = tokio_rustls::TlsConnector::from(config);
            let mut tls = match tokio::time::timeout(
                shared.me.timeouts.connect,
                connector.connect(name, out),
            )
            .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    let msg = format!("TLS to {host}:{port} failed: {e}");
                    tracing::warn!(%host, port, error = %e, "egress TLS origination failed");
                    return refuse_local(tcp, &shared, "egress", "unavailable", &msg, line);
                }
                Err(_) => {
                    return refuse_local(
                        tcp,
                        &shared,
                        "egress",
                        "unavailable",
                        "TLS handshake timed out",
                        line,
                    );
                }
            };
            if tls.write_all(&first).await.is_err() {
                return failed(line, &shared);
            }
            tokio::select! {
                copied = tokio::io::copy_bidirectional(&mut tcp, &mut tls) => copied,
                () = shared.tunnels.cut.cancelled() => return cut(line, &shared),
            }
        }
    };
    tracing::debug!(%host, port, ?copied, "egress connection closed");
    if let Ok((from_client, to_client)) = copied {
        line.entry.bytes_received = first.len() as u64 + from_client;
        line.entry.bytes_sent = to_client;
    }
    line.write(&shared.access_log, None);
}

fn failed(mut line: Pending, shared: &Shared) {
    line.entry
        .response_flags
        .push(ResponseFlag::UpstreamConnectionFailure);
    line.write(&shared.access_log, None);
}

fn cut(mut line: Pending, shared: &Shared) {
    line.entry.response_flags.push(ResponseFlag::Drained);
    line.write(&shared.access_log, None);
}

/// Why an external host could not be reached.
#[derive(Debug, thiserror::Error)]
enum DialError {
    /// DNS gave no answer.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        source: std::io::Error,
    },
    /// Every address failed (`last` says how the last did).
    #[error("{host}: {last}")]
    Unreachable {
        /// The host.
        host: String,
        /// The last failure.
        last: String,
    },
}

/// Connects to the host: its fixed address, else what DNS says.
async fn dial(
    host: &str,
    port: u16,
    entry: &AllowedHost,
    shared: &Shared,
) -> Result<TcpStream, DialError> {
    let addrs: Vec<SocketAddr> = match entry.address {
        Some(addr) => vec![addr],
        None => tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| DialError::Resolve {
                host: host.to_owned(),
                source,
            })?
            .collect(),
    };
    let mut last = "no address".to_owned();
    for addr in addrs {
        match tokio::time::timeout(shared.me.timeouts.connect, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: no answer within {:?}", shared.me.timeouts.connect),
        }
    }
    Err(DialError::Unreachable {
        host: host.to_owned(),
        last,
    })
}

/// Why no host could be read from a client's request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum HostError {
    /// The client's first bytes are not a ClientHello with a name.
    #[error("{0}")]
    Hello(String),
    /// The request head is too long.
    #[error("no end of the request head in {MAX_HEAD} bytes")]
    TooLong,
    /// The client closed first.
    #[error("connection closed before a request head")]
    Closed,
    /// The client sent no whole head in time.
    #[error("no request head in time")]
    Timeout,
    /// The head is not text.
    #[error("the request head is not text")]
    NotText,
    /// It names no host.
    #[error("the request has no Host header")]
    NoHost,
    /// Its `Host` is empty.
    #[error("the Host header is empty")]
    EmptyHost,
}

/// Reads an HTTP/1.1 request head and returns its `Host` (without a port) and the bytes
/// read.
async fn read_host_header(
    tcp: &mut TcpStream,
    within: std::time::Duration,
) -> Result<(String, Vec<u8>), HostError> {
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(within, async {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                return host_of(&head[..end]);
            }
            if head.len() >= MAX_HEAD {
                return Err(HostError::TooLong);
            }
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err(HostError::Closed),
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    match read {
        Ok(Ok(host)) => Ok((host, head)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(HostError::Timeout),
    }
}

/// The `Host` of a request head, without its port.
fn host_of(head: &[u8]) -> Result<String, HostError> {
    let text = std::str::from_utf8(head).map_err(|_| HostError::NotText)?;
    let value = text
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim())
        .ok_or(HostError::NoHost)?;
    let host = match value.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => value,
    };
    if host.is_empty() {
        return Err(HostError::EmptyHost);
    }
    Ok(host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::{HostError, host_of};

    #[test]
    fn the_host_header_is_found_and_its_port_dropped() {
        let head = b"GET / HTTP/1.1\r\nUser-Agent: x\r\nHOST: api.partner.test:443";
        assert_eq!(host_of(head).unwrap(), "api.partner.test");
        assert_eq!(
            host_of(b"GET / HTTP/1.1\r\nUser-Agent: x"),
            Err(HostError::NoHost)
        );
        assert_eq!(
            host_of(b"GET / HTTP/1.1\r\nHost: "),
            Err(HostError::EmptyHost)
        );
    }
}
