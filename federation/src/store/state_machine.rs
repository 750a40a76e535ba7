//! The replicated catalog: applied from the Raft log into sled (objects, metadata and
//! a bounded history of watch events, written in one atomic batch per apply) and
//! mirrored in memory for reads. Snapshots are the whole catalog as JSON.
//!
//! Stored records carry the data model's version (`model_version`; absent means 1). A
//! data directory of an older readable model is brought up to this one when it opens:
//! its objects and watch history are rewritten in the new form in one batch. Snapshots
//! and log entries of an older model are read as they are (see `model::Policy`).

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use isthmus_federation_api::claims::Claim;
use isthmus_federation_api::model::{
    CatalogState, Cluster, MODEL_VERSION, OLDEST_READABLE_MODEL, Policy, RevisionEvents,
    ServiceExport, TrustBundleDoc,
};
use isthmus_federation_api::registration::Registration;

use super::{StoreError, corrupt};
use crate::command::apply;
use crate::raft::{NodeId, NodeInfo, Response, TypeConfig};

const META: &[u8] = b"meta";
/// The data model the records are in; absent in data directories of model 1.
const MODEL: &[u8] = b"model_version";
/// The current snapshot: its metadata and data under one key, so that a reader never
/// pairs one snapshot's metadata with another's data.
const SNAPSHOT: &[u8] = b"snapshot";

/// What the state machine records besides the objects.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, NodeInfo>,
    /// Events of every revision above this one are kept.
    history_start: u64,
}

/// The catalog as a snapshot carries it.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotBody {
    model_version: u32,
    revision: u64,
    clusters: Vec<Cluster>,
    exports: Vec<ServiceExport>,
    trust_bundle: Option<TrustBundleDoc>,
    policies: Vec<Policy>,
    #[serde(default)]
    claims: Vec<Claim>,
    #[serde(default)]
    registrations: Vec<Registration>,
}

impl SnapshotBody {
    fn of(state: &CatalogState) -> Self {
        Self {
            model_version: MODEL_VERSION,
            revision: state.revision,
            clusters: state.clusters.values().cloned().collect(),
            exports: state.exports.values().cloned().collect(),
            trust_bundle: state.trust_bundle.clone(),
            policies: state.policies.values().cloned().collect(),
            claims: state.claims.values().cloned().collect(),
            registrations: state.registrations.values().cloned().collect(),
        }
    }

    fn into_state(self) -> CatalogState {
        CatalogState {
            revision: self.revision,
            clusters: self
                .clusters
                .into_iter()
                .map(|c| (c.name.clone(), c))
                .collect(),
            exports: self.exports.into_iter().map(|e| (e.key(), e)).collect(),
            trust_bundle: self.trust_bundle,
            policies: self
                .policies
                .into_iter()
                .map(|p| (p.name.clone(), p))
                .collect(),
            claims: self
                .claims
                .into_iter()
                .map(|c| (c.host.clone(), c))
                .collect(),
            registrations: self
                .registrations
                .into_iter()
                .map(|r| (r.name.clone(), r))
                .collect(),
        }
    }
}

/// The in-memory mirror shared with readers.
#[derive(Debug)]
struct Mirror {
    catalog: CatalogState,
    meta: Meta,
}

#[derive(Debug)]
struct Shared {
    mirror: RwLock<Mirror>,
    revision: watch::Sender<u64>,
    tree: sled::Tree,
}

/// The replicated catalog of one node (openraft's state machine).
#[derive(Debug, Clone)]
pub struct StateMachine {
    db: sled::Db,
    tree: sled::Tree,
    snapshots: sled::Tree,
    history: u64,
    shared: Arc<Shared>,
    /// Serialises storing and reading the snapshot record.
    snapshot_lock: Arc<tokio::sync::Mutex<()>>,
}

/// A read-only handle on the applied catalog, for the service layer and watchers.
#[derive(Debug, Clone)]
pub struct CatalogView {
    shared: Arc<Shared>,
}

/// Where a watcher resumes.
#[derive(Debug)]
pub enum WatchFrom {
    /// These revisions, in order, follow the one asked for; more may come.
    Events(Vec<RevisionEvents>),
    /// The history no longer reaches back that far: start over from this full state.
    Snapshot(CatalogState),
}

fn object_key(kind: &str, parts: &[&str]) -> Vec<u8> {
    // NUL cannot occur in names (DNS-1123), so it separates parts unambiguously.
    let mut key = format!("obj\0{kind}");
    for part in parts {
        key.push('\0');
        key.push_str(part);
    }
    key.into_bytes()
}

fn event_key(revision: u64) -> Vec<u8> {
    let mut key = b"ev\0".to_vec();
    key.extend_from_slice(&revision.to_be_bytes());
    key
}

fn sm_write(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

fn sm_read(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&e).into()
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError<NodeId>> {
    serde_json::to_vec(value).map_err(sm_write)
}

impl StateMachine {
    pub(super) fn open(db: &sled::Db, history: u64) -> Result<Self, StoreError> {
        let tree = db.open_tree("catalog")?;
        let snapshots = db.open_tree("snapshot")?;
        let mut catalog = CatalogState::default();
        let mut meta = Meta::default();
        for item in tree.scan_prefix(b"obj\0") {
            let (key, value) = item?;
            let name = String::from_utf8_lossy(&key).replace('\0', "/");
            let bad = |e: serde_json::Error| corrupt(&name, e);
            match key.get(4) {
                Some(b'c') => {
                    let c: Cluster = serde_json::from_slice(&value).map_err(bad)?;
                    catalog.clusters.insert(c.name.clone(), c);
                }
                Some(b'e') => {
                    let e: ServiceExport = serde_json::from_slice(&value).map_err(bad)?;
                    catalog.exports.insert(e.key(), e);
                }
                Some(b'b') => {
                    catalog.trust_bundle = Some(serde_json::from_slice(&value).map_err(bad)?)
                }
                Some(b'p') => {
                    let p: Policy = serde_json::from_slice(&value).map_err(bad)?;
                    catalog.policies.insert(p.name.clone(), p);
                }
                Some(b'h') => {
                    let c: Claim = serde_json::from_slice(&value).map_err(bad)?;
                    catalog.claims.insert(c.host.clone(), c);
                }
                Some(b'w') => {
                    let r: Registration = serde_json::from_slice(&value).map_err(bad)?;
                    catalog.registrations.insert(r.name.clone(), r);
                }
                _ => return Err(corrupt(name, "unknown object kind")),
            }
        }
        if let Some(bytes) = tree.get(META)? {
            meta = serde_json::from_slice(&bytes).map_err(|e| corrupt("meta", e))?;
        }
        if let Some(bytes) = tree.get(b"revision")? {
            catalog.revision =
                serde_json::from_slice(&bytes).map_err(|e| corrupt("revision", e))?;
        }
        let fresh = tree.is_empty();
        let model = match tree.get(MODEL)? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| corrupt("model_version", e))?
            }
            // A store with records but no version is of model 1; an empty one is new.
            None if fresh => MODEL_VERSION,
            None => 1,
        };
        if fresh {
            tree.insert(MODEL, json_bytes(&MODEL_VERSION)?)?;
        }
        if !(OLDEST_READABLE_MODEL..=MODEL_VERSION).contains(&model) {
            return Err(corrupt(
                "model_version",
                format!(
                    "the data directory holds data model {model}; this node reads models {OLDEST_READABLE_MODEL} to {MODEL_VERSION}: run a release that reads it"
                ),
            ));
        }
        if model < MODEL_VERSION {
            upgrade(db, &tree, &catalog, model)?;
        }
        let (revision, _) = watch::channel(catalog.revision);
        Ok(Self {
            db: db.clone(),
            tree: tree.clone(),
            snapshots,
            history: history.max(1),
            snapshot_lock: Arc::new(tokio::sync::Mutex::new(())),
            shared: Arc::new(Shared {
                mirror: RwLock::new(Mirror { catalog, meta }),
                revision,
                tree,
            }),
        })
    }

    /// The data model of the records in this store (always this release's once open).
    pub fn model_version(&self) -> Result<u32, StoreError> {
        match self.tree.get(MODEL)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| corrupt("model_version", e)),
            None => Ok(1),
        }
    }

    /// A read handle on this state machine.
    pub fn view(&self) -> CatalogView {
        CatalogView {
            shared: self.shared.clone(),
        }
    }

    fn write_objects(
        batch: &mut sled::Batch,
        state: &CatalogState,
    ) -> Result<(), StorageError<NodeId>> {
        for c in state.clusters.values() {
            batch.insert(object_key("c", &[&c.name]), json(c)?);
        }
        for e in state.exports.values() {
            batch.insert(
                object_key("e", &[&e.cluster, &e.namespace, &e.name]),
                json(e)?,
            );
        }
        if let Some(b) = &state.trust_bundle {
            batch.insert(object_key("b", &[]), json(b)?);
        }
        for p in state.policies.values() {
            batch.insert(object_key("p", &[&p.name]), json(p)?);
        }
        for c in state.claims.values() {
            batch.insert(object_key("h", &[&c.host]), json(c)?);
        }
        for r in state.registrations.values() {
            batch.insert(object_key("w", &[&r.name]), json(r)?);
        }
        batch.insert(b"revision".as_slice(), json(&state.revision)?);
        batch.insert(MODEL, json(&MODEL_VERSION)?);
        Ok(())
    }

    fn record_event(
        batch: &mut sled::Batch,
        events: &RevisionEvents,
    ) -> Result<(), StorageError<NodeId>> {
        use isthmus_federation_api::model::Event;
        for event in &events.events {
            match event {
                Event::ClusterPut { cluster } => {
                    batch.insert(object_key("c", &[&cluster.name]), json(cluster)?)
                }
                Event::ClusterDeleted { name } => batch.remove(object_key("c", &[name])),
                Event::ExportPut { export } => batch.insert(
                    object_key("e", &[&export.cluster, &export.namespace, &export.name]),
                    json(export)?,
                ),
                Event::ExportDeleted {
                    cluster,
                    namespace,
                    name,
                } => batch.remove(object_key("e", &[cluster, namespace, name])),
                Event::TrustBundleSet { trust_bundle } => {
                    batch.insert(object_key("b", &[]), json(trust_bundle)?)
                }
                Event::PolicyPut { policy } => {
                    batch.insert(object_key("p", &[&policy.name]), json(policy)?)
                }
                Event::PolicyDeleted { name } => batch.remove(object_key("p", &[name])),
                Event::ClaimPut { claim } => {
                    batch.insert(object_key("h", &[&claim.host]), json(claim)?)
                }
                Event::ClaimDeleted { host } => batch.remove(object_key("h", &[host])),
                Event::RegistrationPut { registration } => {
                    batch.insert(object_key("w", &[&registration.name]), json(registration)?)
                }
                Event::RegistrationDeleted { name } => batch.remove(object_key("w", &[name])),
            }
        }
        batch.insert(event_key(events.revision), json(events)?);
        batch.insert(b"revision".as_slice(), json(&events.revision)?);
        Ok(())
    }
}

impl CatalogView {
    /// Runs `f` on the applied catalog.
    pub fn read<T>(&self, f: impl FnOnce(&CatalogState) -> T) -> T {
        f(&self.mirror().catalog)
    }

    fn mirror(&self) -> RwLockReadGuard<'_, Mirror> {
        // A panic while holding the lock cannot leave a half-applied mirror: the mirror
        // is replaced only after the batch is durable in sled, in one assignment.
        self.shared.mirror.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The revision applied so far.
    pub fn revision(&self) -> u64 {
        *self.shared.revision.borrow()
    }

    /// Index of the last applied log entry.
    pub fn last_applied_index(&self) -> Option<u64> {
        self.mirror().meta.last_applied.map(|l| l.index)
    }

    /// A receiver that changes whenever the revision does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.revision.subscribe()
    }

    /// What a watcher that has seen everything up to `after` needs next, up to `limit`
    /// revisions.
    pub fn since(&self, after: u64, limit: usize) -> Result<WatchFrom, StoreError> {
        let mirror = self.mirror();
        if after < mirror.meta.history_start {
            return Ok(WatchFrom::Snapshot(mirror.catalog.clone()));
        }
        let current = mirror.catalog.revision;
        drop(mirror);
        let mut out = Vec::new();
        let range = event_key(after.saturating_add(1))..=event_key(current);
        for item in self.shared.tree.range(range).take(limit) {
            let (key, value) = item?;
            let events: RevisionEvents =
                serde_json::from_slice(&value).map_err(|e| corrupt(format!("event {key:?}"), e))?;
            out.push(events);
        }
        // History may have been trimmed between the check and the read.
        match out.first() {
            Some(first) if first.revision != after + 1 => {
                Ok(WatchFrom::Snapshot(self.mirror().catalog.clone()))
            }
            None if current > after => Ok(WatchFrom::Snapshot(self.mirror().catalog.clone())),
            _ => Ok(WatchFrom::Events(out)),
        }
    }

    /// The oldest revision a watcher may resume after without a snapshot.
    pub fn history_start(&self) -> u64 {
        self.mirror().meta.history_start
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeInfo>), StorageError<NodeId>>
    {
        let mirror = self.view();
        let mirror = mirror.mirror();
        Ok((mirror.meta.last_applied, mirror.meta.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Applied in place under the write lock (readers wait microseconds): cloning the
        // catalog per batch would make every write cost as much as the whole catalog.
        let mut mirror = self
            .shared
            .mirror
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let Mirror { catalog, meta } = &mut *mirror;
        let mut batch = sled::Batch::default();
        let mut responses = Vec::new();
        for entry in entries {
            meta.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Response::Internal,
                EntryPayload::Membership(membership) => {
                    meta.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Response::Internal
                }
                EntryPayload::Normal(request) => {
                    let mut results = Vec::with_capacity(request.commands.len());
                    for command in request.commands {
                        results.push(match apply(catalog, command) {
                            Ok((revision, events)) => {
                                Self::record_event(
                                    &mut batch,
                                    &RevisionEvents { revision, events },
                                )?;
                                Ok(revision)
                            }
                            Err(rejection) => Err(rejection),
                        });
                    }
                    Response::Applied(results)
                }
            };
            responses.push(response);
        }
        let keep_from = catalog.revision.saturating_sub(self.history);
        for revision in meta.history_start.saturating_add(1)..=keep_from {
            batch.remove(event_key(revision));
        }
        meta.history_start = meta.history_start.max(keep_from);
        batch.insert(META, json(&*meta)?);
        // A failed write here is fatal for this node (openraft stops it), so the mirror
        // being ahead of sled cannot be observed by a later apply.
        self.tree.apply_batch(batch).map_err(sm_write)?;
        let revision = catalog.revision;
        drop(mirror);
        self.shared.revision.send_replace(revision);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let body: SnapshotBody = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        if !(OLDEST_READABLE_MODEL..=MODEL_VERSION).contains(&body.model_version) {
            let message = format!(
                "snapshot has data model {}, this node reads {OLDEST_READABLE_MODEL} to {MODEL_VERSION}: upgrade this node first",
                body.model_version,
            );
            let error = openraft::AnyError::error(message);
            return Err(StorageIOError::read_snapshot(Some(meta.signature()), error).into());
        }
        let catalog = body.into_state();
        let new_meta = Meta {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            history_start: catalog.revision,
        };
        let mut batch = sled::Batch::default();
        for key in self.tree.iter().keys() {
            batch.remove(key.map_err(sm_read)?);
        }
        Self::write_objects(&mut batch, &catalog)?;
        batch.insert(META, json(&new_meta)?);
        self.tree.apply_batch(batch).map_err(sm_write)?;
        self.store_snapshot(meta, &data, true).await?;
        let revision = catalog.revision;
        {
            let mut mirror = self
                .shared
                .mirror
                .write()
                .unwrap_or_else(|p| p.into_inner());
            *mirror = Mirror {
                catalog,
                meta: new_meta,
            };
        }
        self.shared.revision.send_replace(revision);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let _record = self.snapshot_lock.lock().await;
        let Some(record) = self.snapshots.get(SNAPSHOT).map_err(sm_read)? else {
            return Ok(None);
        };
        let (meta, data) =
            decode_snapshot(&record).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

fn json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| corrupt("model_version", e))
}

/// Rewrites the objects and watch history of a store of an older model in this model's
/// form, in one batch, and records the new model: what `open` read through the
/// older-model decoders is what gets written.
fn upgrade(
    db: &sled::Db,
    tree: &sled::Tree,
    catalog: &CatalogState,
    from: u32,
) -> Result<(), StoreError> {
    fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(value).map_err(|e| corrupt(key, e))
    }
    let mut batch = sled::Batch::default();
    for p in catalog.policies.values() {
        batch.insert(object_key("p", &[&p.name]), encode(&p.name, p)?);
    }
    for item in tree.scan_prefix(b"ev\0") {
        let (key, value) = item?;
        let name = format!("event {key:?}");
        let events: RevisionEvents =
            serde_json::from_slice(&value).map_err(|e| corrupt(&name, e))?;
        batch.insert(key, encode(&name, &events)?);
    }
    batch.insert(MODEL, encode("model_version", &MODEL_VERSION)?);
    tree.apply_batch(batch)?;
    db.flush()?;
    tracing::info!(
        from,
        to = MODEL_VERSION,
        "data directory upgraded to this data model"
    );
    Ok(())
}

/// `[meta length: u64 BE][meta JSON][data]`.
fn encode_snapshot(
    meta: &SnapshotMeta<NodeId, NodeInfo>,
    data: &[u8],
) -> Result<Vec<u8>, serde_json::Error> {
    let meta = serde_json::to_vec(meta)?;
    let mut record = Vec::with_capacity(8 + meta.len() + data.len());
    record.extend_from_slice(&(meta.len() as u64).to_be_bytes());
    record.extend_from_slice(&meta);
    record.extend_from_slice(data);
    Ok(record)
}

fn decode_snapshot(record: &[u8]) -> Result<(SnapshotMeta<NodeId, NodeInfo>, Vec<u8>), StoreError> {
    let bad = |why: &str| corrupt("snapshot", why);
    let (len, rest) = record
        .split_at_checked(8)
        .ok_or_else(|| bad("shorter than its header"))?;
    let len = u64::from_be_bytes(len.try_into().map_err(|_| bad("bad header"))?);
    let len = usize::try_from(len).map_err(|_| bad("bad header"))?;
    let (meta, data) = rest.split_at_checked(len).ok_or_else(|| bad("truncated"))?;
    let meta = serde_json::from_slice(meta).map_err(|e| corrupt("snapshot metadata", e))?;
    Ok((meta, data.to_vec()))
}

impl StateMachine {
    /// Records a snapshot durably. A built snapshot (`installed` false) never replaces
    /// a newer one: a slow build may finish after a newer snapshot was installed, and the
    /// log below that one may already be purged.
    async fn store_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        data: &[u8],
        installed: bool,
    ) -> Result<(), StorageError<NodeId>> {
        let write = |e: &dyn std::fmt::Display| -> StorageError<NodeId> {
            StorageIOError::write_snapshot(Some(meta.signature()), openraft::AnyError::error(e))
                .into()
        };
        let _record = self.snapshot_lock.lock().await;
        if !installed
            && let Some(current) = self.snapshots.get(SNAPSHOT).map_err(|e| write(&e))?
            && let Ok((current, _)) = decode_snapshot(&current)
            && current.last_log_id >= meta.last_log_id
        {
            return Ok(());
        }
        let record = encode_snapshot(meta, data).map_err(|e| write(&e))?;
        self.snapshots
            .insert(SNAPSHOT, record)
            .map_err(|e| write(&e))?;
        // Flushes the catalog tree too: once a snapshot is recorded, the log below it
        // may be purged, so the state it summarises must be on disk.
        self.db.flush_async().await.map_err(|e| write(&e))?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (data, last_applied, membership, revision) = {
            let view = self.view();
            let mirror = view.mirror();
            let data = serde_json::to_vec(&SnapshotBody::of(&mirror.catalog)).map_err(sm_read)?;
            (
                data,
                mirror.meta.last_applied,
                mirror.meta.membership.clone(),
                mirror.catalog.revision,
            )
        };
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-r{revision}", l.leader_id, l.index),
            None => format!("none-r{revision}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        self.store_snapshot(&meta, &data, false).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
