//! The file of a `file` audit device: where it may be, and how it is opened.
//!
//! Whoever may enable a device chooses a path the server will append to with its own
//! rights (CVE-2025-6000: a root token wrote a shell script through `prefix` and `mode`, or
//! appended to files it could not otherwise touch). Besides the rules on the path's text
//! (`commands::audit::file_path_problem`: absolute, no `.` or `..`, not under `/proc`,
//! `/sys` or `/dev`), the file system must agree:
//!
//! - every directory on the path exists and none is a symbolic link (nothing is created
//!   but the file itself);
//! - the file is not a symbolic link, and if it exists it is **an audit log**: a regular
//!   file with one link, owned by the server's user, mode 0600 or stricter, and either
//!   empty or starting with a line that is an audit entry (after the device's `prefix`): a
//!   JSON object whose `type` is `request` or `response` and whose `time` is a string, as
//!   cairn and OpenBao write them.
//!
//! The same checks run when a device is enabled (a refusal is a 400) and every time its
//! file is opened. The open itself walks the path one directory at a time with `openat` and
//! `O_NOFOLLOW` on every component, so a directory swapped for a symbolic link after the
//! check is not followed either; the file is created with the device's mode (never wider
//! than 0600) and never `chmod`ed.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use rustix::fs::{CWD, Mode, OFlags, openat};
use rustix::io::Errno;

/// How much of an existing file is read to find its first line.
const FIRST_LINE_MAX: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path breaks a rule; the message says which.
    #[error("{0}")]
    Refused(String),
    #[error("audit file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn refused(path: &str, why: impl std::fmt::Display) -> FileError {
    FileError::Refused(format!("audit file {path:?}: {why}"))
}

fn io(path: &str, e: impl Into<std::io::Error>) -> FileError {
    FileError::Io { path: path.to_string(), source: e.into() }
}

/// Checks that `path` may become (or already is) the file of a device with `prefix`.
pub fn check(path: &str, prefix: &str) -> Result<(), FileError> {
    let (dir, name) = walk(path)?;
    existing(path, &dir, name, prefix).map(|_| ())
}

/// Opens `path` for appending after [`check`]ing it, creating it with `mode` (at most
/// 0600). Returns the file and its inode.
pub fn open_append(path: &str, mode: u32, prefix: &str) -> Result<(File, u64), FileError> {
    let (dir, name) = walk(path)?;
    let before = existing(path, &dir, name, prefix)?;
    let flags =
        OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let mode = Mode::from_raw_mode(mode & commands::audit::MAX_FILE_MODE);
    let file = File::from(openat(&dir, name, flags, mode).map_err(|e| opened(path, e))?);
    let meta = file.metadata().map_err(|e| io(path, e))?;
    // What was opened must be what was checked (or a file this open created).
    if before.is_some_and(|ino| ino != meta.ino()) {
        return Err(refused(path, "was replaced while being opened"));
    }
    owned_log(path, &meta)?;
    Ok((file, meta.ino()))
}

fn opened(path: &str, e: Errno) -> FileError {
    if e == Errno::LOOP { refused(path, "is a symbolic link") } else { io(path, e) }
}

/// Opens every directory of `path` without following links; returns the last one and the
/// file's name.
fn walk(path: &str) -> Result<(OwnedFd, &str), FileError> {
    if let Some(problem) = commands::audit::file_path_problem(path) {
        return Err(FileError::Refused(problem));
    }
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let name = parts.pop().ok_or_else(|| refused(path, "names no file"))?;
    let mut dir =
        openat(CWD, "/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| io(path, e))?;
    let mut so_far = String::new();
    for part in parts {
        so_far.push('/');
        so_far.push_str(part);
        let next = match openat(&dir, part, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::NOENT) => return Err(refused(path, format!("directory {so_far} does not exist"))),
            Err(e) => return Err(io(path, e)),
        };
        let meta = next.metadata().map_err(|e| io(path, e))?;
        if meta.file_type().is_symlink() {
            return Err(refused(path, format!("{so_far} is a symbolic link")));
        }
        if !meta.is_dir() {
            return Err(refused(path, format!("{so_far} is not a directory")));
        }
        dir = OwnedFd::from(next);
    }
    Ok((dir, name))
}

/// The inode of the file if it exists and is an audit log; `None` if there is no file.
fn existing(path: &str, dir: &OwnedFd, name: &str, prefix: &str) -> Result<Option<u64>, FileError> {
    let file = match openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io(path, e)),
    };
    let meta = file.metadata().map_err(|e| io(path, e))?;
    if meta.file_type().is_symlink() {
        return Err(refused(path, "is a symbolic link"));
    }
    owned_log(path, &meta)?;
    if meta.len() > 0 {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let reader = File::from(openat(dir, name, flags, Mode::empty()).map_err(|e| opened(path, e))?);
        if reader.metadata().map_err(|e| io(path, e))?.ino() != meta.ino() {
            return Err(refused(path, "was replaced while being checked"));
        }
        let mut head = Vec::new();
        reader.take(FIRST_LINE_MAX).read_to_end(&mut head).map_err(|e| io(path, e))?;
        let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
        if !is_audit_entry(line, prefix) {
            return Err(refused(path, "exists and is not an audit log (its first line is not an audit entry)"));
        }
    }
    Ok(Some(meta.ino()))
}

/// A regular file with one link, owned by the server's user, mode 0600 or stricter.
fn owned_log(path: &str, meta: &std::fs::Metadata) -> Result<(), FileError> {
    if !meta.is_file() {
        return Err(refused(path, "is not a regular file"));
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(refused(path, "belongs to another user"));
    }
    let mode = meta.mode() & 0o7777;
    if mode & !commands::audit::MAX_FILE_MODE != 0 {
        return Err(refused(path, format!("has mode {mode:04o}; an audit log must be 0600 or stricter")));
    }
    if meta.nlink() != 1 {
        return Err(refused(path, "has other hard links"));
    }
    Ok(())
}

/// Whether `line` (without its newline) is an audit entry as cairn and OpenBao write them.
fn is_audit_entry(line: &[u8], prefix: &str) -> bool {
    let line = line.strip_prefix(prefix.as_bytes()).unwrap_or(line);
    let Ok(serde_json::Value::Object(entry)) = serde_json::from_slice::<serde_json::Value>(line) else {
        return false;
    };
    matches!(entry.get("type").and_then(|t| t.as_str()), Some("request" | "response"))
        && entry.get("time").is_some_and(serde_json::Value::is_string)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const ENTRY: &str = r#"{"time":"2026-12-07T20:09:47Z","type":"request","request":{"path":"sys/audit"}}"#;

    fn write(path: &std::path::Path, text: &str, mode: u32) {
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn text(p: &std::path::Path) -> String {
        p.display().to_string()
    }

    #[test]
    fn a_new_file_is_created_with_the_devices_mode_and_never_wider() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = text(&dir.path().join("audit.log"));
        check(&path, "").expect("a new file in an existing directory");
        let (mut f, ino) = open_append(&path, 0o777, "").expect("open");
        assert_eq!(std::fs::metadata(&path).expect("meta").mode() & 0o777, 0o600);
        f.write_all(format!("{ENTRY}\n").as_bytes()).expect("write");
        // Open again: it is an audit log now.
        let (_, again) = open_append(&path, 0o600, "").expect("reopen");
        assert_eq!(ino, again);
        let narrow = text(&dir.path().join("narrow.log"));
        open_append(&narrow, 0o400, "").expect("open");
        assert_eq!(std::fs::metadata(&narrow).expect("meta").mode() & 0o777, 0o400);
    }

    #[test]
    fn an_existing_file_must_be_an_audit_log() {
        let dir = tempfile::tempdir().expect("tmp");
        let empty = dir.path().join("empty");
        write(&empty, "", 0o600);
        check(&text(&empty), "").expect("an empty 0600 file");
        let log = dir.path().join("log");
        write(&log, &format!("{ENTRY}\n{ENTRY}\n"), 0o600);
        check(&text(&log), "").expect("an audit log");
        let prefixed = dir.path().join("prefixed");
        write(&prefixed, &format!("cairn: {ENTRY}\n"), 0o400);
        check(&text(&prefixed), "cairn: ").expect("an audit log with the device's prefix");

        let secret = dir.path().join("secret");
        write(&secret, "root:$6$hash:19000:0:99999:7:::\n", 0o600);
        let before = std::fs::read(&secret).expect("read");
        let e = open_append(&text(&secret), 0o600, "").expect_err("not an audit log");
        assert!(e.to_string().contains("exists and is not an audit log"), "{e}");
        assert_eq!(std::fs::read(&secret).expect("read"), before, "unchanged byte for byte");

        let wide = dir.path().join("wide");
        write(&wide, &format!("{ENTRY}\n"), 0o644);
        let e = check(&text(&wide), "").expect_err("0644");
        assert!(e.to_string().contains("has mode 0644; an audit log must be 0600 or stricter"), "{e}");
        std::fs::hard_link(&log, dir.path().join("link")).expect("link");
        assert!(check(&text(&log), "").expect_err("two links").to_string().contains("has other hard links"));
        let e = check(&text(dir.path()), "").expect_err("a directory");
        assert!(e.to_string().contains("is not a regular file"), "{e}");
    }

    #[test]
    fn no_symbolic_link_anywhere_on_the_path() {
        let dir = tempfile::tempdir().expect("tmp");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        std::os::unix::fs::symlink(&real, dir.path().join("via")).expect("symlink");
        let e = check(&text(&dir.path().join("via/audit.log")), "").expect_err("symlinked directory");
        assert!(e.to_string().contains("via is a symbolic link"), "{e}");
        assert!(open_append(&text(&dir.path().join("via/audit.log")), 0o600, "").is_err());
        assert!(!real.join("audit.log").exists(), "nothing was created through the link");

        let target = dir.path().join("target");
        write(&target, "", 0o600);
        std::os::unix::fs::symlink(&target, dir.path().join("link.log")).expect("symlink");
        let e = open_append(&text(&dir.path().join("link.log")), 0o600, "").expect_err("symlinked file");
        assert!(e.to_string().contains("is a symbolic link"), "{e}");

        let e = check(&text(&dir.path().join("missing/audit.log")), "").expect_err("missing directory");
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(!dir.path().join("missing").exists(), "no directory is created");
        let e = check(&text(&target.join("x")), "").expect_err("a file as a directory");
        assert!(e.to_string().contains("is not a directory"), "{e}");
        for bad in ["relative.log", "/tmp/x/../y", "/proc/self/fd/1"] {
            assert!(matches!(check(bad, ""), Err(FileError::Refused(_))), "{bad}");
        }
    }

    #[test]
    fn audit_entries() {
        assert!(is_audit_entry(ENTRY.as_bytes(), ""));
        assert!(is_audit_entry(format!("p {ENTRY}").as_bytes(), "p "));
        assert!(!is_audit_entry(br#"{"type":"request"}"#, ""));
        assert!(!is_audit_entry(br#"{"type":"other","time":"t"}"#, ""));
        assert!(!is_audit_entry(b"#!/bin/sh", ""));
        assert!(!is_audit_entry(b"[1,2]", ""));
    }
}
