//! A staged root rotation of a [`DevMesh`], A → A+B → B, the procedure of
//! docs/federation.md done through the admin API: written once for the mesh test that
//! checks it and the soak that runs it under load.

use std::time::{Duration, SystemTime};

use isthmus_ca::{Authority, TrustDomain};
use isthmus_federation_api::model::{Cluster, Expect, TrustBundleDoc};
use isthmus_federation_api::request::{PutCluster, SetTrustBundle};
use isthmus_federation_api::status::Consistency;

use crate::mesh::{ADMIN_ID, DevMesh, DevMeshError};
use crate::pki::issue;
use crate::wait::until;

const DAY: Duration = Duration::from_secs(86_400);

fn bundle(td: &TrustDomain, roots: String, retired: String) -> SetTrustBundle {
    SetTrustBundle {
        bundle: TrustBundleDoc {
            trust_domain: td.to_string(),
            roots_pem: roots,
            retired_pem: retired,
            revision: 0,
        },
        expect: Expect::Any,
    }
}

/// Bundle updates each gateway has applied.
fn updates(mesh: &DevMesh) -> Vec<u64> {
    mesh.members
        .values()
        .map(|m| m.metrics().bundle_updates.get())
        .collect()
}

fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> DevMeshError + '_ {
    move |e| DevMeshError(format!("{what}: {e}"))
}

impl DevMesh {
    /// Rotates the mesh's root to `new_root` in stages, and returns the old root:
    /// [`Self::stage_root`] then [`Self::retire_root`].
    pub async fn rotate_root(&mut self, new_root: Authority) -> Result<Authority, DevMeshError> {
        self.stage_root(&new_root).await?;
        self.retire_root(new_root).await
    }

    /// The first three stages of a rotation to `new_root`:
    ///
    /// 1. every node and gateway trusts both roots (the bundle A+B);
    /// 2. the federation nodes move to certificates from B, one at a time, each caught
    ///    up before the next;
    /// 3. every cluster's intermediate is re-signed by B for its own key (the gateways
    ///    adopt it, reissue their leaves and dial new connections under them), and the
    ///    mesh's admin certificate is reissued from B.
    ///
    /// Each stage waits until it has reached everything it must.
    pub async fn stage_root(&mut self, new_root: &Authority) -> Result<(), DevMeshError> {
        let td = self.trust_domain.clone();
        let a = self.root.cert_chain_pem();
        let b = new_root.cert_chain_pem();
        // Stage 1: A+B everywhere.
        let before = updates(self);
        let staged = self
            .client()?
            .set_trust_bundle(bundle(&td, format!("{a}{b}"), String::new()))
            .await
            .map_err(err("setting the A+B bundle"))?
            .revision;
        until("every gateway trusts A+B", || {
            let now = updates(self);
            std::future::ready(now.iter().zip(&before).all(|(n, b)| n > b))
        })
        .await?;
        // Every node must trust B before any node presents a certificate from B: a
        // write is acknowledged once a majority has it, and a node still without A+B
        // would refuse its peers' new certificates and never catch up.
        for i in 0..self.nodes.len() {
            let node = self.node_client(i)?;
            until("every node applies the A+B bundle", || async {
                node.status(Consistency::Stale)
                    .await
                    .is_ok_and(|s| s.revision >= staged)
            })
            .await?;
        }

        // Stage 2: the nodes move to certificates from B, one at a time.
        self.write_bundle_file(&format!("{a}{b}"))?;
        for i in 0..self.nodes.len() {
            self.reissue_node(i, new_root)?;
            self.stop_node(i).await;
            self.start_node(i).await?;
            let target = self
                .client()?
                .status(Consistency::Linearizable)
                .await
                .map_err(err("status after a node restart"))?
                .revision;
            let node = self.node_client(i)?;
            until(&format!("restarted node {} catches up", i + 1), || async {
                node.status(Consistency::Stale)
                    .await
                    .is_ok_and(|s| s.revision >= target && s.leader_id.is_some())
            })
            .await?;
        }

        // Stage 3: issue from B. The clusters' intermediates, re-signed for their keys.
        let renewals = |mesh: &DevMesh| -> Vec<u64> {
            mesh.members
                .values()
                .map(|m| m.metrics().certificate_renewals.get())
                .collect()
        };
        let before = renewals(self);
        let clusters: Vec<String> = self.members.keys().cloned().collect();
        for cluster in &clusters {
            let client = self.client()?;
            let current = client
                .cluster(cluster, Consistency::Linearizable)
                .await
                .map_err(err(&format!("reading cluster {cluster}")))?;
            let pem = current
                .intermediate_pem
                .as_deref()
                .ok_or_else(|| DevMeshError(format!("cluster {cluster} has no intermediate")))?;
            let der = isthmus_ca::pem::certs_from_pem(pem).map_err(err("intermediate PEM"))?;
            let first = der
                .first()
                .ok_or_else(|| DevMeshError(format!("cluster {cluster}: empty intermediate")))?;
            let resigned = new_root
                .resign_cluster_intermediate(first, cluster, 30 * DAY, SystemTime::now())
                .map_err(err("re-signing an intermediate"))?;
            let updated = Cluster {
                intermediate_pem: Some(isthmus_ca::pem::certs_to_pem([&resigned])),
                ..current.clone()
            };
            client
                .put_cluster(PutCluster {
                    cluster: updated,
                    expect: Expect::Revision(current.revision),
                })
                .await
                .map_err(err(&format!("writing cluster {cluster}")))?;
        }
        until("every gateway issues from B", || {
            let now = renewals(self);
            std::future::ready(now.iter().zip(&before).all(|(n, b)| n > b))
        })
        .await?;
        // The mesh's admin certificate, from B too, so that it still works after A goes.
        let ops = new_root
            .new_cluster_intermediate(
                "ops",
                isthmus_ca::KeyAlgorithm::EcdsaP256,
                30 * DAY,
                SystemTime::now(),
            )
            .map_err(err("ops intermediate from B"))?;
        let admin = issue(&ops, ADMIN_ID, &[], 7 * DAY)?;
        self.write_file("admin.pem", &admin.chain_pem())?;
        self.write_file("admin.key", &admin.key_pem())?;

        Ok(())
    }

    /// The last stage: the old root is removed (kept as retired) and `new_root` becomes
    /// the mesh's; returns the old one. Peers' connections authenticated under it are
    /// closed by the gateways after their grace period
    /// (`isthmus_gateway::recheck::GRACE`), not by this call.
    pub async fn retire_root(&mut self, new_root: Authority) -> Result<Authority, DevMeshError> {
        let a = self.root.cert_chain_pem();
        let b = new_root.cert_chain_pem();
        let before = updates(self);
        self.client()?
            .set_trust_bundle(bundle(&self.trust_domain, b.clone(), a))
            .await
            .map_err(err("setting the B bundle"))?;
        until("every gateway trusts B only", || {
            let now = updates(self);
            std::future::ready(now.iter().zip(&before).all(|(n, b)| n > b))
        })
        .await?;
        self.write_bundle_file(&b)?;
        self.write_file("root.key", &new_root.key_pem())?;
        Ok(std::mem::replace(&mut self.root, new_root))
    }
}
