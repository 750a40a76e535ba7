//! After the trust bundle changes, connections authenticated under the old bundle are
//! checked again: a peer's chain that no longer verifies (its root was removed) must not
//! keep a connection open. Our own dials are retired gracefully — new streams get a fresh
//! connection, streams in flight finish — and peers' connections to us are closed after a
//! grace period, so that a root rotation done in stages drops no tunnel while a removed
//! root stops being honoured within that period.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use isthmus_ca::TrustBundle;
use isthmus_ca::verify::{ExpectedIdentity, PeerRole, verify_chain};
use rustls_pki_types::CertificateDer;

use crate::gateway::Shared;

/// How long a peer's connection that no longer verifies may finish its streams.
pub const GRACE: Duration = Duration::from_secs(5);

/// Whether the chain `connection`'s peer presented still verifies against `bundle` as a
/// gateway of `cluster` in `role`.
pub(crate) fn still_trusted(
    connection: &quinn::Connection,
    bundle: &TrustBundle,
    cluster: &str,
    role: PeerRole,
) -> bool {
    let Some(certs) = connection
        .peer_identity()
        .and_then(|i| i.downcast::<Vec<CertificateDer<'static>>>().ok())
    else {
        return false;
    };
    let Some((leaf, rest)) = certs.split_first() else {
        return false;
    };
    let now = isthmus_ca::time::unix_seconds(SystemTime::now());
    verify_chain(
        bundle,
        leaf,
        rest,
        now,
        role,
        &ExpectedIdentity::GatewayOf(cluster.to_owned()),
    )
    .is_ok()
}

/// Checks every live peer connection against `bundle`.
pub(crate) async fn recheck(shared: &Arc<Shared>, bundle: &TrustBundle) {
    let (retired, stale) = shared.connections.untrusted(bundle).await;
    if retired > 0 || !stale.is_empty() {
        tracing::warn!(
            retired,
            closing = stale.len(),
            "peer connections authenticated under a root the bundle no longer trusts"
        );
    }
    for (cluster, conn) in stale {
        let cut = shared.tunnels.cut.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(GRACE) => {}
                () = cut.cancelled() => {}
            }
            tracing::info!(%cluster, "closing a peer connection whose root was removed");
            conn.close(3u32.into(), b"certificate no longer trusted");
        });
    }
}
