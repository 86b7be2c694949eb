//! [`Ledger`]: the handle through which the rest of cairn appends to and reads the ledger.
//!
//! One writer thread owns the active segment (see `writer.rs`); any number of readers
//! walk durable frames through their own file handles and never wait for it.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch};

use crate::chain::{ChainState, KeyRecord};
use crate::checkpoint::{Checkpoint, LedgerId};
use crate::envelope::{Actor, Event, EventDraft};
use crate::error::{Error, Result};
use crate::frame::{SEGMENT_HEADER_LEN, segment_file_name, segment_header};
use crate::fs::{FileSystem, StdFs};
use crate::hash::Hash;
use crate::index::Index;
use crate::keys::LedgerKey;
use crate::seal::KeySlot;
use crate::segments::{INDEX_DIR, OpenSegment, SEGMENTS_DIR};
use crate::system::{KIND_GENESIS, SystemEvent};
pub use crate::writer::Entry;
use crate::writer::{Active, Request, Submission, Writer, system_draft};

/// Source of commit times, in nanoseconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    })
}

/// Tuning and seams. The defaults suit production; tests shrink the limits so that segment
/// rolls and batch splits happen on every run.
#[derive(Clone)]
pub struct Options {
    pub fs: Arc<dyn FileSystem>,
    /// A new segment starts once a frame would push the active one past this size.
    pub segment_max_bytes: u64,
    /// Most events in one commit batch.
    pub max_batch_events: usize,
    /// Most body bytes in one commit batch.
    pub max_batch_bytes: usize,
    /// Requests that may wait for the writer before appenders are pushed back.
    pub queue_depth: usize,
    pub clock: Clock,
    /// A cluster replica's frames ([`Ledger::append_frame`]) are answered once written,
    /// and made durable right after, off the answer's path: before the writer next waits
    /// for work, before the next frame, and before [`Ledger::sync`] returns; so at most
    /// the last frame is not yet durable. For a node whose frames come from a Raft log
    /// that keeps them (durably, on a majority) until the ledger has synced them
    /// ([`Ledger::synced_seq`]); a crash then loses at most a frame the log hands again.
    pub defer_frame_sync: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fs: Arc::new(StdFs),
            segment_max_bytes: 64 << 20,
            max_batch_events: 4096,
            max_batch_bytes: 8 << 20,
            queue_depth: 16_384,
            clock: system_clock(),
            defer_frame_sync: false,
        }
    }
}

/// Where an appended event landed. Returned only once the event is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub hash: Hash,
    pub time: u64,
}

/// The durable end of the ledger, as readers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    pub last_seq: u64,
    pub head: Hash,
    pub checkpoint: Option<Checkpoint>,
    /// First seq of the active segment, and how many of its bytes are durable.
    pub segment: u64,
    pub segment_len: u64,
}

/// An event read back from the ledger, with its hash and its key slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event: Event,
    pub hash: Hash,
    pub slots: Vec<KeySlot>,
}

/// State shared by the writer thread and readers.
pub(crate) struct Shared {
    pub seg_dir: PathBuf,
    pub fs: Arc<dyn FileSystem>,
    pub ledger_id: LedgerId,
    pub index: Index,
    durable: RwLock<Durable>,
    keys: RwLock<Vec<KeyRecord>>,
    wraps: RwLock<BTreeMap<u32, u64>>,
    watch: watch::Sender<u64>,
    failure: Mutex<Option<String>>,
    /// The writer's current signing key, for checkpoint notes (never handed out). A
    /// replica has one only once its server is unsealed ([`Ledger::set_signer`]).
    signer: RwLock<Option<Arc<LedgerKey>>>,
    /// The whole chain state at the durable end: a cluster leader builds its next frame on it.
    chain: RwLock<ChainState>,
    /// Slot layouts of frames erasures looked into lately.
    pub slot_layouts: crate::segments::SlotLayouts,
    /// The last seq whose frame has been `fdatasync`ed (behind the durable end by at most
    /// one frame with [`Options::defer_frame_sync`], equal to it otherwise).
    pub synced_seq: std::sync::atomic::AtomicU64,
}

impl Shared {
    pub fn publish(&self, durable: Durable, chain: &ChainState) {
        *self.durable.write().unwrap_or_else(|e| e.into_inner()) = durable;
        *self.chain.write().unwrap_or_else(|e| e.into_inner()) = chain.clone();
        {
            let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
            if keys.len() != chain.keys.len() || keys.last() != chain.keys.last() {
                *keys = chain.keys.clone();
            }
        }
        {
            let mut wraps = self.wraps.write().unwrap_or_else(|e| e.into_inner());
            if *wraps != chain.wraps {
                *wraps = chain.wraps.clone();
            }
        }
        self.watch.send_replace(durable.last_seq);
    }

    pub fn durable(&self) -> Durable {
        *self.durable.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_signer(&self, key: Arc<LedgerKey>) {
        *self.signer.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    pub fn chain(&self) -> ChainState {
        self.chain.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn signer(&self) -> Option<Arc<LedgerKey>> {
        self.signer.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_failure(&self, reason: String) {
        self.failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(reason);
    }
}

/// A new ledger directory: locked, with an empty index and segment 1 holding only its
/// header, all durable. Shared by [`Ledger::create`] and [`Ledger::create_replica`].
pub(crate) struct Fresh {
    pub seg_dir: PathBuf,
    pub lock: std::fs::File,
    pub index: Index,
    pub chain: ChainState,
    pub active: Active,
}

impl Fresh {
    pub(crate) fn make(dir: &Path, ledger_id: LedgerId, opts: &Options) -> Result<Fresh> {
        let fs = &opts.fs;
        let seg_dir = dir.join(SEGMENTS_DIR);
        fs.create_dir_all(&seg_dir).map_err(|e| Error::io("create ledger directory", &e))?;
        let lock = lock_dir(dir)?;
        if !crate::segments::list(fs.as_ref(), &seg_dir)?.is_empty() {
            return Err(Error::AlreadyExists(dir.to_path_buf()));
        }
        let index = open_index(dir, true)?;
        let path = seg_dir.join(segment_file_name(1));
        let file = fs.create_new(&path).map_err(|e| Error::io("create segment", &e))?;
        file.write_all_at(&segment_header(&ledger_id), 0).map_err(|e| Error::io("write segment header", &e))?;
        file.sync_data().map_err(|e| Error::io("fdatasync", &e))?;
        fs.sync_dir(&seg_dir).map_err(|e| Error::io("fsync directory", &e))?;
        fs.sync_dir(dir).map_err(|e| Error::io("fsync directory", &e))?;
        let chain = ChainState { ledger_id: Some(ledger_id), ..ChainState::empty() };
        let active = Active { first_seq: 1, path, file, len: SEGMENT_HEADER_LEN as u64 };
        Ok(Fresh { seg_dir, lock, index, chain, active })
    }
}

/// An open, writable ledger.
pub struct Ledger {
    pub(crate) shared: Arc<Shared>,
    pub(crate) clock: Clock,
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    // Held for the life of the handle: one process writes a ledger at a time.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("id", &hex::encode(self.shared.ledger_id))
            .field("durable", &self.durable())
            .finish()
    }
}

pub(crate) fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join("LOCK");
    let f = crate::fs::private_file_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &e))?;
    // A lock just released can look held for a moment: a process forked meanwhile (by any
    // thread) shares the lock until it execs. So a held lock is tried again, briefly.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => {
                return Err(Error::Invalid(format!("ledger at {} is in use by another process", dir.display())));
            }
        }
    }
}

/// How long [`lock_dir`] waits for a lock that is held.
const LOCK_WAIT: Duration = Duration::from_millis(500);

impl Ledger {
    /// True if `dir` holds a ledger (a segments folder with at least one segment).
    pub fn exists(dir: &Path) -> bool {
        crate::segments::list(&StdFs, &dir.join(SEGMENTS_DIR)).is_ok_and(|s| !s.is_empty())
    }

    /// Creates a new ledger in `dir` whose genesis registers `key`. Durable on return.
    pub fn create(dir: &Path, key: LedgerKey, opts: Options) -> Result<Ledger> {
        let mut ledger_id = [0u8; 16];
        getrandom::fill(&mut ledger_id).map_err(|_| Error::Randomness)?;
        let Fresh { seg_dir, lock, index, chain, active } = Fresh::make(dir, ledger_id, &opts)?;
        let fs = opts.fs.clone();
        let key = Arc::new(key);
        let genesis = SystemEvent::Genesis { ledger_id, key: key.public().to_bytes() }.encode();
        let shared = Arc::new(new_shared(seg_dir, fs, ledger_id, index, &chain, Some(key.clone())));
        let mut writer = Writer::new(shared.clone(), chain, Some(key), active, &opts);
        writer.commit(vec![Submission::plain(vec![system_draft(KIND_GENESIS, Actor::system(), [0; 16], genesis)])])?;
        Ok(Self::start(shared, writer, &opts, lock))
    }

    /// Opens an existing ledger: recovers a torn tail, checks everything written since the
    /// index was last saved (hash chain, Merkle roots, signatures), and starts the writer.
    /// `key` must be one of the ledger's active checkpoint keys (the current key, on a
    /// single-node ledger).
    pub fn open(dir: &Path, key: LedgerKey, opts: Options) -> Result<Ledger> {
        Ledger::open_with(dir, Some(key), opts)
    }

    pub(crate) fn open_with(dir: &Path, key: Option<LedgerKey>, opts: Options) -> Result<Ledger> {
        let fs = opts.fs.clone();
        let seg_dir = dir.join(SEGMENTS_DIR);
        if crate::segments::list(fs.as_ref(), &seg_dir)?.is_empty() {
            return Err(Error::NotFound(dir.to_path_buf()));
        }
        let lock = lock_dir(dir)?;
        let index = open_index(dir, false)?;
        let recovered = crate::recovery::recover(&fs, &seg_dir, &index)?;
        if let Some(key) = &key
            && !recovered.chain.is_active(key.id())
        {
            let expected = recovered.chain.current_key().map(|k| k.id()).unwrap_or_default();
            return Err(Error::WrongKey { expected });
        }
        let ledger_id = recovered.chain.ledger_id.unwrap_or_default();
        let key = key.map(Arc::new);
        let shared = Arc::new(new_shared(seg_dir, fs, ledger_id, index, &recovered.chain, key.clone()));
        shared.publish(
            Durable {
                last_seq: recovered.chain.last_seq(),
                head: recovered.chain.head,
                checkpoint: recovered.chain.last_checkpoint,
                segment: recovered.active.first_seq,
                segment_len: recovered.active.len,
            },
            &recovered.chain,
        );
        let mut writer = Writer::new(shared.clone(), recovered.chain, key, recovered.active, &opts);
        writer.save_state();
        Ok(Self::start(shared, writer, &opts, lock))
    }

    pub(crate) fn start(shared: Arc<Shared>, writer: Writer, opts: &Options, lock: std::fs::File) -> Ledger {
        let (tx, rx) = mpsc::channel(opts.queue_depth.max(1));
        let thread = std::thread::Builder::new().name("cairn-ledger-writer".into()).spawn(move || writer.run(rx)).ok();
        Ledger { shared, clock: opts.clock.clone(), tx: Some(tx), thread, _lock: lock }
    }

    pub(crate) fn sender(&self) -> Result<&mpsc::Sender<Request>> {
        self.tx.as_ref().ok_or(Error::Closed)
    }

    pub fn id(&self) -> LedgerId {
        self.shared.ledger_id
    }

    /// The durable end of the ledger.
    pub fn durable(&self) -> Durable {
        self.shared.durable()
    }

    /// The last seq that is on disk for sure: [`Ledger::durable`]'s, except with
    /// [`Options::defer_frame_sync`], where the last frame may still be syncing.
    pub fn synced_seq(&self) -> u64 {
        self.shared.synced_seq.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Checkpoint keys in registration order (the last unretired one signs).
    pub fn keys(&self) -> Vec<KeyRecord> {
        self.shared.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Key slots written per keyring term so far (the nonce budget spent).
    pub fn wraps(&self) -> BTreeMap<u32, u64> {
        self.shared.wraps.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The C2SP signed note of checkpoint `cp` (FORMAT.md §11), signed now by the current
    /// signing key, and that key. Only a note body built from `cp` is ever signed here.
    /// `None` on a replica whose server has not handed it a key yet.
    pub fn checkpoint_note(&self, cp: &Checkpoint) -> Option<(String, crate::keys::PublicKey)> {
        let key = self.shared.signer()?;
        Some((crate::note::sign(&key, &self.shared.ledger_id, cp.last_seq, &cp.root), key.public()))
    }

    /// Why the writer stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    /// Watches the last durable seq (for tailers such as audit devices).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.watch.subscribe()
    }

    async fn request(&self, make: impl FnOnce(crate::writer::Reply) -> Request) -> Result<Vec<Receipt>> {
        let tx = self.sender()?;
        let (reply, rx) = oneshot::channel();
        tx.send(make(reply)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Appends `drafts` as consecutive events of one commit batch. Returns once they are
    /// durable; an error means none of them is acknowledged.
    pub async fn append(&self, drafts: Vec<EventDraft>) -> Result<Vec<Receipt>> {
        self.request(|reply| Request::Append { drafts, reply }).await
    }

    /// Appends events and erases earlier payloads in one commit batch, in the order given
    /// (an erasure becomes a PayloadErased event at its position). All or nothing: one
    /// invalid entry refuses the whole commit. One receipt per entry.
    pub async fn commit(&self, entries: Vec<Entry>) -> Result<Vec<Receipt>> {
        self.request(|reply| Request::Commit { entries, reply }).await
    }

    /// Appends a PayloadErased event for key slots `slots` of event `target`, then zeroes
    /// those slots on disk. The payloads they unlocked become unrecoverable.
    pub async fn erase(&self, target: u64, slots: Vec<u8>, actor: Actor, request_id: [u8; 16]) -> Result<Receipt> {
        let r = self.request(|reply| Request::Erase { target, slots, actor, request_id, reply }).await?;
        r.into_iter().next().ok_or(Error::Closed)
    }

    /// Rotates the checkpoint key: the rotation event is signed (through its frame's
    /// checkpoint) by the current key and carries the new key's proof of possession.
    pub async fn rotate_key(&self, new_key: LedgerKey, actor: Actor, request_id: [u8; 16]) -> Result<Receipt> {
        let r = self.request(|reply| Request::Rotate { key: Box::new(new_key), actor, request_id, reply }).await?;
        r.into_iter().next().ok_or(Error::Closed)
    }

    /// Events `from..=to` that are durable, in order.
    pub fn events(&self, from: u64, to: u64) -> Events {
        Events::new(self.shared.clone(), from.max(1), to)
    }

    /// Durable events committed at or after `from_time` and at or before `to_time`.
    pub fn events_between(&self, from_time: u64, to_time: u64) -> impl Iterator<Item = Result<StoredEvent>> + use<> {
        let start = self.shared.index.first_at_or_after(from_time).map(|l| l.first_seq);
        let events = match start {
            Some(seq) => Events::new(self.shared.clone(), seq, u64::MAX),
            None => Events::new(self.shared.clone(), u64::MAX, 0),
        };
        events.take_while(move |r| r.as_ref().map_or(true, |e| e.event.time <= to_time))
    }

    /// Stops the writer after the requests already queued, and saves the index state.
    pub fn close(mut self) -> Result<()> {
        self.stop();
        match self.shared.failure() {
            Some(reason) => Err(Error::Failed(reason)),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.shared.index.flush();
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn new_shared(
    seg_dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    ledger_id: LedgerId,
    index: Index,
    chain: &ChainState,
    signer: Option<Arc<LedgerKey>>,
) -> Shared {
    let (watch, _) = watch::channel(chain.last_seq());
    Shared {
        seg_dir,
        fs,
        ledger_id,
        index,
        durable: RwLock::new(Durable {
            last_seq: chain.last_seq(),
            head: chain.head,
            checkpoint: chain.last_checkpoint,
            segment: 1,
            segment_len: 0,
        }),
        keys: RwLock::new(chain.keys.clone()),
        wraps: RwLock::new(chain.wraps.clone()),
        watch,
        failure: Mutex::new(None),
        signer: RwLock::new(signer),
        chain: RwLock::new(chain.clone()),
        slot_layouts: Default::default(),
        synced_seq: std::sync::atomic::AtomicU64::new(chain.last_seq()),
    }
}

/// Opens the sled index; a damaged index is moved aside and rebuilt (it holds nothing
/// that the segments do not).
pub(crate) fn open_index(dir: &Path, fresh: bool) -> Result<Index> {
    let path = dir.join(INDEX_DIR);
    if fresh && path.exists() {
        std::fs::remove_dir_all(&path).map_err(|e| Error::io("remove stale index", &e))?;
    }
    match Index::open(&path) {
        Ok(i) => Ok(i),
        Err(e) => {
            tracing::warn!(error = %e, "ledger index unreadable; rebuilding it from the segments");
            let aside = dir.join(format!("{INDEX_DIR}.damaged"));
            let _ = std::fs::remove_dir_all(&aside);
            std::fs::rename(&path, &aside).map_err(|e| Error::io("move damaged index aside", &e))?;
            Ok(Index::open(&path)?)
        }
    }
}

/// Iterator over durable events of a seq range.
pub struct Events {
    shared: Arc<Shared>,
    next: u64,
    to: u64,
    cursor: Option<(OpenSegment, u64)>,
    pending: VecDeque<StoredEvent>,
    failed: bool,
}

impl Events {
    pub(crate) fn new(shared: Arc<Shared>, from: u64, to: u64) -> Events {
        Events { shared, next: from, to, cursor: None, pending: VecDeque::new(), failed: false }
    }

    fn fill(&mut self) -> Result<bool> {
        let durable = self.shared.durable();
        if self.next > self.to.min(durable.last_seq) {
            return Ok(false);
        }
        if self.cursor.is_none() {
            let loc = self
                .shared
                .index
                .locate(self.next)
                .ok_or(Error::Corrupt { seq: self.next, reason: "durable event missing from the index".into() })?;
            let seg = OpenSegment::open(&self.shared.fs, &self.shared.seg_dir, loc.segment)?
                .ok_or(Error::Corrupt { seq: self.next, reason: "segment file missing".into() })?;
            self.cursor = Some((seg, loc.offset));
        }
        let Some((seg, offset)) = self.cursor.as_mut() else {
            return Ok(false);
        };
        let end = if seg.first_seq == durable.segment {
            durable.segment_len
        } else {
            seg.file.file_len().map_err(|e| Error::io("stat segment", &e))?
        };
        if *offset >= end {
            // This segment is done; the next one is named after the next seq.
            let Some(next_seg) = OpenSegment::open(&self.shared.fs, &self.shared.seg_dir, self.next)? else {
                return Ok(false);
            };
            *seg = next_seg;
            *offset = SEGMENT_HEADER_LEN as u64;
            return Ok(true);
        }
        let frame = crate::segments::read_frame(seg.file.as_ref(), *offset)?;
        *offset += frame.len as u64;
        for fe in &frame.events {
            if fe.event.seq >= self.next && fe.event.seq <= self.to {
                self.pending.push_back(StoredEvent {
                    event: fe.event.clone(),
                    hash: fe.hash,
                    slots: frame.slots_of(fe).to_vec(),
                });
            }
        }
        self.next = self.next.max(frame.last_seq() + 1);
        Ok(true)
    }
}

impl Iterator for Events {
    type Item = Result<StoredEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(ev));
            }
            if self.failed {
                return None;
            }
            match self.fill() {
                Ok(true) => continue,
                Ok(false) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
