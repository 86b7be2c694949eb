//! The Raft log store and the state machine. Log entries live in segment files
//! (`<dir>/log/`, [`crate::wal`]); everything else (vote, committed and purged log ids, the
//! state machine's metadata, the last snapshot) in one redb file (`<dir>/raft.redb`).
//!
//! **The Raft log is not the ledger.** Raft needs to truncate uncommitted suffixes and to
//! purge entries once a snapshot covers them; the ledger never rewrites. So the log lives
//! here, and the ledger only sees committed entries, through [`Applier`].
//!
//! **Where fsync happens.** `append` writes the entries and returns; the `IOFlushed`
//! callback is called only once they are `fdatasync`ed ([`crate::wal::Flusher`]).
//! `truncate_after` syncs before returning; `purge` saves the purge point durably before
//! deleting anything; `save_vote` is a redb write transaction committed with
//! `Durability::Immediate` (redb fsyncs before the commit returns). The state machine's
//! metadata (last applied log id, last membership) and the committed log id are written
//! with `Durability::None`: they become durable with the next immediate commit, and losing
//! them only means entries are handed to the applier again, which it tolerates (it is
//! idempotent). The last snapshot (meta and bytes) is stored with an immediate commit,
//! because openraft purges logs once it exists.
//!
//! redb is synchronous: its accesses run on tokio's blocking pool.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

use futures_util::{Stream, StreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, IOFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{EntryPayload, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::Applier;
use crate::types::{Entry, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, Vote, decode, encode};
use crate::wal::{Flusher, Wal};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const K_VOTE: &str = "vote";
const K_PURGED: &str = "last_purged";
const K_COMMITTED: &str = "committed";
const K_APPLIED: &str = "sm_last_applied";
const K_MEMBERSHIP: &str = "sm_membership";
const K_SNAP_META: &str = "snapshot_meta";
const K_SNAP_DATA: &str = "snapshot_data";

fn ioe<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

/// Opens (or creates) the redb file. A database still held by a node being shut down in the
/// same process is retried for a short, bounded time.
pub(crate) async fn open(path: std::path::PathBuf) -> Result<Arc<Database>, String> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let p = path.clone();
        let r = tokio::task::spawn_blocking(move || Database::create(p)).await.map_err(|e| e.to_string())?;
        match r {
            Ok(db) => return Ok(Arc::new(db)),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, io::Error> + Send + 'static,
) -> Result<T, io::Error> {
    tokio::task::spawn_blocking(f).await.map_err(ioe)?
}

fn read_meta<T: serde::de::DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, io::Error> {
    let tx = db.begin_read().map_err(ioe)?;
    let t = match tx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(ioe(e)),
    };
    match t.get(key).map_err(ioe)? {
        Some(v) => decode(v.value()).map(Some).map_err(ioe),
        None => Ok(None),
    }
}

/// Writes metadata keys in one transaction; `durable` = fsync before returning.
fn write_meta(db: &Database, kvs: &[(&str, Vec<u8>)], durable: bool) -> Result<(), io::Error> {
    let mut tx = db.begin_write().map_err(ioe)?;
    tx.set_durability(if durable { Durability::Immediate } else { Durability::None }).map_err(ioe)?;
    {
        let mut t = tx.open_table(META).map_err(ioe)?;
        for (k, v) in kvs {
            t.insert(*k, v.as_slice()).map_err(ioe)?;
        }
    }
    tx.commit().map_err(ioe)
}

/// The Raft log (entries in [`Wal`] segment files; vote, committed and purged ids in redb),
/// openraft's `RaftLogStorage`; its own reader too.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    wal: Arc<Mutex<Wal>>,
    flusher: Arc<Flusher>,
}

impl LogStore {
    /// Opens the entries in `dir` (recovering them) beside the metadata in `db`. Entries a
    /// node wrote into redb before the log moved to segment files are moved over once.
    pub(crate) async fn open(dir: std::path::PathBuf, db: Arc<Database>) -> Result<Self, io::Error> {
        let d = db.clone();
        let wal = blocking(move || {
            let mut wal = Wal::open(&dir)?;
            let purged: Option<LogId> = read_meta(&d, K_PURGED)?;
            if let Some(p) = &purged {
                wal.purge_upto(p.index())?;
            }
            if wal.is_empty() {
                move_redb_entries(&d, &mut wal)?;
            }
            Ok(wal)
        })
        .await?;
        Ok(LogStore { db, wal: Arc::new(Mutex::new(wal)), flusher: Arc::new(Flusher::start()?) })
    }

    fn wal(&self) -> std::sync::MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Moves the entries of the redb log table (kept there before the log moved to segment
/// files) into `wal`, synced, then empties the table.
fn move_redb_entries(db: &Database, wal: &mut Wal) -> Result<(), io::Error> {
    let entries: Vec<Entry> = {
        let tx = db.begin_read().map_err(ioe)?;
        let t = match tx.open_table(LOGS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(ioe(e)),
        };
        let mut out = Vec::new();
        for item in t.iter().map_err(ioe)? {
            let (_, v) = item.map_err(ioe)?;
            out.push(decode::<Entry>(v.value()).map_err(ioe)?);
        }
        out
    };
    if entries.is_empty() {
        return Ok(());
    }
    let n = entries.len();
    for file in wal.append(entries)? {
        file.sync_data()?;
    }
    let mut tx = db.begin_write().map_err(ioe)?;
    tx.set_durability(Durability::Immediate).map_err(ioe)?;
    {
        let mut t = tx.open_table(LOGS).map_err(ioe)?;
        t.retain(|_, _| false).map_err(ioe)?;
    }
    tx.commit().map_err(ioe)?;
    tracing::info!(entries = n, "moved the raft log from redb to segment files");
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.wal().read(range)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        let db = self.db.clone();
        blocking(move || read_meta(&db, K_VOTE)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let db = self.db.clone();
        let purged: Option<LogId> = blocking(move || read_meta(&db, K_PURGED)).await?;
        let last = self.wal().last_log_id();
        Ok(LogState { last_purged_log_id: purged.clone(), last_log_id: last.or(purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let db = self.db.clone();
        let v = encode(vote).map_err(ioe)?;
        blocking(move || write_meta(&db, &[(K_VOTE, v)], true)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let db = self.db.clone();
        let v = encode(&committed).map_err(ioe)?;
        blocking(move || write_meta(&db, &[(K_COMMITTED, v)], false)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let db = self.db.clone();
        blocking(move || Ok(read_meta::<Option<LogId>>(&db, K_COMMITTED)?.flatten())).await
    }

    /// Writes the entries and returns at once (openraft may send them on); `callback` is
    /// called once they are synced ([`Flusher`]). Plain writes (to the page cache) run
    /// here; an append that must first create a segment, sync the one before or cut the
    /// log runs on the blocking pool, so no `fsync` holds up this runtime's other tasks.
    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let written = if self.wal().fits(&entries) {
            self.wal().append(entries)
        } else {
            let wal = self.wal.clone();
            blocking(move || wal.lock().unwrap_or_else(|e| e.into_inner()).append(entries)).await
        };
        match written {
            Ok(files) => {
                self.flusher.flush(files, callback);
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|l| l.index() + 1).unwrap_or(0);
        let wal = self.wal.clone();
        blocking(move || wal.lock().unwrap_or_else(|e| e.into_inner()).truncate_from(from)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let db = self.db.clone();
        let upto = log_id.index();
        let v = encode(&log_id).map_err(ioe)?;
        // The purge point is durable before any entry goes.
        blocking(move || write_meta(&db, &[(K_PURGED, v)], true)).await?;
        let wal = self.wal.clone();
        blocking(move || wal.lock().unwrap_or_else(|e| e.into_inner()).purge_upto(upto)).await
    }
}

/// The state machine: hands committed frames to the [`Applier`], keeps the applied log id
/// and membership in redb, and the last snapshot.
pub struct StateMachine {
    db: Arc<Database>,
    applier: Arc<dyn Applier>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// Entries applied and not yet saved as applied, in log order, with the applier's mark
    /// after each: one is saved once its mark is durable ([`Applier::durable_mark`]).
    unsaved: std::collections::VecDeque<Unsaved>,
}

struct Unsaved {
    log_id: LogId,
    mark: u64,
    membership: StoredMembership,
}

impl StateMachine {
    pub(crate) async fn open(db: Arc<Database>, applier: Arc<dyn Applier>) -> Result<Self, io::Error> {
        let d = db.clone();
        let (last_applied, membership) = blocking(move || {
            let a: Option<Option<LogId>> = read_meta(&d, K_APPLIED)?;
            let m: Option<StoredMembership> = read_meta(&d, K_MEMBERSHIP)?;
            Ok((a.flatten(), m.unwrap_or_default()))
        })
        .await?;
        Ok(StateMachine { db, applier, last_applied, membership, unsaved: Default::default() })
    }

    /// Saves the last applied log id whose effects the applier holds durably (and the
    /// membership then); `durable`: fsynced before returning, else with redb's next commit.
    async fn save_applied(&mut self, durable: bool) -> Result<(), io::Error> {
        let mark = self.applier.durable_mark();
        let mut last = None;
        while self.unsaved.front().is_some_and(|u| u.mark <= mark) {
            last = self.unsaved.pop_front();
        }
        let Some(u) = last else { return Ok(()) };
        let a = encode(&Some(u.log_id)).map_err(ioe)?;
        let m = encode(&u.membership).map_err(ioe)?;
        let db = self.db.clone();
        blocking(move || write_meta(&db, &[(K_APPLIED, a), (K_MEMBERSHIP, m)], durable)).await
    }

    /// Counts an entry as applied (in memory at once; saved once durable).
    fn applied(&mut self, log_id: LogId) {
        self.last_applied = Some(log_id.clone());
        let mark = self.applier.applied_mark();
        self.unsaved.push_back(Unsaved { log_id, mark, membership: self.membership.clone() });
    }
}

/// Builds a snapshot from bytes taken while the state machine was not applying (so the data
/// matches `meta.last_log_id` exactly), then stores it.
pub struct SnapshotBuilder {
    db: Arc<Database>,
    meta: SnapshotMeta,
    data: Result<Vec<u8>, String>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let data = std::mem::replace(&mut self.data, Err("snapshot already built".into())).map_err(ioe)?;
        let snap = Snapshot { meta: self.meta.clone(), snapshot: data };
        store_snapshot(&self.db, &snap).await?;
        Ok(snap)
    }
}

async fn store_snapshot(db: &Arc<Database>, snap: &Snapshot) -> Result<(), io::Error> {
    let m = encode(&snap.meta).map_err(ioe)?;
    let d = snap.snapshot.clone();
    let db = db.clone();
    blocking(move || write_meta(&db, &[(K_SNAP_META, m), (K_SNAP_DATA, d)], true)).await
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.last_applied.clone(), self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut any = false;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id();
            let reply = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(frame) => match self.applier.apply(frame.0).await {
                    Ok(r) => r,
                    Err(e) => {
                        // Fatal: never skip an entry. Save what was applied before it.
                        if any {
                            self.save_applied(false).await?;
                        }
                        return Err(io::Error::other(format!("applier failed at log index {}: {e}", log_id.index())));
                    }
                },
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id.clone()), m);
                    Vec::new()
                }
            };
            self.applied(log_id);
            any = true;
            if let Some(r) = responder {
                r.send(reply);
            }
        }
        if any {
            self.save_applied(false).await?;
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Runs on the state-machine worker, between applies: the bytes match last_applied.
        let data = self.applier.snapshot().await;
        // Everything applied is durable now (`snapshot` syncs): logs up to the snapshot may be
        // purged once it is stored, so the applied log id must not stay behind it.
        if let Err(e) = self.save_applied(true).await {
            tracing::warn!(error = %e, "saving the applied log id before a snapshot");
        }
        SnapshotBuilder {
            db: self.db.clone(),
            meta: SnapshotMeta { last_log_id: self.last_applied.clone(), last_membership: self.membership.clone() },
            data,
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Vec<u8>) -> Result<(), io::Error> {
        self.applier.install(snapshot.clone()).await.map_err(ioe)?;
        self.membership = meta.last_membership.clone();
        self.unsaved.clear();
        if let Some(log_id) = meta.last_log_id.clone() {
            self.applied(log_id);
        } else {
            self.last_applied = None;
        }
        self.save_applied(true).await?;
        store_snapshot(&self.db, &Snapshot { meta: meta.clone(), snapshot }).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let db = self.db.clone();
        blocking(move || {
            let meta: Option<SnapshotMeta> = read_meta(&db, K_SNAP_META)?;
            let Some(meta) = meta else { return Ok(None) };
            let tx = db.begin_read().map_err(ioe)?;
            let t = tx.open_table(META).map_err(ioe)?;
            let data = t.get(K_SNAP_DATA).map_err(ioe)?.map(|v| v.value().to_vec()).unwrap_or_default();
            Ok(Some(Snapshot { meta, snapshot: data }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    //! openraft's storage conformance suite against the redb log store and this state machine.
    use std::sync::Mutex;

    use futures_util::future::BoxFuture;
    use openraft::StorageError;
    use openraft::testing::log::{StoreBuilder, Suite};

    use super::*;

    /// Keeps entries in memory; snapshot = length-prefixed concatenation. Its mark is the
    /// number of entries; `durable` caps what it says is durable (all of it by default).
    struct Mem {
        entries: Mutex<Vec<Vec<u8>>>,
        durable: std::sync::atomic::AtomicU64,
    }

    impl Default for Mem {
        fn default() -> Self {
            Mem { entries: Mutex::default(), durable: std::sync::atomic::AtomicU64::new(u64::MAX) }
        }
    }

    impl Applier for Mem {
        fn apply(&self, entry: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> {
            let r = self.entries.lock().map(|mut g| g.push(entry)).map_err(|e| e.to_string());
            Box::pin(async move { r.map(|()| Vec::new()) })
        }
        fn snapshot(&self) -> BoxFuture<'static, Result<Vec<u8>, String>> {
            let r = self.entries.lock().map_err(|e| e.to_string()).and_then(|g| encode(&*g));
            Box::pin(async move { r })
        }
        fn install(&self, data: Vec<u8>) -> BoxFuture<'static, Result<(), String>> {
            let r = decode::<Vec<Vec<u8>>>(&data)
                .and_then(|v| self.entries.lock().map(|mut g| *g = v).map_err(|e| e.to_string()));
            Box::pin(async move { r })
        }
        fn applied_mark(&self) -> u64 {
            self.entries.lock().map(|g| g.len() as u64).unwrap_or(0)
        }
        fn durable_mark(&self) -> u64 {
            self.durable.load(std::sync::atomic::Ordering::SeqCst).min(self.applied_mark())
        }
    }

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
            let se = |e: String| {
                StorageError::from_io_error(
                    openraft::ErrorSubject::Store,
                    openraft::ErrorVerb::Read,
                    io::Error::other(e),
                )
            };
            let dir = tempfile::tempdir().map_err(|e| se(e.to_string()))?;
            let db = open(dir.path().join("raft.redb")).await.map_err(se)?;
            let sm = StateMachine::open(db.clone(), Arc::new(Mem::default())).await.map_err(|e| se(e.to_string()))?;
            let log = LogStore::open(dir.path().join("log"), db).await.map_err(|e| se(e.to_string()))?;
            Ok((dir, log, sm))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openraft_storage_suite() -> Result<(), StorageError<TypeConfig>> {
        Suite::test_all(Builder).await
    }

    fn normal(index: u64) -> Entry {
        Entry::new(openraft::testing::log_id::<TypeConfig>(1, crate::types::Nid("n1".into()), index), {
            EntryPayload::Normal(crate::types::Frame(vec![index as u8]))
        })
    }

    async fn apply_all(sm: &mut StateMachine, entries: Vec<Entry>) {
        let items: Vec<Result<EntryResponder<TypeConfig>, io::Error>> =
            entries.into_iter().map(|e| Ok((e, None))).collect();
        sm.apply(futures_util::stream::iter(items)).await.expect("apply");
    }

    /// The applied log id saved is the last one the applier holds durably: after a crash
    /// the node resumes there and is handed again what it may have lost.
    #[tokio::test]
    async fn the_applied_index_saved_is_the_last_durable_one() {
        let dir = tempfile::tempdir().expect("test");
        let db = open(dir.path().join("raft.redb")).await.expect("test");
        let mem = Arc::new(Mem::default());
        mem.durable.store(0, std::sync::atomic::Ordering::SeqCst);
        let mut sm = StateMachine::open(db.clone(), mem.clone()).await.expect("test");
        apply_all(&mut sm, vec![normal(1), normal(2), normal(3)]).await;
        assert_eq!(sm.applied_state().await.expect("test").0.map(|l| l.index()), Some(3), "applied, in memory");
        // Entries 1 and 2 became durable; 3 not yet. The next apply saves up to 2 only.
        mem.durable.store(2, std::sync::atomic::Ordering::SeqCst);
        apply_all(&mut sm, vec![normal(4)]).await;
        drop(sm);
        let mut again = StateMachine::open(db.clone(), Arc::new(Mem::default())).await.expect("test");
        assert_eq!(again.applied_state().await.expect("test").0.map(|l| l.index()), Some(2));
        drop(again);

        // A snapshot makes everything durable first, and saves it.
        let mut sm = StateMachine::open(db.clone(), mem.clone()).await.expect("test");
        apply_all(&mut sm, vec![normal(5)]).await;
        mem.durable.store(u64::MAX, std::sync::atomic::Ordering::SeqCst);
        let _builder = sm.get_snapshot_builder().await;
        drop(sm);
        let mut again = StateMachine::open(db, Arc::new(Mem::default())).await.expect("test");
        assert_eq!(again.applied_state().await.expect("test").0.map(|l| l.index()), Some(5));
    }

    /// A node whose log entries are still in the redb table (written before the log moved
    /// to segment files) finds them in the segment files, once, and the table emptied.
    #[tokio::test]
    async fn entries_left_in_redb_move_to_the_segment_files() {
        let dir = tempfile::tempdir().expect("test");
        let db = open(dir.path().join("raft.redb")).await.expect("test");
        {
            let tx = db.begin_write().expect("test");
            {
                let mut t = tx.open_table(LOGS).expect("test");
                for i in 1..=3 {
                    t.insert(i, encode(&normal(i)).expect("test").as_slice()).expect("test");
                }
            }
            tx.commit().expect("test");
        }
        let mut ls = LogStore::open(dir.path().join("log"), db.clone()).await.expect("test");
        assert_eq!(ls.try_get_log_entries(0..).await.expect("test"), vec![normal(1), normal(2), normal(3)]);
        assert_eq!(ls.get_log_state().await.expect("test").last_log_id.map(|l| l.index()), Some(3));
        let left = db.begin_read().expect("test").open_table(LOGS).expect("test").iter().expect("test").count();
        assert_eq!(left, 0, "the table is emptied");
        drop(ls);
        let mut ls = LogStore::open(dir.path().join("log"), db).await.expect("test");
        assert_eq!(ls.try_get_log_entries(0..).await.expect("test").len(), 3, "moved once, kept");
    }

    /// The suite must be able to fail: a store that forgets the vote is caught.
    #[tokio::test]
    async fn vote_survives_reopen() {
        let dir = tempfile::tempdir().expect("test");
        let db = open(dir.path().join("raft.redb")).await.expect("test");
        let mut ls = LogStore::open(dir.path().join("log"), db.clone()).await.expect("test");
        let v = Vote::new(3, crate::types::Nid("n1".into()));
        ls.save_vote(&v).await.expect("test");
        drop(ls);
        drop(db);
        let db = open(dir.path().join("raft.redb")).await.expect("test");
        let mut ls = LogStore::open(dir.path().join("log"), db).await.expect("test");
        assert_eq!(ls.read_vote().await.expect("test"), Some(v));
    }
}
