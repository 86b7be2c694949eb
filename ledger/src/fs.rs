//! The file-system seam under the ledger writer.
//!
//! Everything the ledger does to disk goes through [`FileSystem`] and [`LedgerFile`], so
//! tests can put [`FaultFs`] underneath and inject what real disks do: a write torn in the
//! middle, `EIO`, `ENOSPC`, a failing `fdatasync`. [`StdFs`] is the real thing.
//!
//! Everything the ledger creates is private to the server's user: directories 0700
//! ([`DIR_MODE`]), files 0600 ([`FILE_MODE`]). [`create_private_dir_all`] and
//! [`private_file_options`] are the same rule for the other files of a data directory.

use std::fmt::Debug;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The mode of every directory cairn creates in a data directory.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file cairn creates in a data directory.
pub const FILE_MODE: u32 = 0o600;

/// `mkdir -p` with [`DIR_MODE`] for each directory it creates (existing ones are left as
/// they are).
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Options that create a file with [`FILE_MODE`]; add `create`, `create_new`, `truncate`…
pub fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Creates or truncates `path` for writing, with [`FILE_MODE`] even when it existed with a
/// looser mode (a temporary file left behind by an older version).
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let file = private_file_options().write(true).create(true).truncate(true).open(path)?;
    if file.metadata()?.permissions().mode() & 0o777 != FILE_MODE {
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(file)
}

/// Takes group and other access away from an existing directory (0700); true when it had
/// any.
pub fn tighten_dir(dir: &Path) -> io::Result<bool> {
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
    Ok(true)
}

/// The directory operations the ledger needs.
pub trait FileSystem: Send + Sync + Debug {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Entries of `dir` (full paths), in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Creates a file that must not exist yet, open for reading and writing.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn LedgerFile>>;
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn LedgerFile>>;
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn LedgerFile>>;
    /// `fsync` on a directory, so a created or removed entry survives a crash.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
}

/// The file operations the ledger needs: positional I/O, `fdatasync`, truncation.
pub trait LedgerFile: Send + Sync {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn file_len(&self) -> io::Result<u64>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

struct StdFile(File);

impl LedgerFile for StdFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn file_len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl FileSystem for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        create_private_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect()
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn LedgerFile>> {
        Ok(Box::new(StdFile(private_file_options().read(true).write(true).create_new(true).open(path)?)))
    }
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn LedgerFile>> {
        Ok(Box::new(StdFile(OpenOptions::new().read(true).write(true).open(path)?)))
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn LedgerFile>> {
        Ok(Box::new(StdFile(File::open(path)?)))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
}

/// A fault to inject into the next matching operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with `EIO`.
    Eio,
    /// The operation fails with `ENOSPC`.
    NoSpace,
    /// A write stores only its first `keep` bytes and then fails with `EIO`, as when the
    /// machine stops in the middle of it.
    Torn { keep: usize },
}

#[derive(Debug, Default)]
struct Plan {
    /// (writes to let through first, fault)
    write: Option<(u64, Fault)>,
    sync: Option<(u64, Fault)>,
}

/// A [`StdFs`] that injects planned faults and counts writes and syncs.
#[derive(Debug, Default, Clone)]
pub struct FaultFs {
    plan: Arc<Mutex<Plan>>,
    writes: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
}

impl FaultFs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fails the write after `skip` more successful writes.
    pub fn fail_write(&self, skip: u64, fault: Fault) {
        self.lock().write = Some((skip, fault));
    }

    /// Fails the `fdatasync` after `skip` more successful ones.
    pub fn fail_sync(&self, skip: u64, fault: Fault) {
        self.lock().sync = Some((skip, fault));
    }

    pub fn clear(&self) {
        *self.lock() = Plan::default();
    }

    /// Successful file writes so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Successful `fdatasync` calls so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(slot: &mut Option<(u64, Fault)>) -> Option<Fault> {
        match slot {
            Some((0, f)) => {
                let f = *f;
                *slot = None;
                Some(f)
            }
            Some((n, _)) => {
                *n -= 1;
                None
            }
            None => None,
        }
    }
}

fn io_error(fault: Fault) -> io::Error {
    match fault {
        Fault::NoSpace => io::Error::from_raw_os_error(28),
        Fault::Eio | Fault::Torn { .. } => io::Error::from_raw_os_error(5),
    }
}

struct FaultFile {
    inner: StdFile,
    fs: FaultFs,
}

impl LedgerFile for FaultFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let fault = FaultFs::take(&mut self.fs.lock().write);
        match fault {
            None => {
                self.inner.write_all_at(buf, offset)?;
                self.fs.writes.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Some(Fault::Torn { keep }) => {
                self.inner.write_all_at(&buf[..keep.min(buf.len())], offset)?;
                Err(io_error(Fault::Eio))
            }
            Some(f) => Err(io_error(f)),
        }
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if let Some(f) = FaultFs::take(&mut self.fs.lock().sync) {
            return Err(io_error(f));
        }
        self.inner.sync_data()?;
        self.fs.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn file_len(&self) -> io::Result<u64> {
        self.inner.file_len()
    }
}

impl FileSystem for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        StdFs.list(dir)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn LedgerFile>> {
        let f = private_file_options().read(true).write(true).create_new(true).open(path)?;
        Ok(Box::new(FaultFile { inner: StdFile(f), fs: self.clone() }))
    }
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn LedgerFile>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(FaultFile { inner: StdFile(f), fs: self.clone() }))
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn LedgerFile>> {
        StdFs.open_read(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
}
