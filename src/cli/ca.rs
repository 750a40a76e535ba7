//! `isthmus ca`: the CA's file-based workflow.
//!
//! Directory layout written and read here:
//!
//! ```text
//! root dir:    root.pem  root.key  bundle.pem  trust-domain
//! cluster dir: intermediate.pem  intermediate.key  bundle.pem  trust-domain
//!              (csr flow: intermediate.csr and intermediate.key first, intermediate.pem later)
//! leaf dir:    cert.pem (leaf + chain)  key.pem  bundle.pem
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use isthmus_ca::policy::{CaPolicy, CaPolicyFile};
use isthmus_ca::verify::tls::SpiffeVerifier;
use isthmus_ca::verify::{ExpectedIdentity, PeerRole};
use isthmus_ca::{
    Authority, AuthorityKind, KeyAlgorithm, LeafRequest, SharedBundle, SpiffeId, TrustBundle,
    TrustDomain, fingerprint,
};
use isthmus_config::HumanDuration;

use super::files::{Secrecy, prepare, read, write_new};

const TRUST_DOMAIN_FILE: &str = "trust-domain";

#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Create a new root CA for a trust domain.
    Init {
        /// Trust domain, for example mesh.example.
        #[arg(long)]
        trust_domain: TrustDomain,
        /// Directory to write root.pem, root.key, bundle.pem and trust-domain into.
        #[arg(long)]
        out: PathBuf,
        /// Key algorithm [default: from the policy, ecdsa-p256].
        #[arg(long)]
        key_algorithm: Option<KeyAlgorithm>,
        /// Lifetime [default: from the policy, 10y].
        #[arg(long)]
        validity: Option<HumanDuration>,
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// Take an operator's own root CA (plug-in CA) into the same layout as `init`.
    Import {
        /// Trust domain the root will serve.
        #[arg(long)]
        trust_domain: TrustDomain,
        /// The root certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// The root's private key (PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        /// Directory to write into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Create a cluster's intermediate CA, key and certificate, signed by the root now.
    Intermediate {
        /// Directory of the root (from `init` or `import`).
        #[arg(long)]
        root_dir: PathBuf,
        /// Cluster name (a DNS-1123 label).
        #[arg(long)]
        cluster: String,
        /// Directory to write intermediate.pem, intermediate.key, bundle.pem into.
        #[arg(long)]
        out: PathBuf,
        /// Key algorithm [default: from the policy, ecdsa-p256].
        #[arg(long)]
        key_algorithm: Option<KeyAlgorithm>,
        /// Lifetime [default: from the policy, 1y].
        #[arg(long)]
        validity: Option<HumanDuration>,
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// In the cluster: make the intermediate's key and a CSR for the root holder.
    Csr {
        /// Trust domain.
        #[arg(long)]
        trust_domain: TrustDomain,
        /// Cluster name.
        #[arg(long)]
        cluster: String,
        /// Directory to write intermediate.key and intermediate.csr into.
        #[arg(long)]
        out: PathBuf,
        /// Key algorithm [default: from the policy, ecdsa-p256].
        #[arg(long)]
        key_algorithm: Option<KeyAlgorithm>,
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// At the root holder: sign a cluster's CSR into its intermediate certificate.
    Sign {
        /// Directory of the root.
        #[arg(long)]
        root_dir: PathBuf,
        /// The CSR from `isthmus ca csr`.
        #[arg(long)]
        csr: PathBuf,
        /// The cluster the CSR must be for.
        #[arg(long)]
        cluster: String,
        /// Directory to write intermediate.pem, bundle.pem and trust-domain into
        /// (may be the directory holding the CSR's key).
        #[arg(long)]
        out: PathBuf,
        /// Lifetime [default: from the policy, 1y].
        #[arg(long)]
        validity: Option<HumanDuration>,
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// Issue a workload, gateway or federation-node certificate.
    Issue {
        /// A cluster directory (intermediate) or, for federation nodes, a root directory.
        #[arg(long)]
        ca_dir: PathBuf,
        /// spiffe://TD/cluster/C/ns/NS/sa/SA, spiffe://TD/cluster/C/gateway/NAME or
        /// spiffe://TD/federation/NODE.
        #[arg(long)]
        spiffe_id: SpiffeId,
        /// Lifetime [default: from the policy, 24h].
        #[arg(long)]
        ttl: Option<HumanDuration>,
        /// Extra DNS SAN (gateways and federation nodes); repeatable.
        #[arg(long = "dns")]
        dns_names: Vec<String>,
        /// Directory to write cert.pem, key.pem and bundle.pem into.
        #[arg(long)]
        out: PathBuf,
        /// Key algorithm [default: from the policy, ecdsa-p256].
        #[arg(long)]
        key_algorithm: Option<KeyAlgorithm>,
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// Show what a PEM file holds: subjects, SPIFFE IDs, validity, chain; warn on CA expiry.
    Inspect {
        /// A PEM file of one or more certificates.
        file: PathBuf,
        /// Warn when a CA certificate expires within this window [default: from the policy, 60d].
        #[arg(long)]
        warn_within: Option<HumanDuration>,
        #[command(flatten)]
        policy: PolicyArg,
    },
    /// Verify a certificate chain as a peer would; exit 1 with the reason when refused.
    Verify {
        /// Trust bundle (PEM roots).
        #[arg(long)]
        bundle: PathBuf,
        /// The chain to check: leaf first, then intermediates (PEM).
        cert: PathBuf,
        /// Require this exact SPIFFE ID.
        #[arg(long)]
        expect: Option<SpiffeId>,
        /// Check the leaf for use as a TLS client or server.
        #[arg(long, value_enum, default_value_t = Role::Client)]
        role: Role,
        /// Trust domain, when the bundle's roots do not name one.
        #[arg(long)]
        trust_domain: Option<TrustDomain>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Role {
    Client,
    Server,
}

#[derive(Debug, Args)]
pub(crate) struct PolicyArg {
    /// CA policy file (.toml or .json); see `isthmus config schema ca`.
    #[arg(long, global = true)]
    policy: Option<PathBuf>,
}

impl PolicyArg {
    fn load(&self) -> anyhow::Result<CaPolicy> {
        match &self.policy {
            Some(path) => Ok(isthmus_config::load::<CaPolicyFile>(path)?),
            None => Ok(CaPolicy::default()),
        }
    }
}

pub(crate) fn run(command: CaCommand) -> anyhow::Result<ExitCode> {
    let now = SystemTime::now();
    match command {
        CaCommand::Init {
            trust_domain,
            out,
            key_algorithm,
            validity,
            policy,
        } => {
            let policy = policy.load()?;
            let paths = prepare(
                &out,
                &["root.pem", "root.key", "bundle.pem", TRUST_DOMAIN_FILE],
            )?;
            let validity = validity.map_or(policy.root_validity, Duration::from);
            let root = Authority::new_root(
                &trust_domain,
                key_algorithm.unwrap_or(policy.root_key),
                validity,
                now,
            )?;
            write_root(&root, &paths)?;
            println!(
                "created root CA for {trust_domain} (valid {}, sha256 {}) in {}",
                HumanDuration(validity),
                fingerprint(root.cert()),
                out.display()
            );
        }
        CaCommand::Import {
            trust_domain,
            cert,
            key,
            out,
        } => {
            let root = Authority::from_pem(&read(&cert)?, &read(&key)?, Some(&trust_domain))
                .with_context(|| format!("importing {}", cert.display()))?;
            if *root.kind() != AuthorityKind::Root {
                bail!(
                    "{} is not a root CA (it must be self-signed)",
                    cert.display()
                );
            }
            let paths = prepare(
                &out,
                &["root.pem", "root.key", "bundle.pem", TRUST_DOMAIN_FILE],
            )?;
            write_root(&root, &paths)?;
            println!(
                "imported root CA (sha256 {}) for {trust_domain} into {}",
                fingerprint(root.cert()),
                out.display()
            );
        }
        CaCommand::Intermediate {
            root_dir,
            cluster,
            out,
            key_algorithm,
            validity,
            policy,
        } => {
            let policy = policy.load()?;
            let root = load_authority(&root_dir, "root")?;
            let bundle = read(&root_dir.join("bundle.pem"))?;
            let validity = validity.map_or(policy.intermediate_validity, Duration::from);
            let intermediate = root.new_cluster_intermediate(
                &cluster,
                key_algorithm.unwrap_or(policy.intermediate_key),
                validity,
                now,
            )?;
            let paths = prepare(
                &out,
                &[
                    "intermediate.pem",
                    "intermediate.key",
                    "bundle.pem",
                    TRUST_DOMAIN_FILE,
                ],
            )?;
            write_new(&paths[0], &intermediate.cert_chain_pem(), Secrecy::Public)?;
            write_new(&paths[1], &intermediate.key_pem(), Secrecy::Secret)?;
            write_trust(&paths[2], &paths[3], &bundle, root.trust_domain())?;
            println!(
                "created intermediate CA of cluster {cluster} (valid {}) in {}",
                HumanDuration(validity),
                out.display()
            );
        }
        CaCommand::Csr {
            trust_domain,
            cluster,
            out,
            key_algorithm,
            policy,
        } => {
            let policy = policy.load()?;
            let (key, csr) = isthmus_ca::cluster_csr(
                &trust_domain,
                &cluster,
                key_algorithm.unwrap_or(policy.intermediate_key),
            )?;
            let paths = prepare(&out, &["intermediate.key", "intermediate.csr"])?;
            write_new(&paths[0], &key.serialize_pem(), Secrecy::Secret)?;
            write_new(&paths[1], &csr, Secrecy::Public)?;
            println!(
                "wrote {} (send it to the root holder) and kept the key in {}",
                paths[1].display(),
                paths[0].display()
            );
        }
        CaCommand::Sign {
            root_dir,
            csr,
            cluster,
            out,
            validity,
            policy,
        } => {
            let policy = policy.load()?;
            let root = load_authority(&root_dir, "root")?;
            let bundle = read(&root_dir.join("bundle.pem"))?;
            let validity = validity.map_or(policy.intermediate_validity, Duration::from);
            let cert = root
                .sign_cluster_csr(&read(&csr)?, &cluster, validity, now)
                .with_context(|| format!("signing {}", csr.display()))?;
            let paths = prepare(&out, &["intermediate.pem", "bundle.pem", TRUST_DOMAIN_FILE])?;
            let cert = isthmus_ca::pem::certs_to_pem([&cert]);
            write_new(&paths[0], &cert, Secrecy::Public)?;
            write_trust(&paths[1], &paths[2], &bundle, root.trust_domain())?;
            println!(
                "signed the intermediate of cluster {cluster} (valid {}) into {}",
                HumanDuration(validity),
                paths[0].display()
            );
        }
        CaCommand::Issue {
            ca_dir,
            spiffe_id,
            ttl,
            dns_names,
            out,
            key_algorithm,
            policy,
        } => {
            let policy = policy.load()?;
            let ca = if ca_dir.join("intermediate.pem").exists() {
                load_authority(&ca_dir, "intermediate")?
            } else {
                load_authority(&ca_dir, "root")?
            };
            let lifetime = ttl.map_or(policy.leaf_default_ttl, Duration::from);
            if lifetime > policy.leaf_max_ttl {
                bail!(
                    "--ttl {} is longer than the policy's leaf.max_ttl {}; ask for less or raise leaf.max_ttl",
                    HumanDuration(lifetime),
                    HumanDuration(policy.leaf_max_ttl)
                );
            }
            let bundle = read(&ca_dir.join("bundle.pem"))?;
            let leaf = ca.issue_leaf(
                &LeafRequest {
                    id: spiffe_id.clone(),
                    lifetime,
                    dns_names,
                    key_algorithm: key_algorithm.unwrap_or(policy.leaf_key),
                },
                now,
            )?;
            let paths = prepare(&out, &["cert.pem", "key.pem", "bundle.pem"])?;
            let chain =
                isthmus_ca::pem::certs_to_pem(std::iter::once(&leaf.cert).chain(&leaf.chain));
            write_new(&paths[0], &chain, Secrecy::Public)?;
            write_new(&paths[1], &leaf.key.serialize_pem(), Secrecy::Secret)?;
            write_new(&paths[2], &bundle, Secrecy::Public)?;
            println!(
                "issued {spiffe_id} (valid {}) into {}",
                HumanDuration(lifetime),
                out.display()
            );
        }
        CaCommand::Inspect {
            file,
            warn_within,
            policy,
        } => {
            let policy = policy.load()?;
            let certs = isthmus_ca::pem::certs_from_pem(&read(&file)?)
                .with_context(|| format!("reading {}", file.display()))?;
            let window = warn_within.map_or(policy.warn_before_expiry, Duration::from);
            let inspection = isthmus_ca::inspect::inspect(&certs, now, window)
                .with_context(|| format!("inspecting {}", file.display()))?;
            print!("{inspection}");
            for warning in &inspection.warnings {
                eprintln!("warning: {warning}");
            }
        }
        CaCommand::Verify {
            bundle,
            cert,
            expect,
            role,
            trust_domain,
        } => {
            let roots = isthmus_ca::pem::certs_from_pem(&read(&bundle)?)
                .with_context(|| format!("reading {}", bundle.display()))?;
            let trust_domain = match trust_domain {
                Some(td) => td,
                None => bundle_trust_domain(&roots)
                    .with_context(|| format!("{}: give --trust-domain", bundle.display()))?,
            };
            let bundle = TrustBundle::new(trust_domain, roots)?;
            let chain = isthmus_ca::pem::certs_from_pem(&read(&cert)?)
                .with_context(|| format!("reading {}", cert.display()))?;
            let Some((leaf, intermediates)) = chain.split_first() else {
                bail!("{} holds no certificate", cert.display());
            };
            let expected = expect.map_or(ExpectedIdentity::Any, ExpectedIdentity::Exact);
            let role = match role {
                Role::Client => PeerRole::Client,
                Role::Server => PeerRole::Server,
            };
            let verifier = SpiffeVerifier::new(SharedBundle::new(bundle), expected);
            match verifier.verify(leaf, intermediates, rustls_pki_types::UnixTime::now(), role) {
                Ok(peer) => println!("ok: {}", peer.id),
                Err(err) => {
                    eprintln!("refused ({}): {err}", err.reason());
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_root(root: &Authority, paths: &[PathBuf]) -> anyhow::Result<()> {
    let bundle = TrustBundle::new(root.trust_domain().clone(), [root.cert().clone()])?;
    write_new(&paths[0], &root.cert_chain_pem(), Secrecy::Public)?;
    write_new(&paths[1], &root.key_pem(), Secrecy::Secret)?;
    write_trust(&paths[2], &paths[3], &bundle.to_pem(), root.trust_domain())
}

/// Writes the trust bundle and trust-domain files every CA directory carries.
fn write_trust(
    bundle_path: &Path,
    domain_path: &Path,
    bundle: &str,
    trust_domain: &TrustDomain,
) -> anyhow::Result<()> {
    write_new(bundle_path, bundle, Secrecy::Public)?;
    write_new(
        domain_path,
        &format!(
            "{trust_domain}
"
        ),
        Secrecy::Public,
    )
}

/// Loads `<name>.pem` and `<name>.key` of a CA directory.
fn load_authority(dir: &Path, name: &str) -> anyhow::Result<Authority> {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let trust_domain = read(&dir.join(TRUST_DOMAIN_FILE))?;
    let trust_domain = TrustDomain::new(trust_domain.trim())
        .with_context(|| format!("{}", dir.join(TRUST_DOMAIN_FILE).display()))?;
    Authority::from_pem(&read(&cert)?, &read(&key)?, Some(&trust_domain))
        .with_context(|| format!("loading the CA in {}", dir.display()))
}

fn bundle_trust_domain(
    roots: &[rustls_pki_types::CertificateDer<'static>],
) -> anyhow::Result<TrustDomain> {
    for root in roots {
        let facts = isthmus_ca::CertFacts::parse(root).map_err(anyhow::Error::msg)?;
        if let Some(td) = facts.signing_trust_domain()? {
            return Ok(td);
        }
    }
    bail!("no root of the bundle names its trust domain")
}
