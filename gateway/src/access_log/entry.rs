//! One access-log line: what a tunnelled connection, an ingress request or an egress
//! decision was, in Envoy's JSON access-log field names where Envoy has one, and ours
//! (`direction`, `source_cluster`, …) for what only a mesh gateway knows. Pure: a value
//! and its JSON; every key is always present (`null` when not known), so log shippers
//! see one schema. The fields are documented in `docs/observability.md`.

use std::time::{Duration, SystemTime};

use serde::Serialize;

/// Which kind of traffic a line is about, seen from the gateway that writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A local client's connection tunnelled to another cluster.
    Outbound,
    /// A peer gateway's stream to a service here.
    Inbound,
    /// A request or connection from outside the mesh.
    Ingress,
    /// A connection to a host outside the mesh.
    Egress,
}

/// The security of the hop the gateway received the traffic on (Istio's
/// `connection_security_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityPolicy {
    /// Both ends authenticated by certificate (the gateway-to-gateway hop).
    MutualTls,
    /// Not mutual TLS (plain TCP from a local app, or server-only TLS).
    None,
    /// The connection ended before it was known.
    Unknown,
}

/// Whether the app's own bytes were TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppTls {
    /// The app spoke TLS end to end; the gateways carried it undecrypted.
    Passthrough,
    /// A gateway terminated the app's TLS (ingress hosts, egress origination).
    Terminated,
    /// The app's bytes were not TLS (or none were seen).
    None,
}

impl AppTls {
    /// From the first byte the client sent: a TLS record of type handshake (22)
    /// starts every TLS connection.
    pub fn sniff(first: Option<u8>) -> Self {
        if first == Some(0x16) {
            Self::Passthrough
        } else {
            Self::None
        }
    }
}

/// Envoy's response flags that apply here, plus `PD` for a policy denial (Envoy's RBAC
/// filter sets none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFlag {
    /// No route: the service is not exported or imported (Envoy `NR`).
    NoRoute,
    /// No healthy endpoint (Envoy `UH`).
    NoHealthyUpstream,
    /// The upstream (peer gateway or endpoint) could not be reached (Envoy `UF`).
    UpstreamConnectionFailure,
    /// A connection limit refused it (Envoy `RL`).
    RateLimited,
    /// The authorization policy denied it (ours).
    PolicyDenied,
    /// The upstream broke the protocol (a bad header or answer; Envoy `UPE`).
    UpstreamProtocolError,
    /// The downstream's bytes were not the protocol expected (Envoy `DPE`).
    DownstreamProtocolError,
    /// The downstream sent nothing usable in time or went away (Envoy `DC`).
    DownstreamConnectionTermination,
    /// The peer gateway's QUIC connection was lost while the connection was open
    /// (Envoy `UC`, upstream connection termination).
    UpstreamConnectionTermination,
    /// Closed after the idle timeout (Envoy `SI`).
    IdleTimeout,
    /// Cut at the drain deadline (ours; Envoy `LR` is the nearest).
    Drained,
}

impl ResponseFlag {
    /// The short code in the `response_flags` field.
    pub fn code(self) -> &'static str {
        match self {
            Self::NoRoute => "NR",
            Self::NoHealthyUpstream => "UH",
            Self::UpstreamConnectionFailure => "UF",
            Self::RateLimited => "RL",
            Self::PolicyDenied => "PD",
            Self::UpstreamProtocolError => "UPE",
            Self::DownstreamProtocolError => "DPE",
            Self::DownstreamConnectionTermination => "DC",
            Self::UpstreamConnectionTermination => "UC",
            Self::IdleTimeout => "SI",
            Self::Drained => "LR",
        }
    }

    /// The flag of a local refusal's status label (the `status` of
    /// `isthmus_gateway_stream_refusals_total`).
    pub fn of_label(status: &str) -> Self {
        match status {
            "unknown_service" | "unknown_host" => Self::NoRoute,
            "no_healthy_endpoint" => Self::NoHealthyUpstream,
            "denied" | "unclaimed_host" => Self::PolicyDenied,
            "rate_limited" => Self::RateLimited,
            "bad_client_hello" | "bad_request" => Self::DownstreamProtocolError,
            "unavailable" | "peer_unavailable" => Self::UpstreamConnectionFailure,
            _ => Self::UpstreamProtocolError,
        }
    }

    /// The flag of a refusal a gateway answered with.
    pub fn of_status(status: crate::header::Status) -> Option<Self> {
        use crate::header::Status;
        Some(match status {
            Status::Ok => return None,
            Status::Denied => Self::PolicyDenied,
            Status::UnknownService => Self::NoRoute,
            Status::NoHealthyEndpoint => Self::NoHealthyUpstream,
            Status::RateLimited => Self::RateLimited,
            Status::UnsupportedVersion | Status::Error => Self::UpstreamProtocolError,
        })
    }
}

/// One line. Built by the IO layer as a connection or request ends.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// When the connection or request began (RFC 3339, UTC, milliseconds).
    #[serde(serialize_with = "rfc3339")]
    pub start_time: SystemTime,
    /// How long it lasted, in milliseconds.
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    /// Bytes sent to the downstream (the client of this hop).
    pub bytes_sent: u64,
    /// Bytes received from the downstream.
    pub bytes_received: u64,
    /// `tcp`, `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    /// The HTTP status answered (HTTP only).
    pub response_code: Option<u16>,
    /// The flags, comma-separated, or `-` when none.
    #[serde(serialize_with = "flags")]
    pub response_flags: Vec<ResponseFlag>,
    /// The endpoint or peer gateway the traffic went to.
    pub upstream_host: Option<String>,
    /// The cluster of the upstream.
    pub upstream_cluster: Option<String>,
    /// The client of this hop (an app, a peer gateway, an outside client).
    pub downstream_remote_address: Option<String>,
    /// The listener address it arrived on.
    pub downstream_local_address: Option<String>,
    /// The TLS server name the client asked for.
    pub requested_server_name: Option<String>,
    /// The tunnel's request id (the same on both gateways), or the ingress request's.
    pub request_id: Option<String>,
    /// HTTP authority (HTTP only).
    pub authority: Option<String>,
    /// HTTP method (HTTP only).
    pub method: Option<String>,
    /// HTTP path (HTTP only).
    pub path: Option<String>,
    /// HTTP user agent (HTTP only).
    pub user_agent: Option<String>,
    /// Why the upstream could not be reached, when it could not.
    pub upstream_transport_failure_reason: Option<String>,
    /// Which kind of traffic.
    pub direction: Direction,
    /// The cluster the traffic came from.
    pub source_cluster: Option<String>,
    /// The SPIFFE ID the traffic came from, as verified on the hop.
    pub source_principal: Option<String>,
    /// `<service>.<namespace>`, or the external host for egress.
    pub destination_service: Option<String>,
    /// The cluster that serves it.
    pub destination_cluster: Option<String>,
    /// The security of the hop the traffic arrived on (Istio's field).
    pub connection_security_policy: SecurityPolicy,
    /// Whether the app's bytes were TLS.
    pub app_tls: AppTls,
    /// `allow`, `deny`, `shadow_deny`, `shadow_allow` or `rate_limited` where this
    /// gateway decided; `deny` and `rate_limited` also where a peer refused.
    pub policy_decision: Option<String>,
    /// The deciding rule (`policy/rule`, `default-deny`, …) where this gateway decided.
    pub policy_rule: Option<String>,
    /// Why the connection was refused, as the refusing gateway said it (on the sending
    /// side, the peer's answer, which names the rule).
    pub refusal_reason: Option<String>,
    /// The W3C trace id, when the connection was traced.
    pub trace_id: Option<String>,
    /// The span of this gateway's part, when traced.
    pub span_id: Option<String>,
}

impl Entry {
    /// A line of `direction` that began at `start_time`, with nothing else known yet.
    pub fn new(direction: Direction, start_time: SystemTime) -> Self {
        Self {
            start_time,
            duration: Duration::ZERO,
            bytes_sent: 0,
            bytes_received: 0,
            protocol: "tcp",
            response_code: None,
            response_flags: Vec::new(),
            upstream_host: None,
            upstream_cluster: None,
            downstream_remote_address: None,
            downstream_local_address: None,
            requested_server_name: None,
            request_id: None,
            authority: None,
            method: None,
            path: None,
            user_agent: None,
            upstream_transport_failure_reason: None,
            direction,
            source_cluster: None,
            source_principal: None,
            destination_service: None,
            destination_cluster: None,
            connection_security_policy: SecurityPolicy::Unknown,
            app_tls: AppTls::None,
            policy_decision: None,
            policy_rule: None,
            refusal_reason: None,
            trace_id: None,
            span_id: None,
        }
    }

    /// Whether the line is about traffic that was admitted and carried without a fault:
    /// only those are sampled away.
    pub fn is_clean(&self) -> bool {
        self.response_flags.is_empty()
            && self.upstream_transport_failure_reason.is_none()
            && self
                .response_code
                .is_none_or(|c| c < 500 && c != 403 && c != 429)
    }

    /// Sets `policy_decision` and `policy_rule` from the policy's verdict: `allow` or
    /// `deny` by the deciding rule, or — when a shadow rule would have decided
    /// otherwise — `shadow_deny` / `shadow_allow` naming the shadow rule, the finding an
    /// operator looks for before enforcing it.
    pub fn decided(&mut self, verdict: &crate::authz::Verdict) {
        let (decision, rule) = match (&verdict.shadow, verdict.allowed) {
            (Some(shadow), true) => ("shadow_deny", shadow),
            (Some(shadow), false) => ("shadow_allow", shadow),
            (None, true) => ("allow", &verdict.rule),
            (None, false) => ("deny", &verdict.rule),
        };
        self.policy_decision = Some(decision.to_owned());
        self.policy_rule = Some(rule.clone());
    }

    /// Marks an open connection cut because what admitted it no longer holds:
    /// `policy_revoked` by `rule`.
    pub fn revoked(&mut self, rule: String) {
        self.response_flags.push(ResponseFlag::PolicyDenied);
        self.policy_decision = Some("policy_revoked".into());
        self.policy_rule = Some(rule);
    }

    /// Sets `duration` from `began`, and the response flags of how a splice ended.
    pub fn ended(&mut self, began: std::time::Instant, summary: Option<&crate::splice::Summary>) {
        self.duration = began.elapsed();
        if let Some(summary) = summary {
            if summary.idle_timeout {
                self.response_flags.push(ResponseFlag::IdleTimeout);
            }
            if summary.cut {
                self.response_flags.push(ResponseFlag::Drained);
            }
            if summary.peer_lost() {
                // The lost side is the peer gateway: upstream when this gateway sent
                // the stream, downstream when it received it.
                self.response_flags.push(match self.direction {
                    Direction::Inbound => ResponseFlag::DownstreamConnectionTermination,
                    _ => ResponseFlag::UpstreamConnectionTermination,
                });
            }
        }
    }

    /// The JSON line, newline included.
    pub fn to_line(&self) -> String {
        // Serializing plain strings, numbers and enums into a String cannot fail.
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// The request id as written in both gateways' lines.
pub fn request_id(id: u64) -> String {
    format!("{id:016x}")
}

fn rfc3339<S: serde::Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let nanos = i128::from(since.as_millis() as i64) * 1_000_000;
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let text = at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn flags<S: serde::Serializer>(flags: &[ResponseFlag], s: S) -> Result<S::Ok, S::Error> {
    if flags.is_empty() {
        return s.serialize_str("-");
    }
    let codes: Vec<&str> = flags.iter().map(|f| f.code()).collect();
    s.serialize_str(&codes.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_present_with_envoy_spellings() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_633_600_123);
        let mut entry = Entry::new(Direction::Inbound, start);
        entry.duration = Duration::from_micros(12_345);
        entry.response_flags = vec![ResponseFlag::NoHealthyUpstream, ResponseFlag::IdleTimeout];
        entry.request_id = Some(request_id(0xabc));
        let value: serde_json::Value =
            serde_json::from_str(entry.to_line().trim_end()).expect("a JSON line");
        assert_eq!(value["start_time"], "2025-12-02T00:00:00.123Z");
        assert_eq!(value["duration"], 12);
        assert_eq!(value["response_flags"], "UH,SI");
        assert_eq!(value["request_id"], "0000000000000abc");
        assert_eq!(value["direction"], "inbound");
        assert_eq!(value["connection_security_policy"], "unknown");
        assert_eq!(value["app_tls"], "none");
        assert!(value["trace_id"].is_null());
        let keys = value.as_object().map_or(0, |o| o.len());
        assert_eq!(keys, 30, "{value}");
        assert!(!entry.to_line().trim_end().contains('\n'));
    }

    #[test]
    fn flags_read_dash_when_none_and_only_faults_are_not_clean() {
        let mut entry = Entry::new(Direction::Ingress, SystemTime::UNIX_EPOCH);
        let value: serde_json::Value = serde_json::from_str(&entry.to_line()).expect("a JSON line");
        assert_eq!(value["response_flags"], "-");
        assert!(entry.is_clean());
        entry.response_code = Some(404);
        assert!(entry.is_clean());
        entry.response_code = Some(403);
        assert!(!entry.is_clean());
        entry.response_code = Some(200);
        entry.response_flags.push(ResponseFlag::PolicyDenied);
        assert!(!entry.is_clean());
    }

    #[test]
    fn a_tls_handshake_record_is_app_tls() {
        assert_eq!(AppTls::sniff(Some(0x16)), AppTls::Passthrough);
        assert_eq!(AppTls::sniff(Some(b'G')), AppTls::None);
        assert_eq!(AppTls::sniff(None), AppTls::None);
    }
}
