//! The run's load: clients over gRPC (the typed client) and REST (HTTP/1.1 over mutual
//! TLS, by hand, as an outside tool would call it), each bound to one node, each making
//! one call at a time and recording it; and watchers that follow the catalog and resume
//! on the next node whenever their stream ends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use isthmus_federation_api::ApiError;
use isthmus_federation_api::client::{ClientError, FederationClient};
use isthmus_federation_api::model::{Cluster, Expect, GatewayEndpoint};
use isthmus_federation_api::request::{DeleteCluster, PutCluster};
use isthmus_federation_api::status::Consistency;
use isthmus_federation_api::watch::WatchMessage;
use rustls_pki_types::ServerName;
use tokio::time::Instant;

use super::history::{Call, Face, Key, Operation, Outcome, Seen};
use super::reference::{Change, change_of, cluster_name, gateway_name, value_of};
use super::schedule::Rng;
use super::watch_rules::Delivery;

/// How long one call may take before it counts as unanswered.
pub const CALL_BOUND: Duration = Duration::from_secs(3);

/// The one gateway address every written cluster carries (only its name varies).
const GATEWAY_ADDRESS: &str = "127.0.0.1:15443";

/// One client's connection to its node.
pub enum Conn {
    /// Through the typed gRPC client.
    Grpc(FederationClient),
    /// REST by hand.
    Rest(Rest),
}

impl Conn {
    fn face(&self) -> Face {
        match self {
            Self::Grpc(_) => Face::Grpc,
            Self::Rest(_) => Face::Rest,
        }
    }

    /// Makes `call` on `key`, and says how it ended.
    pub async fn call(&mut self, key: Key, call: Call) -> Outcome {
        match tokio::time::timeout(CALL_BOUND, self.call_unbounded(key, call)).await {
            Ok(outcome) => outcome,
            Err(_) if call == Call::Get => Outcome::ReadFailed,
            Err(_) => Outcome::Unknown,
        }
    }

    async fn call_unbounded(&mut self, key: Key, call: Call) -> Outcome {
        match self {
            Self::Grpc(client) => grpc_call(client, key, call).await,
            Self::Rest(rest) => rest.call(key, call).await,
        }
    }
}

fn cluster(key: Key, value: u64) -> Cluster {
    Cluster {
        name: cluster_name(key),
        gateways: vec![GatewayEndpoint {
            name: gateway_name(value),
            address: GATEWAY_ADDRESS.to_owned(),
        }],
        intermediate_pem: None,
        state: Default::default(),
        locality: None,
        join: None,
        revision: 0,
    }
}

fn seen(cluster: &Cluster) -> Option<Seen> {
    let value = value_of(&cluster.gateways.first()?.name).ok()?;
    Some(Seen {
        value,
        revision: cluster.revision,
    })
}

async fn grpc_call(client: &FederationClient, key: Key, call: Call) -> Outcome {
    let not_found = |e: &ClientError| matches!(e, ClientError::Api(ApiError::NotFound(_)));
    match call {
        Call::Put { value } => {
            let request = PutCluster {
                cluster: cluster(key, value),
                expect: Expect::Any,
            };
            match client.put_cluster(request).await {
                Ok(w) => Outcome::Written {
                    revision: w.revision,
                },
                Err(_) => Outcome::Unknown,
            }
        }
        Call::Delete => {
            let request = DeleteCluster {
                name: cluster_name(key),
                expect: Expect::Any,
            };
            match client.delete_cluster(request).await {
                Ok(w) => Outcome::Deleted {
                    revision: w.revision,
                },
                Err(e) if not_found(&e) => Outcome::NotFound,
                Err(_) => Outcome::Unknown,
            }
        }
        Call::Get => match client
            .cluster(&cluster_name(key), Consistency::Linearizable)
            .await
        {
            Ok(c) => match seen(&c) {
                Some(s) => Outcome::Read(Some(s)),
                None => Outcome::ReadFailed,
            },
            Err(e) if not_found(&e) => Outcome::Read(None),
            Err(_) => Outcome::ReadFailed,
        },
    }
}

/// A REST client of one node: one kept-alive HTTP/1.1 connection, made again after any
/// failure.
pub struct Rest {
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Rest {
    /// A client of the REST API at `addr`, with `tls` (ALPN `http/1.1`).
    pub fn new(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            addr,
            tls: tokio_rustls::TlsConnector::from(tls),
            sender: None,
        }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let tcp = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| e.to_string())?;
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| "no connection".to_owned())
    }

    /// One request: the status and body, or why there was none.
    async fn request(
        &mut self,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), String> {
        let sender = self.connect().await?;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, body))
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn call(&mut self, key: Key, call: Call) -> Outcome {
        let path = format!("/v1/clusters/{}", cluster_name(key));
        match call {
            Call::Put { value } => {
                let body = serde_json::json!({
                    "gateways": [{ "name": gateway_name(value), "address": GATEWAY_ADDRESS }]
                });
                match self
                    .request(
                        hyper::Method::PUT,
                        &path,
                        Some(body.to_string().into_bytes()),
                    )
                    .await
                {
                    Ok((200, body)) => match revision(&body) {
                        Some(revision) => Outcome::Written { revision },
                        None => Outcome::Unknown,
                    },
                    _ => Outcome::Unknown,
                }
            }
            Call::Delete => match self.request(hyper::Method::DELETE, &path, None).await {
                Ok((200, body)) => match revision(&body) {
                    Some(revision) => Outcome::Deleted { revision },
                    None => Outcome::Unknown,
                },
                Ok((404, _)) => Outcome::NotFound,
                _ => Outcome::Unknown,
            },
            Call::Get => {
                let path = format!("{path}?consistency=linearizable");
                match self.request(hyper::Method::GET, &path, None).await {
                    Ok((200, body)) => match serde_json::from_slice::<Cluster>(&body) {
                        Ok(c) => seen(&c).map_or(Outcome::ReadFailed, |s| Outcome::Read(Some(s))),
                        Err(_) => Outcome::ReadFailed,
                    },
                    Ok((404, _)) => Outcome::Read(None),
                    _ => Outcome::ReadFailed,
                }
            }
        }
    }
}

fn revision(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("revision")?
        .as_u64()
}

/// What one client does: until `until`, calls drawn from its own generator on keys
/// `1..=keys` (half reads, two fifths puts, the rest deletes); values are
/// `client * 10^9 + n`, unique in the run.
pub async fn client(
    id: usize,
    node: usize,
    mut conn: Conn,
    keys: Key,
    seed: u64,
    start: Instant,
    until: Instant,
) -> Vec<Operation> {
    let mut rng = Rng::new(seed ^ (id as u64).wrapping_mul(0x9e37));
    let mut history = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        let key = 1 + rng.below(u64::from(keys)) as Key;
        let call = match rng.below(10) {
            0..=4 => Call::Get,
            5..=8 => {
                n += 1;
                Call::Put {
                    value: id as u64 * 1_000_000_000 + n,
                }
            }
            _ => Call::Delete,
        };
        let invoked = start.elapsed();
        let outcome = conn.call(key, call).await;
        let completed = (outcome != Outcome::Unknown).then(|| start.elapsed());
        history.push(Operation {
            client: id,
            node,
            face: conn.face(),
            key,
            call,
            outcome,
            invoked,
            completed,
        });
        if matches!(outcome, Outcome::Unknown | Outcome::ReadFailed) {
            // A node that is down answers at once; do not spin on it.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    history
}

/// A watcher's record, shared with the run while it goes on.
pub type Deliveries = Arc<Mutex<Vec<Delivery>>>;

fn record(deliveries: &Deliveries, delivery: Delivery) {
    deliveries
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(delivery);
}

/// Follows the catalog from revision 0, starting on node `first` of `clients`, moving
/// to the next node whenever the stream ends, until `stop` is set.
pub async fn watcher(
    clients: Vec<FederationClient>,
    first: usize,
    deliveries: Deliveries,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    let mut node = first;
    let mut after = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let stream = clients[node % clients.len()].watch(after).await;
        let Ok(mut stream) = stream else {
            node += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        record(&deliveries, Delivery::Opened { after });
        let mut assembler = Assembler::default();
        let ended = loop {
            let message = tokio::select! {
                m = stream.message() => m,
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    continue;
                }
            };
            match message {
                None => break "the node ended the stream".to_owned(),
                Some(Err(e)) => break e.to_string(),
                Some(Ok(watched)) => {
                    for delivery in assembler.take(watched.message) {
                        if let Delivery::Changes { revision, .. }
                        | Delivery::Snapshot { revision, .. } = &delivery
                        {
                            after = *revision;
                        }
                        record(&deliveries, delivery);
                    }
                }
            }
        };
        record(&deliveries, Delivery::Ended(ended));
        node += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Turns watch messages into deliveries: a revision's changes at once, a full state
/// once its last part has come.
#[derive(Debug, Default)]
pub struct Assembler {
    parts: BTreeMap<Key, u64>,
}

impl Assembler {
    /// The deliveries `message` completes (none for a full state's inner part).
    pub fn take(&mut self, message: WatchMessage) -> Vec<Delivery> {
        match message {
            WatchMessage::Changes(changes) => {
                let read: Result<Vec<Change>, String> =
                    changes.events.iter().map(change_of).collect();
                vec![match read {
                    Ok(list) => Delivery::Changes {
                        revision: changes.revision,
                        changes: list,
                    },
                    Err(what) => Delivery::Unreadable(what),
                }]
            }
            WatchMessage::Snapshot {
                revision,
                events,
                done,
            } => {
                let mut out = Vec::new();
                for event in &events {
                    match change_of(event) {
                        Ok((key, Some(value))) => {
                            self.parts.insert(key, value);
                        }
                        Ok((key, None)) => out.push(Delivery::Unreadable(format!(
                            "a delete of k{key} in a full state"
                        ))),
                        Err(what) => out.push(Delivery::Unreadable(what)),
                    }
                }
                if done {
                    out.push(Delivery::Snapshot {
                        revision,
                        state: std::mem::take(&mut self.parts),
                    });
                }
                out
            }
        }
    }
}
