//! `isthmus federation`: run a node (`serve`), bootstrap (`init`), change membership
//! (`member add|remove|list`) and report (`status`). The admin commands are gRPC
//! clients of a node's admin API over mutual TLS.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use isthmus_federation::config::{FederationConfig, FederationConfigFile};
use isthmus_federation::node::{NodeOptions, start};
use isthmus_federation_api::client::{ClientTls, FederationClient, bundle_from_pem};
use isthmus_federation_api::model::{ClusterState, Expect, Policy};
use isthmus_federation_api::request::{
    AddMember, CreateCluster, DeleteClaim, DeletePolicy, PutClaim, PutPolicy, RevokeCluster,
};
use isthmus_federation_api::status::{Consistency, NodeInfo, StatusReport};

#[derive(Debug, Subcommand)]
pub(crate) enum FederationCommand {
    /// Run a federation node from a config file; see `isthmus config schema federation`.
    Serve {
        /// The node's config file (.toml or .json).
        #[arg(long)]
        config: PathBuf,
    },
    /// Bootstrap a new federation with the node at `--server` as its only voter.
    Init(#[command(flatten)] Connect),
    /// Change or list the federation's members.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Register, list and revoke member clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Put, list, show and delete authorization policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Mint admin API bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Claim hosts for namespaces (traffic claims), list and give them up.
    #[command(subcommand)]
    Claim(ClaimCommand),
    /// Register workloads: who gets which identity from a cluster gateway's SPIFFE
    /// Workload API.
    #[command(subcommand)]
    Registration(RegistrationCommand),
    /// Leader, term, members, applied index and each member's lag.
    Status {
        #[command(flatten)]
        connect: Connect,
        /// Report this node's own view instead of the leader's.
        #[arg(long)]
        stale: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Register a cluster and print a one-time join token for its first gateway
    /// (`[federation] join_token_file` in the gateway's config).
    Create {
        #[command(flatten)]
        connect: Connect,
        /// The cluster's name (a DNS-1123 label).
        name: String,
        /// Where it runs: `region` or `region/zone`.
        #[arg(long)]
        locality: Option<String>,
        /// How long the token works, for example 10m [default: the node's
        /// enrollment.token_lifetime, 15m].
        #[arg(long)]
        ttl: Option<isthmus_config::HumanDuration>,
    },
    /// Cut a cluster off: every gateway refuses its gateways once it sees the change.
    Revoke {
        #[command(flatten)]
        connect: Connect,
        /// The cluster.
        name: String,
    },
    /// List clusters with their state, locality and gateways.
    List {
        #[command(flatten)]
        connect: Connect,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RegistrationCommand {
    /// Create or replace a registration: callers of the cluster's Workload API matching
    /// every selector given (at least one) get ns/NAMESPACE/sa/SERVICE_ACCOUNT.
    Put {
        #[command(flatten)]
        connect: Connect,
        /// The registration's name (a DNS-1123 label, unique).
        name: String,
        /// The cluster whose gateway serves the identity.
        #[arg(long)]
        cluster: String,
        /// The workload's namespace.
        #[arg(long)]
        namespace: String,
        /// Its service account.
        #[arg(long)]
        service_account: String,
        /// Selector: the caller's user id.
        #[arg(long)]
        uid: Option<u32>,
        /// Selector: the caller's group id.
        #[arg(long)]
        gid: Option<u32>,
        /// Selector: the caller's executable (absolute path).
        #[arg(long)]
        path: Option<String>,
    },
    /// List registrations.
    List {
        #[command(flatten)]
        connect: Connect,
    },
    /// Delete a registration.
    Delete {
        #[command(flatten)]
        connect: Connect,
        /// Its name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClaimCommand {
    /// Claim a host (or `*.domain`) for a namespace; refused if another namespace holds
    /// an overlapping claim.
    Put {
        #[command(flatten)]
        connect: Connect,
        /// The host.
        host: String,
        /// The namespace that owns it.
        #[arg(long)]
        namespace: String,
    },
    /// List claims.
    List {
        #[command(flatten)]
        connect: Connect,
    },
    /// Give up a claim.
    Delete {
        #[command(flatten)]
        connect: Connect,
        /// The host as claimed.
        host: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a new random bearer token, and (on stderr) the `[[admin.tokens]]` entry that
    /// grants it a role: add the entry to every node's config. Only the hash is stored.
    Create {
        /// A name for logs (DNS-1123 label).
        name: String,
        /// platform-admin, namespace-admin or reader.
        #[arg(long)]
        role: String,
        /// For namespace-admin: a namespace it administers (repeat for several).
        #[arg(long = "namespace")]
        namespaces: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Create or replace a policy from a JSON file (docs/federation.md#authorization-policy).
    Put {
        #[command(flatten)]
        connect: Connect,
        /// The policy's name (a DNS-1123 label).
        name: String,
        /// The policy document (JSON).
        #[arg(long)]
        file: PathBuf,
        /// Compare-and-set: 0 = must not exist yet; N = must be at revision N.
        #[arg(long)]
        expect_revision: Option<u64>,
    },
    /// List policies with their revision and rule count.
    List {
        #[command(flatten)]
        connect: Connect,
    },
    /// Print one policy's document.
    Get {
        #[command(flatten)]
        connect: Connect,
        /// The policy.
        name: String,
    },
    /// Delete a policy.
    Delete {
        #[command(flatten)]
        connect: Connect,
        /// The policy.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MemberCommand {
    /// Add a node: it joins as a learner, catches up, then becomes a voter.
    Add {
        #[command(flatten)]
        connect: Connect,
        /// The new node's Raft id (its config's `node_id`).
        #[arg(long)]
        id: u64,
        /// Its name (its config's `name`).
        #[arg(long)]
        name: String,
        /// host:port of its Raft listener.
        #[arg(long)]
        raft_addr: String,
        /// host:port of its admin gRPC listener.
        #[arg(long)]
        admin_addr: String,
        /// host:port of its admin REST listener.
        #[arg(long)]
        rest_addr: String,
        /// host:port of its enrollment listener, if it has one (`listen.enroll`).
        #[arg(long)]
        enroll_addr: Option<String>,
    },
    /// Remove a node from the federation.
    Remove {
        #[command(flatten)]
        connect: Connect,
        /// Its Raft id.
        #[arg(long)]
        id: u64,
    },
    /// List the members with their lag.
    List {
        #[command(flatten)]
        connect: Connect,
    },
}

/// How an admin command reaches a node.
#[derive(Debug, Args)]
pub(crate) struct Connect {
    /// A node's config file: use its admin address and its own certificate.
    #[arg(long, conflicts_with_all = ["server", "cert", "key", "bundle"])]
    config: Option<PathBuf>,
    /// host:port of a node's admin gRPC listener.
    #[arg(long, env = "ISTHMUS_FEDERATION", required_unless_present = "config")]
    server: Option<String>,
    /// Trust bundle (PEM roots).
    #[arg(long, env = "ISTHMUS_BUNDLE", required_unless_present = "config")]
    bundle: Option<PathBuf>,
    /// Client certificate (an admin identity or a federation node).
    #[arg(long, env = "ISTHMUS_CERT", required_unless_present_any = ["config", "token"], requires = "key")]
    cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, env = "ISTHMUS_KEY", required_unless_present_any = ["config", "token"], requires = "cert")]
    key: Option<PathBuf>,
    /// A bearer token instead of a client certificate (`isthmus federation token
    /// create`); with --config, it is sent besides the node's certificate and decides.
    #[arg(long, env = "ISTHMUS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Connect {
    /// A client of the node this command names, with its certificate or token.
    fn client(&self) -> anyhow::Result<FederationClient> {
        let (server, bundle, cert) = match &self.config {
            Some(path) => {
                let config = isthmus_config::load::<FederationConfigFile>(path)?;
                let base = path.parent().unwrap_or(Path::new("."));
                let admin = config.advertise.map_or(config.listen.admin, |a| a.admin);
                (
                    admin.to_string(),
                    base.join(&config.tls.bundle),
                    Some((base.join(&config.tls.cert), base.join(&config.tls.key))),
                )
            }
            None => (
                self.server.clone().context("--server is required")?,
                self.bundle.clone().context("--bundle is required")?,
                self.cert.clone().zip(self.key.clone()),
            ),
        };
        let tls = match cert {
            Some((cert, key)) => {
                ClientTls::from_files((&bundle, "--bundle"), (&cert, "--cert"), (&key, "--key"))?
            }
            None => {
                let pem = std::fs::read_to_string(&bundle)
                    .with_context(|| format!("--bundle {}", bundle.display()))?;
                ClientTls::anonymous(bundle_from_pem(&pem, &bundle).context(
                    "--bundle: use --cert and --key, or a bundle whose roots name the trust domain",
                )?)?
            }
        };
        let mut client = FederationClient::new([server.as_str()], tls)
            .with_context(|| format!("--server {server}"))?
            .with_timeout(Duration::from_secs(90));
        if let Some(token) = &self.token {
            client = client.with_token(token).context("--token")?;
        }
        Ok(client)
    }
}

pub(crate) fn run(command: FederationCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match command {
            FederationCommand::Serve { config } => serve(&config).await,
            FederationCommand::Init(connect) => {
                let status = connect.client()?.init().await?;
                print_status(&status);
                Ok(ExitCode::SUCCESS)
            }
            FederationCommand::Status {
                connect,
                stale,
                json,
            } => {
                let consistency = if stale {
                    Consistency::Stale
                } else {
                    Consistency::Linearizable
                };
                let status = connect.client()?.status(consistency).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&status_json(&status))?);
                } else {
                    print_status(&status);
                }
                Ok(ExitCode::SUCCESS)
            }
            FederationCommand::Member(member) => run_member(member).await,
            FederationCommand::Cluster(cluster) => run_cluster(cluster).await,
            FederationCommand::Policy(policy) => run_policy(policy).await,
            FederationCommand::Claim(claim) => run_claim(claim).await,
            FederationCommand::Registration(r) => run_registration(r).await,
            FederationCommand::Token(TokenCommand::Create {
                name,
                role,
                namespaces,
            }) => create_token(&name, &role, &namespaces),
        }
    })
}

async fn run_member(command: MemberCommand) -> anyhow::Result<ExitCode> {
    let status = match command {
        MemberCommand::Add {
            connect,
            id,
            name,
            raft_addr,
            admin_addr,
            rest_addr,
            enroll_addr,
        } => {
            let request = AddMember {
                node_id: id,
                info: NodeInfo {
                    name,
                    raft_addr,
                    admin_addr,
                    rest_addr,
                    enroll_addr,
                },
            };
            connect.client()?.add_member(request).await?
        }
        MemberCommand::Remove { connect, id } => connect.client()?.remove_member(id).await?,
        MemberCommand::List { connect } => {
            connect.client()?.status(Consistency::Linearizable).await?
        }
    };
    print_members(&status);
    Ok(ExitCode::SUCCESS)
}

async fn run_cluster(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClusterCommand::Create {
            connect,
            name,
            locality,
            ttl,
        } => {
            let request = CreateCluster {
                name: name.clone(),
                locality,
                ttl: ttl.map(|t| t.0.max(Duration::from_secs(1))),
            };
            let reply = connect.client()?.create_cluster(request).await?;
            let expires = time::OffsetDateTime::from_unix_timestamp(
                i64::try_from(reply.expires_at).unwrap_or(i64::MAX),
            )
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| reply.expires_at.to_string());
            eprintln!(
                "cluster {name} registered (pending); this token works once, until {expires}:"
            );
            println!("{}", reply.token);
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Revoke { connect, name } => {
            let request = RevokeCluster { name: name.clone() };
            let reply = connect.client()?.revoke_cluster(request).await?;
            println!(
                "cluster {name} revoked at revision {}; gateways refuse it as soon as they see that revision",
                reply.revision
            );
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::List { connect } => {
            let list = connect
                .client()?
                .clusters(Consistency::Linearizable)
                .await?;
            println!("{:<20} {:<8} {:<14} GATEWAYS", "NAME", "STATE", "LOCALITY");
            for c in &list.items {
                let state = match c.state {
                    ClusterState::Active => "active",
                    ClusterState::Pending => "pending",
                    ClusterState::Revoked => "revoked",
                };
                let gateways: Vec<String> = c
                    .gateways
                    .iter()
                    .map(|g| format!("{}={}", g.name, g.address))
                    .collect();
                println!(
                    "{:<20} {:<8} {:<14} {}",
                    c.name,
                    state,
                    c.locality.as_deref().unwrap_or("-"),
                    gateways.join(",")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run_claim(command: ClaimCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClaimCommand::Put {
            connect,
            host,
            namespace,
        } => {
            let request = PutClaim {
                claim: isthmus_federation_api::claims::Claim {
                    host: host.clone(),
                    namespace: namespace.clone(),
                    revision: 0,
                },
                expect: Expect::Any,
            };
            let reply = connect.client()?.put_claim(request).await?;
            println!(
                "{host} claimed for namespace {namespace} at revision {}",
                reply.revision
            );
        }
        ClaimCommand::List { connect } => {
            let list = connect.client()?.claims(Consistency::Linearizable).await?;
            println!("{:<40} {:<20} REVISION", "HOST", "NAMESPACE");
            for c in &list.items {
                println!("{:<40} {:<20} {}", c.host, c.namespace, c.revision);
            }
        }
        ClaimCommand::Delete { connect, host } => {
            let request = DeleteClaim {
                host: host.clone(),
                expect: Expect::Any,
            };
            let reply = connect.client()?.delete_claim(request).await?;
            println!("claim of {host} given up at revision {}", reply.revision);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_registration(command: RegistrationCommand) -> anyhow::Result<ExitCode> {
    use isthmus_federation_api::request::{DeleteRegistration, PutRegistration};
    match command {
        RegistrationCommand::Put {
            connect,
            name,
            cluster,
            namespace,
            service_account,
            uid,
            gid,
            path,
        } => {
            let request = PutRegistration {
                registration: isthmus_federation_api::registration::Registration {
                    name: name.clone(),
                    cluster,
                    namespace,
                    service_account,
                    uid,
                    gid,
                    path,
                    revision: 0,
                },
                expect: Expect::Any,
            };
            let reply = connect.client()?.put_registration(request).await?;
            println!("registration {name} written at revision {}", reply.revision);
        }
        RegistrationCommand::List { connect } => {
            let list = connect
                .client()?
                .registrations(Consistency::Linearizable)
                .await?;
            println!(
                "{:<24} {:<16} {:<32} SELECTORS",
                "NAME", "CLUSTER", "IDENTITY"
            );
            for r in &list.items {
                let mut selectors = Vec::new();
                if let Some(uid) = r.uid {
                    selectors.push(format!("uid={uid}"));
                }
                if let Some(gid) = r.gid {
                    selectors.push(format!("gid={gid}"));
                }
                if let Some(path) = &r.path {
                    selectors.push(format!("path={path}"));
                }
                println!(
                    "{:<24} {:<16} {:<32} {}",
                    r.name,
                    r.cluster,
                    format!("ns/{}/sa/{}", r.namespace, r.service_account),
                    selectors.join(",")
                );
            }
        }
        RegistrationCommand::Delete { connect, name } => {
            let request = DeleteRegistration {
                name: name.clone(),
                expect: Expect::Any,
            };
            let reply = connect.client()?.delete_registration(request).await?;
            println!("registration {name} deleted at revision {}", reply.revision);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn create_token(name: &str, role: &str, namespaces: &[String]) -> anyhow::Result<ExitCode> {
    use isthmus_federation::access::RoleName;
    let parsed: RoleName = serde_json::from_value(serde_json::Value::String(role.to_owned()))
        .map_err(|_| {
            anyhow::anyhow!(
                "--role {role:?}: one of platform-admin, namespace-admin, reader (gateways use their certificates)"
            )
        })?;
    isthmus_federation_api::validate::name("name", name).map_err(|e| anyhow::anyhow!("{e}"))?;
    match (parsed, namespaces.is_empty()) {
        (RoleName::NamespaceAdmin, true) => {
            anyhow::bail!("--role namespace-admin needs at least one --namespace")
        }
        (RoleName::PlatformAdmin | RoleName::Reader, false) => {
            anyhow::bail!("--namespace is only for --role namespace-admin")
        }
        _ => {}
    }
    let (token, sha256) =
        isthmus_federation::access::mint_token().map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("# add to every federation node's config, then restart it:");
    eprintln!("[[admin.tokens]]");
    eprintln!("name = {name:?}");
    eprintln!("sha256 = \"{sha256}\"");
    eprintln!("role = \"{role}\"");
    if !namespaces.is_empty() {
        eprintln!("namespaces = {namespaces:?}");
    }
    eprintln!("# the token (shown once; send it as `authorization: Bearer <token>` or --token):");
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

async fn run_policy(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Put {
            connect,
            name,
            file,
            expect_revision,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            // Checked here first, so that a mistake is named before anything is sent.
            let body = isthmus_federation_api::policy::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let request = PutPolicy {
                policy: Policy {
                    name: name.clone(),
                    body,
                    revision: 0,
                },
                expect: Expect::from_api(expect_revision),
            };
            let reply = connect.client()?.put_policy(request).await?;
            println!("policy {name} written at revision {}", reply.revision);
        }
        PolicyCommand::List { connect } => {
            let list = connect
                .client()?
                .policies(Consistency::Linearizable)
                .await?;
            println!(
                "{:<24} {:>9} {:>6} {:>7}",
                "NAME", "REVISION", "RULES", "LIMITS"
            );
            for p in &list.items {
                println!(
                    "{:<24} {:>9} {:>6} {:>7}",
                    p.name,
                    p.revision,
                    p.body.rules.len(),
                    p.body.rate_limits.len()
                );
            }
        }
        PolicyCommand::Get { connect, name } => {
            let policy = connect
                .client()?
                .policy(&name, Consistency::Linearizable)
                .await?;
            println!("{}", serde_json::to_string_pretty(&policy.body)?);
        }
        PolicyCommand::Delete { connect, name } => {
            let request = DeletePolicy {
                name: name.clone(),
                expect: Expect::Any,
            };
            let reply = connect.client()?.delete_policy(request).await?;
            println!("policy {name} deleted at revision {}", reply.revision);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let config: FederationConfig = isthmus_config::load::<FederationConfigFile>(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let node = start(&config, base, NodeOptions::default())
        .await
        .with_context(|| path.display().to_string())?;
    println!("  node     {} ({})", node.id, node.info.name);
    println!("  raft     {}", node.listen.raft);
    println!("  admin    {}", node.listen.admin);
    println!("  rest     https://{}/v1/status", node.listen.rest);
    if let Some(addr) = node.listen.metrics {
        println!("  metrics  http://{addr}/metrics");
    }
    println!("isthmus federation node {} ready", node.info.name);
    let signal = super::gateway::shutdown_signal()?;
    tokio::select! {
        () = signal => {
            eprintln!("stopping");
            node.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        reason = node.raft_failed() => {
            // Fail-stop: what was acknowledged is on disk, and a restart replays it.
            eprintln!("error: Raft stopped on a fatal error ({reason}); exiting so that this node can be restarted on its data");
            node.shutdown().await;
            Ok(ExitCode::from(70))
        }
    }
}

fn print_status(status: &StatusReport) {
    println!(
        "node      {} ({}), {}",
        status.node_id, status.name, status.state
    );
    println!(
        "leader    {}",
        status
            .leader_id
            .map_or("unknown".to_owned(), |l| l.to_string())
    );
    println!("term      {}", status.term);
    println!(
        "applied   {} (last log {}), revision {}",
        status
            .applied_index
            .map_or("-".to_owned(), |i| i.to_string()),
        status
            .last_log_index
            .map_or("-".to_owned(), |i| i.to_string()),
        status.revision
    );
    print_members(status);
}

fn print_members(status: &StatusReport) {
    println!(
        "{:<6} {:<16} {:<8} {:<6} {:<22} {:<22}",
        "ID", "NAME", "ROLE", "LAG", "RAFT", "ADMIN"
    );
    for m in &status.members {
        println!(
            "{:<6} {:<16} {:<8} {:<6} {:<22} {:<22}",
            m.node_id,
            m.info.name,
            if m.voter { "voter" } else { "learner" },
            m.lag.map_or("?".to_owned(), |l| l.to_string()),
            m.info.raft_addr,
            m.info.admin_addr
        );
    }
}

fn status_json(status: &StatusReport) -> serde_json::Value {
    serde_json::json!({
        "node_id": status.node_id,
        "name": status.name,
        "state": status.state,
        "leader_id": status.leader_id,
        "term": status.term,
        "last_log_index": status.last_log_index,
        "applied_index": status.applied_index,
        "revision": status.revision,
        "initialized": status.initialized,
        "members": status.members.iter().map(|m| serde_json::json!({
            "node_id": m.node_id, "name": m.info.name, "voter": m.voter, "lag": m.lag,
            "raft_addr": m.info.raft_addr, "admin_addr": m.info.admin_addr, "rest_addr": m.info.rest_addr,
        })).collect::<Vec<_>>(),
    })
}
