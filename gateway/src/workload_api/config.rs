//! The `[workload_api]` section of a member gateway's config: where the SPIFFE Workload
//! API listens, how long SVIDs live, and who gets which identity (registrations matched
//! on the caller's Unix credentials, like SPIRE's unix attestor).

use std::path::PathBuf;
use std::time::Duration;

use isthmus_config::{FieldProblem, HumanDuration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::attest::Registration;

/// The Workload API as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadApiSection {
    /// The Unix socket workloads connect to (relative to the config file); its
    /// directory is created. Point SPIFFE_ENDPOINT_SOCKET at `unix://<absolute path>`.
    pub socket: PathBuf,
    /// Lifetime of the X.509-SVIDs issued (default 1h, at least 10s); each is pushed
    /// again on the stream at half its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svid_lifetime: Option<HumanDuration>,
    /// TCP address of the workload mTLS listener: workloads present their SVID there
    /// and name the imported service as the TLS server name
    /// (`<svc>.<ns>.svc.clusterset.local`, or `<port>.<svc>.<ns>.svc.clusterset.local`
    /// when several of its ports are imported); their identity is carried to the
    /// exporting cluster. None by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls_listen: Option<std::net::SocketAddr>,
    /// Who gets an identity: each entry gives `ns/<namespace>/sa/<service_account>` of
    /// this cluster to callers matching all of its selectors.
    #[serde(default)]
    pub registrations: Vec<RegistrationEntry>,
}

/// One registration as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistrationEntry {
    /// The workload's namespace.
    pub namespace: String,
    /// Its service account.
    pub service_account: String,
    /// The caller's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The caller's group id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// The caller's executable (absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// The validated Workload API.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadApiSettings {
    /// The socket (relative to the config file).
    pub socket: PathBuf,
    /// SVID lifetime.
    pub svid_lifetime: Duration,
    /// The workload mTLS listener's address, when there is one.
    pub mtls_listen: Option<std::net::SocketAddr>,
    /// The registrations.
    pub registrations: Vec<Registration>,
}

/// Unix sockets take paths this long at most (`sun_path`, with its terminator).
const MAX_SOCKET_PATH: usize = 107;

impl WorkloadApiSection {
    /// Checks the section, naming each bad field.
    pub fn validate(&self, problems: &mut Vec<FieldProblem>) -> WorkloadApiSettings {
        if self.socket.as_os_str().is_empty() {
            problems.push(FieldProblem::new(
                "workload_api.socket",
                "empty",
                "a path for the Unix socket",
            ));
        } else if self.socket.as_os_str().len() > MAX_SOCKET_PATH {
            problems.push(FieldProblem::new(
                "workload_api.socket",
                self.socket.display(),
                format!("at most {MAX_SOCKET_PATH} bytes (a Unix socket path)"),
            ));
        }
        let svid_lifetime = self
            .svid_lifetime
            .map_or(Duration::from_secs(3600), |d| d.0);
        if svid_lifetime < Duration::from_secs(10) {
            problems.push(FieldProblem::new(
                "workload_api.svid_lifetime",
                format!("{svid_lifetime:?}"),
                "at least 10s (an SVID is renewed at half its life)",
            ));
        }
        let mut registrations = Vec::new();
        for (i, r) in self.registrations.iter().enumerate() {
            let at = |f: &str| format!("workload_api.registrations[{i}].{f}");
            for (field, value) in [
                ("namespace", &r.namespace),
                ("service_account", &r.service_account),
            ] {
                if let Err(e) = isthmus_federation_api::validate::name(field, value) {
                    problems.push(FieldProblem::new(at(field), value, e.to_string()));
                }
            }
            if r.uid.is_none() && r.gid.is_none() && r.path.is_none() {
                problems.push(FieldProblem::new(
                    at("uid"),
                    "no selector",
                    "at least one of uid, gid and path: a registration without one would give its identity to every local process",
                ));
            }
            if let Some(path) = &r.path
                && !path.is_absolute()
            {
                problems.push(FieldProblem::new(
                    at("path"),
                    path.display(),
                    "an absolute path to the executable",
                ));
            }
            registrations.push(Registration {
                namespace: r.namespace.clone(),
                service_account: r.service_account.clone(),
                uid: r.uid,
                gid: r.gid,
                path: r.path.clone(),
            });
        }
        WorkloadApiSettings {
            socket: self.socket.clone(),
            svid_lifetime,
            mtls_listen: self.mtls_listen,
            registrations,
        }
    }
}
