//! `isthmus federation`: run a node (`serve`), bootstrap (`init`), change membership
//! (`member add|remove|list`) and report (`status`). The admin commands are gRPC
//! clients of a node's admin API over mutual TLS.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::verify::tls::{SpiffeVerifier, client_config};
use isthmus_ca::{SharedBundle, Svid, SvidFiles};
use isthmus_federation::config::{FederationConfig, FederationConfigFile};
use isthmus_federation::node::{NodeOptions, start};
use isthmus_federation::proto;
use isthmus_federation::proto::federation_admin_client::FederationAdminClient;
use tonic::transport::Channel;

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

/// Adds `authorization: Bearer <token>` to every call when a token is given.
#[derive(Debug, Clone)]
pub(crate) struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type AdminClient =
    FederationAdminClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

/// The trust domain a bundle file's roots name (their `spiffe://TD` URI SAN).
fn bundle_trust_domain(pem: &str, path: &Path) -> anyhow::Result<isthmus_ca::TrustDomain> {
    isthmus_ca::pem::certs_from_pem(pem)
        .ok()
        .and_then(|certs| certs.into_iter().next())
        .and_then(|root| isthmus_ca::CertFacts::parse(&root).ok())
        .and_then(|facts| facts.uris.into_iter().next())
        .and_then(|uri| isthmus_ca::SpiffeId::parse(&uri).ok())
        .map(|id| id.trust_domain().clone())
        .with_context(|| {
            format!(
                "--bundle {}: its first root names no trust domain (no spiffe://TD URI SAN); use --cert and --key",
                path.display()
            )
        })
}

impl Connect {
    fn client(&self) -> anyhow::Result<AdminClient> {
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
                let files = SvidFiles {
                    bundle: (&bundle, "--bundle"),
                    cert: (&cert, "--cert"),
                    key: (&key, "--key"),
                };
                let svid = Svid::load(files, &ExpectedIdentity::Any)?;
                let verifier = SpiffeVerifier::new(
                    SharedBundle::new(svid.bundle),
                    ExpectedIdentity::AnyFederationNode,
                );
                client_config(verifier, svid.chain, svid.key, &[b"h2"])?
            }
            None => {
                let pem = std::fs::read_to_string(&bundle)
                    .with_context(|| format!("--bundle {}", bundle.display()))?;
                let roots =
                    isthmus_ca::TrustBundle::from_pem(bundle_trust_domain(&pem, &bundle)?, &pem)
                        .with_context(|| format!("--bundle {}", bundle.display()))?;
                let verifier = SpiffeVerifier::new(
                    SharedBundle::new(roots),
                    ExpectedIdentity::AnyFederationNode,
                );
                isthmus_ca::verify::tls::client_config_without_cert(verifier, &[b"h2"])?
            }
        };
        let bearer = match &self.token {
            Some(token) => Some(
                format!("Bearer {}", token.trim())
                    .parse()
                    .context("--token: not a valid header value (printable ASCII only)")?,
            ),
            None => None,
        };
        let channel = isthmus_federation::tls::channel(
            &server,
            std::sync::Arc::new(tls),
            Some(Duration::from_secs(90)),
        )
        .with_context(|| format!("--server {server}"))?;
        Ok(
            FederationAdminClient::with_interceptor(channel, Bearer(bearer))
                .max_decoding_message_size(64 * 1024 * 1024),
        )
    }
}

pub(crate) fn run(command: FederationCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match command {
            FederationCommand::Serve { config } => serve(&config).await,
            FederationCommand::Init(connect) => {
                let status = connect
                    .client()?
                    .init(proto::InitRequest {})
                    .await
                    .map_err(status_error)?;
                print_status(&status.into_inner());
                Ok(ExitCode::SUCCESS)
            }
            FederationCommand::Status {
                connect,
                stale,
                json,
            } => {
                let consistency = if stale {
                    proto::Consistency::Stale
                } else {
                    proto::Consistency::Linearizable
                };
                let request = proto::StatusRequest {
                    consistency: consistency as i32,
                };
                let status = connect
                    .client()?
                    .get_status(request)
                    .await
                    .map_err(status_error)?
                    .into_inner();
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
            let request = proto::AddMemberRequest {
                node_id: id,
                member: Some(proto::Member {
                    node_id: id,
                    name,
                    raft_addr,
                    admin_addr,
                    rest_addr,
                    enroll_addr,
                    voter: true,
                    lag: None,
                }),
            };
            connect
                .client()?
                .add_member(request)
                .await
                .map_err(status_error)?
        }
        MemberCommand::Remove { connect, id } => connect
            .client()?
            .remove_member(proto::RemoveMemberRequest { node_id: id })
            .await
            .map_err(status_error)?,
        MemberCommand::List { connect } => connect
            .client()?
            .get_status(proto::StatusRequest { consistency: 0 })
            .await
            .map_err(status_error)?,
    };
    print_members(&status.into_inner());
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
            let reply = connect
                .client()?
                .create_cluster(proto::CreateClusterRequest {
                    name: name.clone(),
                    locality,
                    ttl_seconds: ttl.map(|t| t.0.as_secs().max(1)),
                })
                .await
                .map_err(status_error)?
                .into_inner();
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
            let reply = connect
                .client()?
                .revoke_cluster(proto::RevokeClusterRequest { name: name.clone() })
                .await
                .map_err(status_error)?
                .into_inner();
            println!(
                "cluster {name} revoked at revision {}; gateways refuse it as soon as they see that revision",
                reply.revision
            );
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::List { connect } => {
            let list = connect
                .client()?
                .list_clusters(proto::ListRequest { consistency: 0 })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("{:<20} {:<8} {:<14} GATEWAYS", "NAME", "STATE", "LOCALITY");
            for c in &list.clusters {
                let state = match proto::ClusterState::try_from(c.state) {
                    Ok(proto::ClusterState::Active) => "active",
                    Ok(proto::ClusterState::Pending) => "pending",
                    Ok(proto::ClusterState::Revoked) => "revoked",
                    Err(_) => "?",
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
            let reply = connect
                .client()?
                .put_claim(proto::PutClaimRequest {
                    claim: Some(proto::Claim {
                        host: host.clone(),
                        namespace: namespace.clone(),
                        revision: 0,
                    }),
                    expect_revision: None,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!(
                "{host} claimed for namespace {namespace} at revision {}",
                reply.revision
            );
        }
        ClaimCommand::List { connect } => {
            let list = connect
                .client()?
                .list_claims(proto::ListRequest { consistency: 0 })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("{:<40} {:<20} REVISION", "HOST", "NAMESPACE");
            for c in &list.claims {
                println!("{:<40} {:<20} {}", c.host, c.namespace, c.revision);
            }
        }
        ClaimCommand::Delete { connect, host } => {
            let reply = connect
                .client()?
                .delete_claim(proto::DeleteClaimRequest {
                    host: host.clone(),
                    expect_revision: None,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("claim of {host} given up at revision {}", reply.revision);
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
    isthmus_federation::validate::name("name", name).map_err(|e| anyhow::anyhow!("{e}"))?;
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
            let body = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let reply = connect
                .client()?
                .put_policy(proto::PutPolicyRequest {
                    policy: Some(proto::Policy {
                        name: name.clone(),
                        body,
                        revision: 0,
                    }),
                    expect_revision,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("policy {name} written at revision {}", reply.revision);
        }
        PolicyCommand::List { connect } => {
            let list = connect
                .client()?
                .list_policies(proto::ListRequest { consistency: 0 })
                .await
                .map_err(status_error)?
                .into_inner();
            println!(
                "{:<24} {:>9} {:>6} {:>7}",
                "NAME", "REVISION", "RULES", "LIMITS"
            );
            for p in &list.policies {
                // Stored bodies were admitted by the same parser.
                let (rules, limits) = isthmus_federation::policy::parse(&p.body)
                    .map(|b| (b.rules.len().to_string(), b.rate_limits.len().to_string()))
                    .unwrap_or_else(|_| ("?".into(), "?".into()));
                println!(
                    "{:<24} {:>9} {:>6} {:>7}",
                    p.name, p.revision, rules, limits
                );
            }
        }
        PolicyCommand::Get { connect, name } => {
            let policy = connect
                .client()?
                .get_policy(proto::GetPolicyRequest {
                    name,
                    consistency: 0,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("{}", policy.body.trim_end());
        }
        PolicyCommand::Delete { connect, name } => {
            let reply = connect
                .client()?
                .delete_policy(proto::DeletePolicyRequest {
                    name: name.clone(),
                    expect_revision: None,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("policy {name} deleted at revision {}", reply.revision);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
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
    super::gateway::shutdown_signal().await?;
    eprintln!("stopping");
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn print_status(status: &proto::Status) {
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

fn print_members(status: &proto::Status) {
    println!(
        "{:<6} {:<16} {:<8} {:<6} {:<22} {:<22}",
        "ID", "NAME", "ROLE", "LAG", "RAFT", "ADMIN"
    );
    for m in &status.members {
        println!(
            "{:<6} {:<16} {:<8} {:<6} {:<22} {:<22}",
            m.node_id,
            m.name,
            if m.voter { "voter" } else { "learner" },
            m.lag.map_or("?".to_owned(), |l| l.to_string()),
            m.raft_addr,
            m.admin_addr
        );
    }
}

fn status_json(status: &proto::Status) -> serde_json::Value {
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
            "node_id": m.node_id, "name": m.name, "voter": m.voter, "lag": m.lag,
            "raft_addr": m.raft_addr, "admin_addr": m.admin_addr, "rest_addr": m.rest_addr,
        })).collect::<Vec<_>>(),
    })
}
