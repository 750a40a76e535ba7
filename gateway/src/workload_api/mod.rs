//! The SPIFFE Workload API of a member gateway, on a Unix socket: workloads of this
//! cluster get X.509-SVIDs (`spiffe://TD/cluster/C/ns/NS/sa/SA`) issued from the
//! cluster's intermediate, and the trust bundle, as streams that push a fresh SVID at
//! half its life and again when the bundle changes. Who a caller is comes from the
//! kernel (the socket's peer credentials and `/proc/<pid>/exe`), matched against the
//! registrations ([`attest`]); a caller no registration matches gets `PermissionDenied`
//! and nothing else. Requests without the `workload.spiffe.io: true` header are refused,
//! as the specification says. JWT-SVIDs are not served.

pub mod attest;
pub mod authority;
pub mod config;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use isthmus_ca::{SharedBundle, SpiffeId, TrustDomain};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use isthmus_ca::verify::{ExpectedIdentity, PeerRole, verify_chain};
use rustls_pki_types::CertificateDer;

use crate::authz::Verdict;
use crate::membership::identity::{SharedIssuer, issue};
use crate::open_tunnels::{OpenTunnel, OpenTunnels};
use attest::{Caller, Registration};
use config::WorkloadApiSettings;

/// Generated types of the Workload API.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("_");
}

/// How often a stream looks for a changed bundle.
const BUNDLE_POLL: Duration = Duration::from_secs(1);

/// The registrations in force: the config's, then the federation's for this cluster,
/// replaced as a whole when the catalog changes; the version grows with each change.
/// They also hold the workloads' mutual-TLS connections open on this gateway, so that a
/// change that leaves an identity without a registration, or a bundle that no longer
/// trusts the chain it presented, cuts its connections at once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registrations {
    held: Arc<std::sync::RwLock<(u64, Vec<Registration>)>>,
    open: OpenTunnels<WorkloadConnection>,
}

/// What a workload's open mutual-TLS connection was let in as.
#[derive(Debug, Clone)]
pub(crate) struct WorkloadConnection {
    /// Its namespace.
    pub(crate) namespace: String,
    /// Its service account.
    pub(crate) service_account: String,
    /// The chain it presented, leaf first (checked again when the bundle changes).
    pub(crate) chain: Arc<Vec<CertificateDer<'static>>>,
}

impl Registrations {
    /// Starts with `configured`.
    pub(crate) fn new(configured: Vec<Registration>) -> Self {
        Self {
            held: Arc::new(std::sync::RwLock::new((0, configured))),
            open: OpenTunnels::default(),
        }
    }

    /// The version and the entries now.
    pub(crate) fn current(&self) -> (u64, Vec<Registration>) {
        self.held.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether some registration gives `namespace`/`service_account` now.
    pub(crate) fn gives(&self, namespace: &str, service_account: &str) -> bool {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .iter()
            .any(|r| r.namespace == namespace && r.service_account == service_account)
    }

    /// Holds a workload's open connection, cut when `cut` is or when no registration
    /// gives its identity any more. Hold it before asking [`Self::gives`]: a
    /// [`Self::replace`] then either sees it or has already changed what `gives` reads.
    pub(crate) fn open(
        &self,
        connection: WorkloadConnection,
        cut: CancellationToken,
    ) -> OpenTunnel<WorkloadConnection> {
        self.open.register(connection, cut)
    }

    /// Cuts the open connections whose chain no longer verifies under `bundle` as a
    /// workload of `cluster` (its root was removed, or the leaf expired).
    pub(crate) fn recheck_bundle(&self, bundle: &isthmus_ca::TrustBundle, cluster: &str) {
        let now = isthmus_ca::time::unix_seconds(SystemTime::now());
        let expected = ExpectedIdentity::WorkloadOf(cluster.to_owned());
        let cut = self.open.revoke_where(|c| {
            let (leaf, rest) = c.chain.split_first()?;
            let refused =
                verify_chain(bundle, leaf, rest, now, PeerRole::Client, &expected).err()?;
            Some(Verdict::refusal(
                UNTRUSTED_RULE,
                format!("the chain it presented no longer verifies: {refused}"),
            ))
        });
        for (c, verdict) in cut {
            tracing::warn!(namespace = %c.namespace, service_account = %c.service_account, reason = %verdict.reason, "trust bundle changed: cutting the workload's open connection (policy_revoked)");
        }
    }

    /// Replaces the entries (a change of the catalog's, with the config's kept first),
    /// and cuts the open connections of every identity no entry gives any more.
    pub(crate) fn replace(&self, entries: Vec<Registration>) {
        {
            let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
            if held.1 == entries {
                return;
            }
            *held = (held.0 + 1, entries);
        }
        let cut = self.open.revoke_where(|c| {
            (!self.gives(&c.namespace, &c.service_account)).then(|| {
                Verdict::refusal(
                    REGISTRATION_RULE,
                    format!(
                        "no registration gives ns/{}/sa/{} any more",
                        c.namespace, c.service_account
                    ),
                )
            })
        });
        for (c, _) in cut {
            tracing::warn!(namespace = %c.namespace, service_account = %c.service_account, "registration removed: cutting the workload's open connection (policy_revoked)");
        }
    }
}

/// The rule named when a connection is cut because its registration went.
pub(crate) const REGISTRATION_RULE: &str = "registration";

/// The rule named when a connection is cut because the bundle no longer trusts it.
pub(crate) const UNTRUSTED_RULE: &str = "untrusted_certificate";

/// A federation registration as the attestor reads it.
pub(crate) fn from_federation(
    r: &isthmus_federation_api::registration::Registration,
) -> Registration {
    Registration {
        namespace: r.namespace.clone(),
        service_account: r.service_account.clone(),
        uid: r.uid,
        gid: r.gid,
        path: r.path.as_ref().map(PathBuf::from),
    }
}

/// What the service needs.
pub(crate) struct WorkloadApi {
    pub(crate) settings: WorkloadApiSettings,
    pub(crate) registrations: Registrations,
    pub(crate) trust_domain: TrustDomain,
    pub(crate) cluster: String,
    pub(crate) issuer: SharedIssuer,
    pub(crate) bundle: SharedBundle,
}

/// The bundle's roots as the Workload API carries them: DER certificates, concatenated.
fn bundle_der(bundle: &SharedBundle) -> Vec<u8> {
    bundle
        .current()
        .roots()
        .iter()
        .flat_map(|r| r.der.as_ref().to_vec())
        .collect()
}

impl WorkloadApi {
    fn svids(&self, registrations: &[Registration]) -> Result<proto::X509svidResponse, Status> {
        let issuer = self
            .issuer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let bundle = bundle_der(&self.bundle);
        let mut svids = Vec::new();
        for r in registrations {
            let id = SpiffeId::parse(&format!(
                "spiffe://{}/cluster/{}/ns/{}/sa/{}",
                self.trust_domain, self.cluster, r.namespace, r.service_account
            ))
            .map_err(|e| Status::internal(format!("workload identity: {e}")))?;
            let (chain, key) = issue(&issuer, &id, self.settings.svid_lifetime, SystemTime::now())
                .map_err(|e| Status::unavailable(format!("cannot issue an SVID now: {e}")))?;
            svids.push(proto::X509svid {
                spiffe_id: id.to_string(),
                x509_svid: chain.iter().flat_map(|c| c.as_ref().to_vec()).collect(),
                x509_svid_key: key.secret_der().to_vec(),
                bundle: bundle.clone(),
                hint: String::new(),
            });
        }
        Ok(proto::X509svidResponse {
            svids,
            crl: vec![],
            federated_bundles: Default::default(),
        })
    }
}

fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    let header = request.metadata().get("workload.spiffe.io");
    if header.and_then(|v| v.to_str().ok()) != Some("true") {
        return Err(Status::invalid_argument(
            "security header missing from request",
        ));
    }
    let credentials = request
        .extensions()
        .get::<tonic::transport::server::UdsConnectInfo>()
        .and_then(|info| info.peer_cred)
        .ok_or_else(|| Status::permission_denied("no identity issued"))?;
    let path = credentials
        .pid()
        .and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok());
    Ok(Caller {
        uid: credentials.uid(),
        gid: credentials.gid(),
        path,
    })
}

struct Service(Arc<WorkloadApi>);

type Stream<T> = tonic::codegen::BoxStream<T>;

#[tonic::async_trait]
impl proto::spiffe_workload_api_server::SpiffeWorkloadApi for Service {
    async fn fetch_x509svid(
        &self,
        request: Request<proto::X509svidRequest>,
    ) -> Result<Response<Stream<proto::X509svidResponse>>, Status> {
        let caller = caller(&request)?;
        let (version, entries) = self.0.registrations.current();
        let matched: Vec<Registration> = attest::attest(&entries, &caller)
            .into_iter()
            .cloned()
            .collect();
        if matched.is_empty() {
            tracing::info!(uid = caller.uid, gid = caller.gid, path = ?caller.path, "workload API: no registration matches the caller");
            return Err(Status::permission_denied("no identity issued"));
        }
        let api = self.0.clone();
        let half = api.settings.svid_lifetime / 2;
        // Each push: at half the SVID's life, when the bundle changes, or when the
        // registrations do (an identity the caller lost ends the stream).
        let stream = futures_util::stream::unfold(
            Some((None, version, matched)),
            move |state: Option<(
                Option<(tokio::time::Instant, Vec<u8>)>,
                u64,
                Vec<Registration>,
            )>| {
                let (api, caller) = (api.clone(), caller.clone());
                async move {
                    let (sent, mut version, mut matched) = state?;
                    if let Some((at, bundle)) = &sent {
                        let renew = *at + half;
                        loop {
                            let now = tokio::time::Instant::now();
                            if now >= renew || bundle_der(&api.bundle) != *bundle {
                                break;
                            }
                            let (v, entries) = api.registrations.current();
                            if v != version {
                                version = v;
                                let now_matched: Vec<Registration> =
                                    attest::attest(&entries, &caller)
                                        .into_iter()
                                        .cloned()
                                        .collect();
                                if now_matched != matched {
                                    matched = now_matched;
                                    break;
                                }
                            }
                            tokio::time::sleep(BUNDLE_POLL.min(renew - now)).await;
                        }
                    }
                    if matched.is_empty() {
                        tracing::info!(
                            uid = caller.uid,
                            "workload API: the caller's registration is gone; ending its stream"
                        );
                        return Some((Err(Status::permission_denied("no identity issued")), None));
                    }
                    let answer = api.svids(&matched);
                    let next = (tokio::time::Instant::now(), bundle_der(&api.bundle));
                    Some((answer, Some((Some(next), version, matched))))
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<proto::X509BundlesRequest>,
    ) -> Result<Response<Stream<proto::X509BundlesResponse>>, Status> {
        let caller = caller(&request)?;
        if attest::attest(&self.0.registrations.current().1, &caller).is_empty() {
            return Err(Status::permission_denied("no identity issued"));
        }
        let api = self.0.clone();
        let stream = futures_util::stream::unfold(None, move |sent: Option<Vec<u8>>| {
            let api = api.clone();
            async move {
                if let Some(bundle) = &sent {
                    while bundle_der(&api.bundle) == *bundle {
                        tokio::time::sleep(BUNDLE_POLL).await;
                    }
                }
                let bundle = bundle_der(&api.bundle);
                let answer = proto::X509BundlesResponse {
                    crl: vec![],
                    bundles: [(format!("spiffe://{}", api.trust_domain), bundle.clone())].into(),
                };
                Some((Ok(answer), Some(bundle)))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The largest request the API reads. Its requests are empty or name a few audiences;
/// tonic's default (4 MiB) would let any local process make it read megabytes per call.
const MAX_REQUEST: usize = 64 * 1024;

/// Why the Workload API does not start.
#[derive(Debug, thiserror::Error)]
#[error("workload_api.socket {path}: {source}")]
pub struct SocketError {
    /// The socket path.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// Binds the socket (its directory made, a stale socket replaced, open to every local
/// user: the registrations decide) and serves until `stop`.
pub(crate) fn serve(
    api: WorkloadApi,
    base: &Path,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, SocketError> {
    let path = base.join(&api.settings.socket);
    let fail = |source| SocketError {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let listener = tokio::net::UnixListener::bind(&path).map_err(fail)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).map_err(fail)?;
    tracing::info!(socket = %path.display(), configured = api.settings.registrations.len(), "SPIFFE Workload API serving");
    let service =
        proto::spiffe_workload_api_server::SpiffeWorkloadApiServer::new(Service(Arc::new(api)))
            .max_decoding_message_size(MAX_REQUEST);
    Ok(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            // Said outright: the authority rewriter holds back frames up to this size.
            .max_frame_size(u32::try_from(authority::MAX_FRAME).ok())
            .add_service(service)
            .serve_with_incoming_shutdown(
                futures_util::StreamExt::map(
                    tokio_stream::wrappers::UnixListenerStream::new(listener),
                    |accepted| accepted.map(authority::AuthorityFix::new),
                ),
                stop.cancelled_owned(),
            )
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the SPIFFE Workload API stopped");
        }
        let _ = std::fs::remove_file(&path);
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(service_account: &str) -> Registration {
        Registration {
            namespace: "shop".into(),
            service_account: service_account.into(),
            uid: Some(1000),
            gid: None,
            path: None,
        }
    }

    #[test]
    fn open_connections_follow_the_registrations_and_the_bundle() {
        let pki = isthmus_testkit::TestPki::new("mesh.example", &["east"]).unwrap();
        let other = isthmus_testkit::TestPki::new("mesh.example", &["east"]).unwrap();
        let connection = |sa: &str| WorkloadConnection {
            namespace: "shop".into(),
            service_account: sa.into(),
            chain: Arc::new(
                pki.leaf("east", &format!("cluster/east/ns/shop/sa/{sa}"))
                    .unwrap()
                    .chain,
            ),
        };
        let registrations = Registrations::new(vec![registration("frontend"), registration("web")]);
        let parent = CancellationToken::new();
        let frontend = registrations.open(connection("frontend"), parent.child_token());
        let web = registrations.open(connection("web"), parent.child_token());
        // frontend's registration goes: only its connection is cut.
        registrations.replace(vec![registration("web")]);
        assert_eq!(
            frontend.revoked().map(|v| v.rule).as_deref(),
            Some(REGISTRATION_RULE)
        );
        assert!(frontend.cut().is_cancelled());
        assert!(!web.cut().is_cancelled());
        // The same bundle keeps it; a bundle without its root cuts it.
        registrations.recheck_bundle(&pki.bundle().unwrap(), "east");
        assert!(!web.cut().is_cancelled());
        registrations.recheck_bundle(&other.bundle().unwrap(), "east");
        assert_eq!(
            web.revoked().map(|v| v.rule).as_deref(),
            Some(UNTRUSTED_RULE)
        );
        assert!(web.cut().is_cancelled());
    }
}
