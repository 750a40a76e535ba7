//! The peer: a 3-member etcd (Debian's `etcd-server`) on loopback, fsync on (etcd's
//! default), driven over its v3 gRPC API with the same closed-loop clients.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use tonic::transport::Channel;

use super::systems::{Cluster, Ops, Proc, free_port, wait_until};

#[allow(clippy::all, missing_docs, unreachable_pub)]
mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;

struct Member {
    name: String,
    client: String,
    peer: String,
    data: PathBuf,
}

/// Certificates for etcd members (`etcd-N.cert.pem`/`.key.pem`, `bundle.pem` in `dir`)
/// and the client config the benchmark uses against them.
pub(crate) struct EtcdTls {
    pub(crate) dir: PathBuf,
    pub(crate) client: std::sync::Arc<rustls::ClientConfig>,
}

/// Three etcd processes.
pub(crate) struct Etcd {
    tls: Option<EtcdTls>,
    binary: String,
    members: Vec<Member>,
    initial_cluster: String,
    procs: Vec<Option<Proc>>,
    channels: Vec<Vec<Channel>>,
}

/// Clients of one etcd member.
#[derive(Clone)]
pub(crate) struct EtcdClients(Vec<KvClient<Channel>>);

/// A value about the size of an Isthmus cluster record.
const VALUE: &[u8] =
    br#"{"name":"bench","gateways":[{"name":"ew","address":"127.0.0.1:15443"}],"state":"active"}"#;

impl Ops for EtcdClients {
    async fn write(&self, conn: usize, key: String) -> Result<(), String> {
        let mut client = self.0[conn % self.0.len()].clone();
        let request = pb::PutRequest {
            key: key.into_bytes(),
            value: VALUE.to_vec(),
            lease: 0,
        };
        client
            .put(request)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn read(&self, conn: usize, key: String) -> Result<(), String> {
        let mut client = self.0[conn % self.0.len()].clone();
        let request = pb::RangeRequest {
            key: key.into_bytes(),
            serializable: false,
            ..Default::default()
        };
        let reply = client
            .range(request)
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        if reply.kvs.is_empty() {
            Err("key not found".into())
        } else {
            Ok(())
        }
    }
}

/// The peer URL others dial: with TLS, `localhost` (the name the certificates carry)
/// instead of the loopback address etcd listens on.
fn advertised_peer(listen: &str) -> String {
    listen.replace("https://127.0.0.1", "https://localhost")
}

impl Etcd {
    /// Starts three members in `dir` and waits until they serve.
    pub(crate) async fn start(
        binary: &str,
        dir: &Path,
        connections: usize,
        tls: Option<EtcdTls>,
    ) -> anyhow::Result<Self> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut members = Vec::new();
        for i in 1..=3 {
            members.push(Member {
                name: format!("etcd-{i}"),
                client: format!("{scheme}://{}", free_port()?),
                peer: format!("{scheme}://{}", free_port()?),
                data: dir.join(format!("etcd-{i}")),
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, advertised_peer(&m.peer)))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Self {
            tls,
            binary: binary.to_owned(),
            members,
            initial_cluster,
            procs: vec![None, None, None],
            channels: Vec::new(),
        };
        for i in 0..3 {
            etcd.spawn(i, "new")?;
        }
        for m in &etcd.members {
            let mut channels = Vec::new();
            for _ in 0..connections {
                let channel = match &etcd.tls {
                    Some(tls) => {
                        let addr = m.client.trim_start_matches("https://");
                        isthmus_federation_api::channel::channel(addr, tls.client.clone(), None)?
                    }
                    None => Channel::from_shared(m.client.clone())?.connect_lazy(),
                };
                channels.push(channel);
            }
            etcd.channels.push(channels);
        }
        etcd.wait_serving().await?;
        Ok(etcd)
    }

    fn spawn(&mut self, i: usize, state: &str) -> anyhow::Result<()> {
        let m = &self.members[i];
        let mut command = Command::new(&self.binary);
        command
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data)
            .args([
                "--listen-client-urls",
                &m.client,
                "--advertise-client-urls",
                &m.client,
            ])
            .args([
                "--listen-peer-urls",
                &m.peer,
                "--initial-advertise-peer-urls",
                &advertised_peer(&m.peer),
            ])
            .args(["--initial-cluster", &self.initial_cluster])
            .args([
                "--initial-cluster-state",
                state,
                "--initial-cluster-token",
                "isthmus-bench",
            ])
            .args(["--log-level", "error"]);
        if let Some(tls) = &self.tls {
            let file = |name: String| tls.dir.join(name);
            let (cert, key) = (
                file(format!("etcd-{}.cert.pem", i + 1)),
                file(format!("etcd-{}.key.pem", i + 1)),
            );
            let ca = file("bundle.pem".into());
            for (flag, path) in [
                ("--cert-file", &cert),
                ("--key-file", &key),
                ("--trusted-ca-file", &ca),
                ("--peer-cert-file", &cert),
                ("--peer-key-file", &key),
                ("--peer-trusted-ca-file", &ca),
            ] {
                command.arg(flag).arg(path);
            }
            command.args(["--client-cert-auth", "--peer-client-cert-auth"]);
        }
        self.procs[i] = Some(Proc::spawn(&mut command).with_context(|| {
            format!(
                "{} not found or not startable: install Debian's etcd-server",
                self.binary
            )
        })?);
        Ok(())
    }

    async fn wait_serving(&self) -> anyhow::Result<()> {
        for i in 0..3 {
            if self.procs[i].is_none() {
                continue;
            }
            let clients = self.clients(i);
            wait_until("etcd to serve", Duration::from_secs(30), || {
                let clients = clients.clone();
                async move {
                    clients
                        .write(0, "/bench/ready".into())
                        .await
                        .map_err(anyhow::Error::msg)
                }
            })
            .await?;
        }
        Ok(())
    }
}

impl Cluster for Etcd {
    type Clients = EtcdClients;

    fn clients(&self, node: usize) -> EtcdClients {
        EtcdClients(
            self.channels[node]
                .iter()
                .cloned()
                .map(KvClient::new)
                .collect(),
        )
    }

    async fn leader(&self) -> anyhow::Result<usize> {
        wait_until("an etcd leader", Duration::from_secs(30), || async {
            for (i, channels) in self.channels.iter().enumerate() {
                if self.procs[i].is_none() {
                    continue;
                }
                let mut client = MaintenanceClient::new(channels[0].clone());
                if let Ok(status) = client.status(pb::StatusRequest {}).await {
                    let status = status.into_inner();
                    let me = status.header.map_or(0, |h| h.member_id);
                    if status.leader != 0 && status.leader == me {
                        return Ok(i);
                    }
                }
            }
            anyhow::bail!("no member says it leads")
        })
        .await
    }

    fn kill(&mut self, node: usize) {
        if let Some(mut proc) = self.procs[node].take() {
            proc.kill();
        }
    }

    async fn restart(&mut self, node: usize) -> anyhow::Result<()> {
        self.spawn(node, "existing")?;
        self.wait_serving().await
    }
}
