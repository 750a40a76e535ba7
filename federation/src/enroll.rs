//! Enrollment: `cluster create` mints a join token, and the new cluster's first gateway
//! spends it to register itself and get its intermediate and the trust bundle.
//!
//! ```text
//!  operator ── CreateCluster ──▶ pending cluster + token hash ──▶ token printed
//!  gateway  ── GetRoots (TLS, unverified) ──▶ keep the root the token pins
//!           ── Enroll (TLS verified against that root; token + CSR or intermediate)
//!           ◀── intermediate, roots, admin addresses; the cluster is active
//! ```
//!
//! The secret is checked against the local catalog before anything is proposed, so that
//! guesses never reach the Raft log; the command re-checks it when applied, which is what
//! makes a token single-use.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use isthmus_ca::{Authority, TrustDomain};
use tonic::{Request, Response, Status};

use isthmus_federation_api::ApiError;
use isthmus_federation_api::join::{JoinToken, secret_sha256};
use isthmus_federation_api::model::{ClusterState, GatewayEndpoint, JoinGrant};
use isthmus_federation_api::proto;
use isthmus_federation_api::proto::enrollment_server::Enrollment;
use isthmus_federation_api::status::Consistency;
use isthmus_federation_api::validate;

use crate::command::Command;
use crate::service::Federation;
use crate::tls::NodeTls;

/// What a node needs to mint tokens and enroll gateways.
#[derive(Debug, Clone)]
pub struct Enroller {
    federation: Arc<Federation>,
    tls: NodeTls,
    root: Option<Arc<Authority>>,
    intermediate_lifetime: Duration,
    token_lifetime: Duration,
}

/// A freshly minted token.
#[derive(Debug, Clone)]
pub struct MintedToken {
    /// The printable token.
    pub token: String,
    /// Unix seconds after which it is refused.
    pub expires_at: u64,
    /// The catalog revision that registered it.
    pub revision: u64,
}

fn unix(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Enroller {
    /// An enroller for `federation`; `root` signs CSRs when the operator gave it.
    pub fn new(
        federation: Arc<Federation>,
        tls: NodeTls,
        root: Option<Authority>,
        intermediate_lifetime: Duration,
        token_lifetime: Duration,
    ) -> Self {
        Self {
            federation,
            tls,
            root: root.map(Arc::new),
            intermediate_lifetime,
            token_lifetime,
        }
    }

    /// The SHA-256 of the root this node's certificate chains to: what tokens pin.
    fn pinned_root(&self) -> Result<String, ApiError> {
        let bundle = self.tls.bundle().current();
        let top = self
            .tls
            .chain()
            .last()
            .ok_or_else(|| ApiError::Internal("this node has no certificate".into()))?;
        let root = bundle
            .signer_of(top)
            .map_err(|e| ApiError::Internal(format!("this node's certificate: {e}")))?;
        Ok(isthmus_ca::fingerprint(&root.der))
    }

    /// Registers `name` as a pending cluster and mints its join token.
    pub async fn create_cluster(
        &self,
        name: &str,
        locality: Option<String>,
        ttl: Option<Duration>,
        now: SystemTime,
    ) -> Result<MintedToken, ApiError> {
        validate::name("name", name)?;
        let ttl = ttl.unwrap_or(self.token_lifetime);
        if ttl.is_zero() || ttl > crate::config::MAX_TOKEN_LIFETIME {
            return Err(ApiError::invalid(
                "ttl_seconds",
                format!("{} s; use 1 to 86400", ttl.as_secs()),
            ));
        }
        let enroll: Vec<String> = self
            .federation
            .local_status()
            .members
            .into_iter()
            .filter_map(|m| m.info.enroll_addr)
            .collect();
        if enroll.is_empty() {
            return Err(ApiError::FailedPrecondition(
                "no federation node has an enrollment listener; set listen.enroll in the node configs (and --enroll-addr on `member add`)".into(),
            ));
        }
        let token = JoinToken::generate(
            name,
            self.federation.trust_domain().as_str(),
            &self.pinned_root()?,
            enroll,
        )
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        let expires_at = unix(now) + ttl.as_secs();
        let revision = self
            .federation
            .write(Command::CreateCluster {
                name: name.to_owned(),
                locality,
                join: JoinGrant {
                    token_id: token.id.clone(),
                    secret_sha256: token.secret_sha256(),
                    expires_at,
                },
            })
            .await?;
        Ok(MintedToken {
            token: token.encode(),
            expires_at,
            revision,
        })
    }

    /// The roots an enrolling gateway checks against its token's pin.
    pub fn roots(&self) -> proto::Roots {
        let bundle = self.tls.bundle().current();
        proto::Roots {
            trust_domain: bundle.trust_domain().to_string(),
            roots: bundle.to_pem(),
        }
    }

    /// Spends a token.
    pub async fn enroll(
        &self,
        request: proto::EnrollRequest,
        now: SystemTime,
    ) -> Result<proto::EnrollReply, ApiError> {
        let token = JoinToken::parse(&request.token)
            .map_err(|e| ApiError::invalid("token", e.to_string()))?;
        let gateway = GatewayEndpoint {
            name: request.gateway_name,
            address: request.gateway_address,
        };
        validate::name("gateway_name", &gateway.name)?;
        // Check the secret against what this node has applied, so that a wrong token
        // never reaches the log (the command checks again when applied).
        let hash = secret_sha256(&token.secret);
        let grant = self
            .federation
            .read(Consistency::Stale, |s| {
                s.clusters
                    .get(&token.cluster)
                    .map(|c| (c.state, c.join.clone()))
            })
            .await?;
        let refused = |why: &str| ApiError::PermissionDenied(format!("join token refused: {why}"));
        match grant {
            Some((ClusterState::Pending, Some(grant)))
                if grant.token_id == token.id && ct_eq(&grant.secret_sha256, &hash) => {}
            Some((ClusterState::Active, _)) => {
                return Err(refused(
                    "it was already used: the cluster has joined (a restarted gateway uses its data directory, not the token)",
                ));
            }
            Some((ClusterState::Revoked, _)) => {
                return Err(refused("the cluster is revoked"));
            }
            _ => return Err(refused("unknown, replaced or wrong token")),
        }
        let trust_domain = self.federation.trust_domain().clone();
        let intermediate_pem =
            self.intermediate(&token.cluster, &trust_domain, request.intermediate, now)?;
        let revision = self
            .federation
            .write(Command::Enroll {
                name: token.cluster.clone(),
                token_id: token.id,
                secret_sha256: hash,
                now: unix(now),
                gateway,
                intermediate_pem: intermediate_pem.clone(),
            })
            .await?;
        let admin_addrs = self
            .federation
            .local_status()
            .members
            .into_iter()
            .map(|m| m.info.admin_addr)
            .collect();
        let roots = self
            .federation
            .read(Consistency::Stale, |s| {
                s.trust_bundle.as_ref().map(|b| b.roots_pem.clone())
            })
            .await?
            .unwrap_or_else(|| self.tls.bundle().current().to_pem());
        tracing::info!(cluster = %token.cluster, revision, "cluster enrolled");
        Ok(proto::EnrollReply {
            cluster: token.cluster,
            trust_domain: trust_domain.to_string(),
            intermediate_pem,
            roots,
            admin_addrs,
            revision,
        })
    }

    /// The cluster's intermediate: signed here from a CSR, or brought and checked.
    fn intermediate(
        &self,
        cluster: &str,
        trust_domain: &TrustDomain,
        given: Option<proto::enroll_request::Intermediate>,
        now: SystemTime,
    ) -> Result<String, ApiError> {
        use proto::enroll_request::Intermediate;
        match given {
            None => Err(ApiError::invalid(
                "intermediate",
                "send csr_pem (a CSR for this federation to sign) or intermediate_pem (signed by the root holder)",
            )),
            Some(Intermediate::CsrPem(csr)) => {
                let Some(root) = &self.root else {
                    return Err(ApiError::FailedPrecondition(
                        "this federation does not hold the root key, so it cannot sign the cluster's CSR: have the root holder run `isthmus ca sign-csr` and enroll with intermediate_pem".into(),
                    ));
                };
                let der = root
                    .sign_cluster_csr(&csr, cluster, self.intermediate_lifetime, now)
                    .map_err(|e| ApiError::invalid("csr_pem", e.to_string()))?;
                Ok(isthmus_ca::pem::certs_to_pem([&der]))
            }
            Some(Intermediate::IntermediatePem(pem)) => {
                let certs = isthmus_ca::pem::certs_from_pem(&pem)
                    .map_err(|e| ApiError::invalid("intermediate_pem", e.to_string()))?;
                let [cert] = certs.as_slice() else {
                    return Err(ApiError::invalid(
                        "intermediate_pem",
                        format!("expected exactly one certificate, found {}", certs.len()),
                    ));
                };
                let bundle = self.tls.bundle().current();
                if bundle.trust_domain() != trust_domain {
                    return Err(ApiError::Internal(
                        "the node's bundle is of another trust domain".into(),
                    ));
                }
                bundle
                    .signer_of(cert)
                    .map_err(|e| ApiError::invalid("intermediate_pem", e.to_string()))?;
                Ok(pem)
            }
        }
    }
}

/// Constant-time comparison of two hex digests.
fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The gRPC face of enrollment.
#[derive(Debug, Clone)]
pub struct EnrollmentGrpc(pub Arc<Enroller>);

#[tonic::async_trait]
impl Enrollment for EnrollmentGrpc {
    async fn get_roots(
        &self,
        _: Request<proto::GetRootsRequest>,
    ) -> Result<Response<proto::Roots>, Status> {
        Ok(Response::new(self.0.roots()))
    }

    async fn enroll(
        &self,
        request: Request<proto::EnrollRequest>,
    ) -> Result<Response<proto::EnrollReply>, Status> {
        let reply = self.0.enroll(request.into_inner(), SystemTime::now()).await;
        if let Err(e) = &reply {
            tracing::warn!(error = %e, "enrollment refused");
        }
        Ok(Response::new(reply?))
    }
}
