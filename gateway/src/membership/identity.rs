//! The gateway's identity in a federation: enrolled once with a join token, then kept in
//! the state directory (the cluster intermediate and its key, the bundle, the federation's
//! admin addresses). Leaves are issued here from the intermediate and renewed at about
//! half-life with jitter, swapped into rustls live.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use isthmus_ca::rotation::RenewalPolicy;
use isthmus_ca::{Authority, KeyAlgorithm, LeafRequest, SpiffeId, TrustBundle, TrustDomain};
use isthmus_federation_api::enroll::IntermediateRequest;
use isthmus_federation_api::join::JoinToken;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::FederationSettings;
use crate::live_cert::LiveCert;

/// Why the gateway could not get or use its federation identity.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// A state or input file problem.
    #[error("{field}: {path}: {reason}")]
    File {
        /// The config field.
        field: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// No enrollment yet and no token to enroll with.
    #[error(
        "federation.join_token_file: {0} holds no enrollment; set join_token_file to a token from `isthmus federation cluster create`"
    )]
    NoToken(String),
    /// The token is for another cluster.
    #[error(
        "federation.join_token_file: the token is for cluster {token:?}, but this gateway's cluster is {config:?}"
    )]
    WrongCluster {
        /// In the token.
        token: String,
        /// In the config.
        config: String,
    },
    /// Enrollment failed.
    #[error("enrollment: {0}")]
    Enroll(#[from] isthmus_federation_api::enroll::EnrollError),
    /// Certificate work failed.
    #[error("certificates: {0}")]
    Ca(#[from] isthmus_ca::CaError),
}

/// What enrollment left in the state directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    cluster: String,
    trust_domain: String,
    admin_addrs: Vec<String>,
}

/// An enrolled gateway's standing.
#[derive(Debug)]
pub struct Enrolled {
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// The cluster intermediate, able to issue this gateway's leaves.
    pub intermediate: Authority,
    /// The bundle at enrollment (the catalog's replaces it once watched).
    pub bundle: TrustBundle,
    /// The federation's admin gRPC addresses.
    pub admin_addrs: Vec<String>,
    /// The state directory.
    pub state_dir: PathBuf,
}

fn read(field: &'static str, path: &Path) -> Result<String, MembershipError> {
    std::fs::read_to_string(path).map_err(|e| MembershipError::File {
        field,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Replaces `name` in the state directory `dir` (atomically).
pub fn save(dir: &Path, name: &str, text: &str, private: bool) -> Result<(), MembershipError> {
    write(&dir.join(name), text, private)
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), MembershipError> {
    let fail = |e: std::io::Error| MembershipError::File {
        field: "federation.state_dir",
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    // Write then rename, so that a crash never leaves half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(fail)?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    }
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Loads the enrollment from the state directory, or enrolls with the token and saves it.
pub async fn load_or_enroll(
    settings: &FederationSettings,
    base: &Path,
    cluster: &str,
    advertise: std::net::SocketAddr,
) -> Result<Enrolled, MembershipError> {
    let dir = base.join(&settings.state_dir);
    std::fs::create_dir_all(&dir).map_err(|e| MembershipError::File {
        field: "federation.state_dir",
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let record_path = dir.join("enrollment.json");
    if record_path.exists() {
        let record: Record = serde_json::from_str(&read("federation.state_dir", &record_path)?)
            .map_err(|e| MembershipError::File {
                field: "federation.state_dir",
                path: record_path.display().to_string(),
                reason: format!("unreadable ({e}); remove the state directory to enroll again"),
            })?;
        if record.cluster != cluster {
            return Err(MembershipError::WrongCluster {
                token: record.cluster,
                config: cluster.to_owned(),
            });
        }
        let td = TrustDomain::new(&record.trust_domain).map_err(isthmus_ca::CaError::from)?;
        let intermediate = Authority::from_pem(
            &read("federation.state_dir", &dir.join("intermediate.pem"))?,
            &read("federation.state_dir", &dir.join("intermediate.key"))?,
            Some(&td),
        )?;
        let bundle = TrustBundle::from_pem(
            td.clone(),
            &read("federation.state_dir", &dir.join("bundle.pem"))?,
        )?;
        return Ok(Enrolled {
            trust_domain: td,
            intermediate,
            bundle,
            admin_addrs: record.admin_addrs,
            state_dir: dir,
        });
    }
    let token_file = settings
        .join_token_file
        .as_ref()
        .ok_or_else(|| MembershipError::NoToken(dir.display().to_string()))?;
    let token_path = base.join(token_file);
    let token =
        JoinToken::parse(&read("federation.join_token_file", &token_path)?).map_err(|e| {
            MembershipError::File {
                field: "federation.join_token_file",
                path: token_path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
    if token.cluster != cluster {
        return Err(MembershipError::WrongCluster {
            token: token.cluster,
            config: cluster.to_owned(),
        });
    }
    let td = TrustDomain::new(&token.trust_domain).map_err(isthmus_ca::CaError::from)?;
    let (key_pem, request) = match &settings.intermediate {
        Some((cert, key)) => (
            read("federation.intermediate_key", &base.join(key))?,
            IntermediateRequest::Signed(read("federation.intermediate_cert", &base.join(cert))?),
        ),
        None => {
            let (key, csr) = isthmus_ca::cluster_csr(&td, cluster, KeyAlgorithm::EcdsaP256)?;
            (key.serialize_pem(), IntermediateRequest::Csr(csr))
        }
    };
    let reply = isthmus_federation_api::enroll::enroll(
        &token,
        &settings.gateway_name,
        &advertise.to_string(),
        request,
        Duration::from_secs(15),
    )
    .await?;
    let intermediate = Authority::from_pem(&reply.intermediate_pem, &key_pem, Some(&td))?;
    write(&dir.join("intermediate.key"), &key_pem, true)?;
    write(
        &dir.join("intermediate.pem"),
        &reply.intermediate_pem,
        false,
    )?;
    write(&dir.join("bundle.pem"), &reply.bundle.to_pem(), false)?;
    let record = Record {
        cluster: cluster.to_owned(),
        trust_domain: td.to_string(),
        admin_addrs: reply.admin_addrs.clone(),
    };
    write(
        &record_path,
        &serde_json::to_string_pretty(&record).unwrap_or_default(),
        false,
    )?;
    tracing::info!(cluster, "enrolled in the federation");
    Ok(Enrolled {
        trust_domain: td,
        intermediate,
        bundle: reply.bundle,
        admin_addrs: reply.admin_addrs,
        state_dir: dir,
    })
}

/// This gateway's SPIFFE ID.
pub fn gateway_id(
    td: &TrustDomain,
    cluster: &str,
    name: &str,
) -> Result<SpiffeId, MembershipError> {
    Ok(
        SpiffeId::parse(&format!("spiffe://{td}/cluster/{cluster}/gateway/{name}"))
            .map_err(isthmus_ca::CaError::from)?,
    )
}

/// A fresh leaf: the chain to present and its key.
pub fn issue(
    intermediate: &Authority,
    id: &SpiffeId,
    lifetime: Duration,
    now: SystemTime,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), MembershipError> {
    let leaf = intermediate.issue_leaf(
        &LeafRequest {
            id: id.clone(),
            lifetime,
            dns_names: vec![],
            key_algorithm: KeyAlgorithm::EcdsaP256,
        },
        now,
    )?;
    let chain = std::iter::once(leaf.cert).chain(leaf.chain).collect();
    let key = PrivateKeyDer::Pkcs8(leaf.key.serialize_der().into());
    Ok((chain, key))
}

/// The issuer of leaves, replaceable when the cluster's intermediate is re-signed
/// (a root rotation).
pub type SharedIssuer = Arc<std::sync::RwLock<Arc<Authority>>>;

/// Renews the leaf in `cert` at about half of each leaf's life until `stop`.
pub async fn renew(
    issuer: SharedIssuer,
    cert: Arc<LiveCert>,
    id: SpiffeId,
    lifetime: Duration,
    renewed: Arc<dyn Fn() + Send + Sync>,
    stop: CancellationToken,
) {
    let policy = RenewalPolicy::default();
    let mut issued_at = SystemTime::now();
    loop {
        let sample = {
            use ring::rand::SecureRandom;
            let mut b = [0u8; 8];
            let _ = ring::rand::SystemRandom::new().fill(&mut b);
            u64::from_le_bytes(b)
        };
        let plan = policy.plan(issued_at, issued_at + lifetime, SystemTime::now(), sample);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(plan.wait) => {}
        }
        let authority = issuer.read().unwrap_or_else(|p| p.into_inner()).clone();
        let now = SystemTime::now();
        match issue(&authority, &id, lifetime, now).and_then(|(chain, key)| {
            cert.replace(chain, &key).map_err(|e| {
                MembershipError::Ca(isthmus_ca::CaError::BadCertificate(e.to_string()))
            })
        }) {
            Ok(()) => {
                issued_at = now;
                renewed();
                tracing::info!(%id, "leaf renewed");
            }
            Err(e) => {
                // Keep the current leaf and retry soon; it is still valid for half its life.
                tracing::error!(%id, error = %e, "leaf renewal failed; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
