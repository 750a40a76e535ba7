//! The gateway's DNS server (hickory-server) for `clusterset.local`: A records for
//! `<service>.<namespace>.svc.clusterset.local` (the address of the service's local
//! listener), SRV records for its ports, NXDOMAIN for every other name in the zone, and
//! REFUSED for names outside it — or, when configured, forwards those to an upstream
//! resolver over UDP and relays its answer. The answers come from a [`DnsTable`] that
//! changes while the server runs; the decision is [`answer`], a pure function.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
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

/// Services by namespace, then name: looked up by `&str` without allocating.
type Services = HashMap<String, HashMap<String, Arc<ServiceRecord>>>;

/// The names the server answers, by (namespace, service); replaced live.
#[derive(Debug, Default)]
pub struct DnsTable {
    services: RwLock<Services>,
}

impl DnsTable {
    /// An empty table.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Adds or replaces a service.
    pub fn put(&self, namespace: &str, service: &str, record: ServiceRecord) {
        self.write()
            .entry(namespace.to_owned())
            .or_default()
            .insert(service.to_owned(), Arc::new(record));
    }

    /// Removes a service; its names answer NXDOMAIN from now on.
    pub fn remove(&self, namespace: &str, service: &str) {
        let mut services = self.write();
        if let Some(names) = services.get_mut(namespace) {
            names.remove(service);
            if names.is_empty() {
                services.remove(namespace);
            }
        }
    }

    fn get(&self, namespace: &str, service: &str) -> Option<Arc<ServiceRecord>> {
        let services = self.services.read().unwrap_or_else(|p| p.into_inner());
        services.get(namespace)?.get(service).cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Services> {
        self.services.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A DNS-1123 label in lower case.
fn is_label(label: &[u8]) -> bool {
    (1..=63).contains(&label.len())
        && label
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && label.first() != Some(&b'-')
        && label.last() != Some(&b'-')
}

/// `<service>.<namespace>.svc.clusterset.local.` in lower case, read straight from the
/// name's labels: the common query, answered without allocating. Anything else (upper
/// case, SRV names, other names) takes [`classify`].
fn lower_service_name(name: &Name) -> Option<(&str, &str)> {
    if name.num_labels() != 5 {
        return None;
    }
    let mut labels = name.iter();
    let (service, namespace) = (labels.next()?, labels.next()?);
    if labels.next()? != b"svc" || labels.next()? != b"clusterset" || labels.next()? != b"local" {
        return None;
    }
    if !is_label(service) || !is_label(namespace) {
        return None;
    }
    Some((
        std::str::from_utf8(service).ok()?,
        std::str::from_utf8(namespace).ok()?,
    ))
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
    if let Some((service, namespace)) = lower_service_name(name) {
        return match table.get(namespace, service) {
            None => code(ResponseCode::NXDomain),
            Some(record) if kind == RecordType::A || kind == RecordType::ANY => {
                let a = Record::from_rdata(name.clone(), TTL, RData::A(A(record.address)));
                records(vec![a])
            }
            Some(_) => records(Vec::new()),
        };
    }
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

/// Why a forwarded question got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The system's random source failed (the query id is random).
    #[error("no randomness for the query id")]
    Random,
    /// The question could not be encoded.
    #[error("cannot encode the question: {0}")]
    Encode(String),
    /// A socket operation failed.
    #[error("asking {upstream}: {source}")]
    Io {
        /// The resolver asked.
        upstream: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// The resolver did not answer in time.
    #[error("{0} did not answer within {FORWARD_TIMEOUT:?}")]
    Timeout(SocketAddr),
}

/// Asks `upstream` the question `query` over UDP and returns its answer section and code.
pub async fn forward(upstream: SocketAddr, query: Query) -> Result<Answer, ForwardError> {
    use ring::rand::SecureRandom;
    let mut id = [0u8; 2];
    ring::rand::SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| ForwardError::Random)?;
    let id = u16::from_le_bytes(id);
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(query.clone());
    let bytes = message
        .to_vec()
        .map_err(|e| ForwardError::Encode(e.to_string()))?;
    let local: SocketAddr = match upstream {
        SocketAddr::V4(a) if a.ip().is_loopback() => SocketAddr::from(([127, 0, 0, 1], 0)),
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let io = |source| ForwardError::Io { upstream, source };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(upstream).await.map_err(io)?;
    socket.send(&bytes).await.map_err(io)?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| ForwardError::Timeout(upstream))?
            .map_err(io)?;
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

/// The server's answering logic over a [`DnsTable`], used by the UDP loop and, as a
/// hickory-server request handler, for TCP.
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

impl DnsHandler {
    /// The answer to `queries`, and whether it is this server's own (authoritative) or
    /// an upstream's.
    async fn resolve(&self, queries: &[Query]) -> (Answer, bool) {
        let local = self.local(queries);
        self.complete(queries, local).await
    }

    /// This server's own answer: from the table, REFUSED outside the zone, FORMERR for
    /// several questions in one message (nobody sends that).
    fn local(&self, queries: &[Query]) -> Answer {
        match queries {
            [query] => answer(&self.table, query.name(), query.query_type()),
            _ => Answer {
                code: ResponseCode::FormErr,
                records: Vec::new(),
            },
        }
    }

    /// Whether `local` (the answer to `queries`) is to be replaced by the upstream's.
    fn forwards(&self, local: &Answer) -> bool {
        self.upstream.is_some() && local.code == ResponseCode::Refused
    }

    /// `local`, or the upstream's answer when the question is forwarded.
    async fn complete(&self, queries: &[Query], local: Answer) -> (Answer, bool) {
        match (self.upstream, queries) {
            (Some(upstream), [query]) if self.forwards(&local) => {
                let forwarded = forward(upstream, query.clone()).await.unwrap_or_else(|e| {
                    tracing::warn!(%upstream, error = %e, "forwarding a DNS question failed");
                    Answer {
                        code: ResponseCode::ServFail,
                        records: Vec::new(),
                    }
                });
                (forwarded, false)
            }
            _ => (local, true),
        }
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
        let queries: Vec<Query> = request
            .queries
            .queries()
            .iter()
            .map(|q| q.original().clone())
            .collect();
        let (answer, own) = self.resolve(&queries).await;
        metadata.authoritative = own;
        metadata.recursion_available = !own;
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

/// The largest UDP answer this server sends (the DNS flag day 2020 size).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Encodes the answer to `request`: the question echoed, EDNS answered when asked, and
/// the answer section dropped with TC set when it would not fit the client's UDP size.
/// `own` marks the answer authoritative (a name of the zone) rather than recursed.
pub fn encode_reply(request: &Message, answer: Answer, own: bool) -> Option<Vec<u8>> {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.metadata.authoritative = own;
    response.metadata.recursion_available = !own;
    response.metadata.response_code = answer.code;
    response.queries = request.queries.clone();
    response.answers = answer.records;
    let limit = match &request.edns {
        Some(edns) => {
            let mut ours = Edns::new();
            ours.set_max_payload(MAX_UDP_PAYLOAD);
            response.edns = Some(ours);
            edns.max_payload().clamp(512, MAX_UDP_PAYLOAD)
        }
        None => 512,
    };
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= usize::from(limit) {
        return Some(bytes);
    }
    response.answers.clear();
    response.metadata.truncation = true;
    response.to_vec().ok()
}

/// FORMERR for a datagram whose header reads as a query but whose body does not parse;
/// `None` when not even the header does (such datagrams get no answer).
fn formerr(datagram: &[u8]) -> Option<[u8; 12]> {
    let header = datagram.get(..12)?;
    if header[2] & 0x80 != 0 {
        return None; // a response: never answer one
    }
    let mut reply = [0u8; 12];
    reply[..2].copy_from_slice(&header[..2]);
    reply[2] = 0x80 | (header[2] & 0x78); // QR, the opcode
    reply[3] = 0x01; // FORMERR
    Some(reply)
}

/// Answers UDP queries on `socket` until `stop`. hickory-proto parses and encodes;
/// answers from the table are sent from this loop, and forwarded questions from a task of
/// their own so that a slow upstream holds up nobody. (hickory-server's UDP loop spawns a
/// task and goes through a channel for every query, which halves the rate; see
/// `docs/benchmarks.md`. TCP stays with hickory-server.)
async fn serve_udp(
    socket: Arc<UdpSocket>,
    handler: Arc<DnsHandler>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = tokio::select! {
            () = stop.cancelled() => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(e) => {
                    // Not fatal (an ICMP error from an earlier send, for example), but a
                    // socket that keeps failing must not spin a core.
                    tracing::debug!(error = %e, "DNS UDP receive failed");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            },
        };
        let datagram = &buf[..n];
        let request = match Message::from_vec(datagram) {
            Ok(request) => request,
            Err(_) => {
                if let Some(reply) = formerr(datagram) {
                    let _ = socket.send_to(&reply, peer).await;
                }
                continue;
            }
        };
        if request.metadata.message_type != MessageType::Query {
            continue;
        }
        if request.metadata.op_code != OpCode::Query {
            let answer = Answer {
                code: ResponseCode::NotImp,
                records: Vec::new(),
            };
            if let Some(bytes) = encode_reply(&request, answer, true) {
                let _ = socket.send_to(&bytes, peer).await;
            }
            continue;
        }
        // The table is consulted once; only a forwarded question leaves this loop.
        let local = handler.local(&request.queries);
        if handler.forwards(&local) {
            let (socket, handler) = (socket.clone(), handler.clone());
            tokio::spawn(async move {
                let (answer, own) = handler.complete(&request.queries, local).await;
                if let Some(bytes) = encode_reply(&request, answer, own) {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            });
            continue;
        }
        if let Some(bytes) = encode_reply(&request, local, true) {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}

/// Binds `sockets` UDP sockets to `addr` with `SO_REUSEPORT` (the kernel spreads
/// clients over them); port 0 picks one port for all. hickory-server reads each socket
/// in one task, so one socket would answer on one core only.
pub fn bind_udp(addr: SocketAddr, sockets: usize) -> std::io::Result<Vec<UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut addr = addr;
    let mut out = Vec::with_capacity(sockets.max(1));
    for _ in 0..sockets.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        let socket: std::net::UdpSocket = socket.into();
        addr = socket.local_addr()?;
        out.push(UdpSocket::from_std(socket)?);
    }
    Ok(out)
}

/// A running DNS server.
pub struct DnsServer {
    server: Server<DnsHandler>,
    udp: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio_util::sync::CancellationToken,
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
        Self::start_many(table, vec![udp], tcp, upstream)
    }

    /// As [`Self::start`], with several UDP sockets on one port (see [`bind_udp`]): each
    /// has its own receive loop, so that queries are answered on every core.
    pub fn start_many(
        table: Arc<DnsTable>,
        udp: Vec<UdpSocket>,
        tcp: TcpListener,
        upstream: Option<SocketAddr>,
    ) -> Self {
        let handler = DnsHandler::new(table, upstream);
        let stop = tokio_util::sync::CancellationToken::new();
        let shared = Arc::new(handler.clone());
        let udp = udp
            .into_iter()
            .map(|socket| tokio::spawn(serve_udp(Arc::new(socket), shared.clone(), stop.clone())))
            .collect();
        let mut server = Server::new(handler);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        Self { server, udp, stop }
    }

    /// Stops serving.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for task in self.udp {
            let _ = task.await;
        }
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
