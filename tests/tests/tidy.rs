//! Repository rules that reviews keep asking for, checked mechanically: every Rust file
//! opens with a `//!` line saying what it is for, and crate dependencies point one way
//! (ARCHITECTURE.md, "Dependencies").

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') && name != "fixtures" {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&repo(), &mut files);
    assert!(files.len() > 20, "found only {} files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap_or_default().trim_start().starts_with("//!"))
        .map(|f| f.strip_prefix(repo()).unwrap_or(f).display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a //! module doc: {missing:?}");
}

/// `api → commands → projections → migrations → ledger`; `replay-tools → projections`;
/// `barrier → ledger`, used by `commands`, `api` and `replay-tools`.
#[test]
fn crate_dependencies_point_one_way() {
    let allowed: &[(&str, &[&str])] = &[
        ("ledger", &[]),
        ("cluster", &[]),
        ("barrier", &["cairn-ledger"]),
        ("migrations", &["cairn-ledger"]),
        ("projections", &["cairn-ledger", "cairn-migrations"]),
        ("commands", &["cairn-ledger", "cairn-barrier", "cairn-migrations", "cairn-projections"]),
        ("replay-tools", &["cairn-ledger", "cairn-barrier", "cairn-migrations", "cairn-projections"]),
        (
            "api",
            &[
                "cairn-ledger",
                "cairn-barrier",
                "cairn-migrations",
                "cairn-projections",
                "cairn-commands",
                "cairn-replay",
            ],
        ),
    ];
    let crates = [
        "cairn-ledger",
        "cairn-barrier",
        "cairn-migrations",
        "cairn-projections",
        "cairn-commands",
        "cairn-replay",
        "cairn-api",
    ];
    for (dir, ok) in allowed {
        let manifest = std::fs::read_to_string(repo().join(dir).join("Cargo.toml")).unwrap_or_default();
        let deps = manifest.split("[dependencies]").nth(1).unwrap_or("").split("\n[").next().unwrap_or("");
        for c in crates {
            let uses = deps
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{c}.")) || l.trim_start().starts_with(&format!("{c} ")));
            assert!(!uses || ok.contains(&c), "{dir} must not depend on {c}");
        }
    }
}

/// Handlers act on the canonical path the ACL checked (`api/src/http/path.rs`): none may
/// trim, lowercase or otherwise rewrite a request path of its own. The modules that serve
/// requests are searched for the rewrites that let a trailing `/` or a case change reach
/// an object the ACL did not check.
#[test]
fn no_handler_rewrites_the_request_path() {
    let api = repo().join("api/src");
    let mut files = Vec::new();
    for dir in ["http", "sys", "auth", "engines"] {
        rust_files(&api.join(dir), &mut files);
    }
    files.extend(["identity.rs", "auth_token.rs"].map(|f| api.join(f)));
    let rewrites = ["trim_end_matches('/')", "trim_end_matches(\"/\")", "trim_matches('/')"];
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            let path_like = line.contains("path") || line.contains("rest") || line.contains("name");
            let lowercases = path_like && (line.contains(".to_lowercase()") || line.contains(".to_ascii_lowercase()"));
            if rewrites.iter().any(|r| line.contains(r)) || lowercases && !line.contains("tidy: not a path") {
                found.push(format!("{}:{}: {}", f.strip_prefix(repo()).unwrap_or(f).display(), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "request paths rewritten outside their canonical form: {found:#?}");
}
