//! The gateway's DNS server (hickory-server) for `clusterset.local`: A records for
//! `<service>.<namespace>.svc.clusterset.local` (the address of the service's local
//! listener), SRV records for its ports, NXDOMAIN for every other name in the zone, and
//! REFUSED for names outside it — or, when configured, forwards those to an upstream
//! resolver over UDP and relays its answer. The answers come from a [`DnsTable`] that
//! changes while the server runs; the decision is [`answer`], a pure function.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{
    Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

use crate::names::{NameKind, classify, service_name};

/// How long clients may cache an answer: short, because imports come and go live.
pub const TTL: u32 = 5;

/// One service as DNS shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    /// The address its local listener has.
    pub address: Ipv4Addr,
    /// Its ports: name and number.
    pub ports: Vec<(String, u16)>,
}

/// The names the server answers, by (namespace, service); replaced live.
#[derive(Debug, Default)]
pub struct DnsTable {
    services: RwLock<BTreeMap<(String, String), ServiceRecord>>,
}

impl DnsTable {
    /// An empty table.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Adds or replaces a service.
    pub fn put(&self, namespace: &str, service: &str, record: ServiceRecord) {
        self.write()
            .insert((namespace.to_owned(), service.to_owned()), record);
    }

    /// Removes a service; its names answer NXDOMAIN from now on.
    pub fn remove(&self, namespace: &str, service: &str) {
        self.write()
            .remove(&(namespace.to_owned(), service.to_owned()));
    }

    fn get(&self, namespace: &str, service: &str) -> Option<ServiceRecord> {
        let services = self.services.read().unwrap_or_else(|p| p.into_inner());
        services
            .get(&(namespace.to_owned(), service.to_owned()))
            .cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<(String, String), ServiceRecord>> {
        self.services.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the server answers to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// NOERROR, NXDOMAIN or REFUSED.
    pub code: ResponseCode,
    /// The records (empty for NODATA and errors).
    pub records: Vec<Record>,
}

/// Decides the answer to `name`/`kind` from `table` (pure).
pub fn answer(table: &DnsTable, name: &Name, kind: RecordType) -> Answer {
    let records = |records| Answer {
        code: ResponseCode::NoError,
        records,
    };
    let code = |code| Answer {
        code,
        records: Vec::new(),
    };
    match classify(&name.to_ascii()) {
        NameKind::OutsideZone => code(ResponseCode::Refused),
        NameKind::OtherInZone => code(ResponseCode::NXDomain),
        NameKind::Service { namespace, service } => match table.get(&namespace, &service) {
            None => code(ResponseCode::NXDomain),
            Some(record) if kind == RecordType::A || kind == RecordType::ANY => {
                let a = Record::from_rdata(name.clone(), TTL, RData::A(A(record.address)));
                records(vec![a])
            }
            // The name exists but has no records of this type (AAAA, TXT, ...): NODATA.
            Some(_) => records(Vec::new()),
        },
        NameKind::Srv {
            port,
            protocol,
            namespace,
            service,
        } => {
            let Some(record) = table.get(&namespace, &service) else {
                return code(ResponseCode::NXDomain);
            };
            let Some((_, number)) = record.ports.iter().find(|(n, _)| *n == port) else {
                return code(ResponseCode::NXDomain);
            };
            if protocol != "tcp" {
                return code(ResponseCode::NXDomain);
            }
            if kind != RecordType::SRV && kind != RecordType::ANY {
                return records(Vec::new());
            }
            let Ok(target) = Name::from_ascii(service_name(&namespace, &service)) else {
                return code(ResponseCode::ServFail);
            };
            let srv = SRV::new(0, 100, *number, target);
            records(vec![Record::from_rdata(name.clone(), TTL, RData::SRV(srv))])
        }
    }
}

/// How long an upstream resolver has to answer a forwarded question.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks `upstream` the question `query` over UDP and returns its answer section and code.
pub async fn forward(upstream: SocketAddr, query: Query) -> Result<Answer, String> {
    use ring::rand::SecureRandom;
    let mut id = [0u8; 2];
    ring::rand::SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| "no randomness for the query id".to_owned())?;
    let id = u16::from_le_bytes(id);
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(query.clone());
    let bytes = message.to_vec().map_err(|e| e.to_string())?;
    let local: SocketAddr = match upstream {
        SocketAddr::V4(a) if a.ip().is_loopback() => SocketAddr::from(([127, 0, 0, 1], 0)),
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket.connect(upstream).await.map_err(|e| e.to_string())?;
    socket.send(&bytes).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| format!("{upstream} did not answer within {FORWARD_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        // Only the answer to our question counts (a spoofed or late datagram does not).
        if reply.metadata.id != id || reply.queries.first() != Some(&query) {
            continue;
        }
        return Ok(Answer {
            code: reply.metadata.response_code,
            records: reply.answers,
        });
    }
}

/// hickory's request handler over a [`DnsTable`].
#[derive(Debug, Clone)]
pub struct DnsHandler {
    table: Arc<DnsTable>,
    upstream: Option<SocketAddr>,
}

impl DnsHandler {
    /// Answers from `table`; names outside the zone go to `upstream` when set.
    pub fn new(table: Arc<DnsTable>, upstream: Option<SocketAddr>) -> Self {
        Self { table, upstream }
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: hickory_server::net::runtime::Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = false;
        let answer = match request.queries.queries() {
            [query] => {
                let local = answer(&self.table, &query.name().into(), query.query_type());
                match self.upstream {
                    Some(upstream) if local.code == ResponseCode::Refused => {
                        metadata.authoritative = false;
                        metadata.recursion_available = true;
                        forward(upstream, query.original().clone())
                            .await
                            .unwrap_or_else(|e| {
                                tracing::warn!(%upstream, error = %e, "forwarding a DNS question failed");
                                Answer {
                                    code: ResponseCode::ServFail,
                                    records: Vec::new(),
                                }
                            })
                    }
                    _ => local,
                }
            }
            // Several questions in one message: nobody sends that; refuse it.
            _ => Answer {
                code: ResponseCode::FormErr,
                records: Vec::new(),
            },
        };
        metadata.response_code = answer.code;
        let builder = MessageResponseBuilder::from_message_request(request);
        let response = builder.build(metadata, answer.records.iter(), [], [], []);
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "could not send a DNS answer");
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// A running DNS server.
pub struct DnsServer {
    server: Server<DnsHandler>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer").finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Serves `table` on `udp` and `tcp` (bound by the caller, usually the same address),
    /// forwarding names outside the zone to `upstream` when set.
    pub fn start(
        table: Arc<DnsTable>,
        udp: UdpSocket,
        tcp: TcpListener,
        upstream: Option<SocketAddr>,
    ) -> Self {
        let mut server = Server::new(DnsHandler::new(table, upstream));
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        Self { server }
    }

    /// Stops serving.
    pub async fn stop(mut self) {
        if let Err(e) = self.server.shutdown_gracefully().await {
            tracing::debug!(error = %e, "DNS server stopped with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Arc<DnsTable> {
        let table = DnsTable::new();
        let record = ServiceRecord {
            address: Ipv4Addr::new(127, 77, 0, 1),
            ports: vec![("http".into(), 8080)],
        };
        table.put("demo", "echo", record);
        table
    }

    fn ask(table: &DnsTable, name: &str, kind: RecordType) -> Answer {
        answer(table, &Name::from_ascii(name).unwrap(), kind)
    }

    #[test]
    fn known_services_answer_a_and_srv_and_nothing_else() {
        let table = table();
        let a = ask(&table, "echo.demo.svc.clusterset.local.", RecordType::A);
        assert_eq!(a.code, ResponseCode::NoError);
        assert_eq!(
            &a.records[0].data,
            &RData::A(A(Ipv4Addr::new(127, 77, 0, 1)))
        );
        let aaaa = ask(&table, "echo.demo.svc.clusterset.local.", RecordType::AAAA);
        assert_eq!((aaaa.code, aaaa.records.len()), (ResponseCode::NoError, 0));
        let srv = ask(
            &table,
            "_http._tcp.echo.demo.svc.clusterset.local.",
            RecordType::SRV,
        );
        let RData::SRV(srv) = &srv.records[0].data else {
            panic!("{srv:?}")
        };
        assert_eq!(srv.port, 8080);
        assert_eq!(srv.target.to_ascii(), "echo.demo.svc.clusterset.local.");
    }

    #[test]
    fn unknown_names_are_nxdomain_and_other_zones_refused() {
        let table = table();
        for name in [
            "nope.demo.svc.clusterset.local.",
            "_grpc._tcp.echo.demo.svc.clusterset.local.",
            "_http._udp.echo.demo.svc.clusterset.local.",
            "demo.svc.clusterset.local.",
        ] {
            assert_eq!(
                ask(&table, name, RecordType::A).code,
                ResponseCode::NXDomain,
                "{name}"
            );
        }
        assert_eq!(
            ask(&table, "example.com.", RecordType::A).code,
            ResponseCode::Refused
        );
        table.remove("demo", "echo");
        assert_eq!(
            ask(&table, "echo.demo.svc.clusterset.local.", RecordType::A).code,
            ResponseCode::NXDomain
        );
    }
}
