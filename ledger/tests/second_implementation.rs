//! FORMAT.md must be enough to verify a ledger: `tools/verify_ledger.py` was written from
//! it alone, without reading this crate. Both verifiers must agree on the frozen fixture
//! and on every tampered copy of it, down to the seq they report.

mod common;

use std::path::{Path, PathBuf};

use common::python_verdict;
use ledger::verify::{VerifyOptions, verify_dir};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

/// Not intact, and the first seq that does not verify. The Python verifier has no verdict of
/// its own for a torn tail: it reports the seq the torn frame would have started at.
fn rust_verdict(dir: &Path) -> (bool, Option<u64>) {
    let r = verify_dir(dir, VerifyOptions::default());
    (r.intact, r.failure.map(|f| f.seq).or(r.torn_tail.map(|t| t.after_seq + 1)))
}

fn copy_fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(tmp.path().join("segments")).expect("mkdir");
    for e in std::fs::read_dir(fixture().join("segments")).expect("ls") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, tmp.path().join("segments").join(p.file_name().expect("name"))).expect("copy");
    }
    tmp
}

fn segment(dir: &Path, name: &str) -> PathBuf {
    dir.join("segments").join(name)
}

#[test]
fn both_verifiers_agree_on_the_fixture_and_on_tampered_copies() {
    assert_eq!(python_verdict(&fixture()), (true, None));
    assert_eq!(rust_verdict(&fixture()), (true, None));

    type Tamper = fn(&Path);
    let tampers: [(&str, Tamper, u64); 4] = [
        ("flipped body byte", |d| flip(&segment(d, "00000000000000000012.seg"), b"fixture event 12", 15), 14),
        ("torn tail", |d| truncate_by(&segment(d, "00000000000000000039.seg"), 200), 43),
        ("appended garbage", |d| append(&segment(d, "00000000000000000039.seg"), b"CLF1\0\0"), 44),
        ("removed middle segment", |d| std::fs::remove_file(segment(d, "00000000000000000026.seg")).expect("rm"), 26),
    ];
    for (what, tamper, seq) in tampers {
        let copy = copy_fixture();
        tamper(copy.path());
        let rust = rust_verdict(copy.path());
        assert_eq!(rust, (false, Some(seq)), "rust verifier, {what}");
        assert_eq!(python_verdict(copy.path()), rust, "python verifier disagrees on {what}");
    }
}

fn flip(path: &Path, needle: &[u8], offset: usize) {
    let mut b = std::fs::read(path).expect("read");
    let at = b.windows(needle.len()).position(|w| w == needle).expect("needle") + offset;
    b[at] ^= 0x01;
    std::fs::write(path, b).expect("write");
}

fn truncate_by(path: &Path, n: usize) {
    let b = std::fs::read(path).expect("read");
    std::fs::write(path, &b[..b.len() - n]).expect("write");
}

fn append(path: &Path, extra: &[u8]) {
    let mut b = std::fs::read(path).expect("read");
    b.extend_from_slice(extra);
    std::fs::write(path, b).expect("write");
}
