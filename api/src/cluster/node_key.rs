//! Each cluster node's own checkpoint key (DESIGN.md: "in a cluster each node has its own
//! key, registered by event").
//!
//! The seed lives in `<data dir>/raft/node-key`, wrapped (AES-256-GCM) under the cluster's
//! root key with the node id in the associated data, so it is readable only once the node
//! is unsealed, and a copy moved to another node id does not open. It is made at the
//! node's first unseal. The key signs checkpoints only once a `KeyRegistered` event in the
//! ledger names it: a node registers its key when it first leads, in a frame signed by a
//! key the ledger already trusts.

use std::io::Write;
use std::path::{Path, PathBuf};

use ledger::LedgerKey;
use ledger::seal::{unwrap, wrap};
use zeroize::Zeroizing;

fn context(node_id: &str) -> Vec<u8> {
    let mut c = b"cairn.node-key.v1\0".to_vec();
    c.extend_from_slice(node_id.as_bytes());
    c
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("raft").join("node-key")
}

/// Loads this node's key, or makes and saves one (atomically: temporary file, `fsync`,
/// rename, directory `fsync`).
pub fn load_or_create(data_dir: &Path, node_id: &str, root_key: &[u8; 32]) -> Result<LedgerKey, String> {
    let file = path(data_dir);
    let ctx = context(node_id);
    match std::fs::read(&file) {
        Ok(wrapped) => {
            let seed = Zeroizing::new(unwrap(root_key, &wrapped, &ctx).map_err(|_| {
                format!(
                    "{} does not open with this cluster's keys (another cluster's, or another node's)",
                    file.display()
                )
            })?);
            let seed: &[u8; 32] = seed.as_slice().try_into().map_err(|_| format!("{} holds no key", file.display()))?;
            LedgerKey::from_seed(seed).ok_or_else(|| format!("{} holds a weak key", file.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&file, &ctx, root_key),
        Err(e) => Err(format!("cannot read {}: {e}", file.display())),
    }
}

fn create(file: &Path, ctx: &[u8], root_key: &[u8; 32]) -> Result<LedgerKey, String> {
    let (key, seed) = loop {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *seed).map_err(|e| format!("no randomness: {e}"))?;
        if let Some(k) = LedgerKey::from_seed(&seed) {
            break (k, seed);
        }
    };
    let wrapped = wrap(root_key, &*seed, ctx).map_err(|e| format!("cannot wrap the node key: {e}"))?;
    let dir = file.parent().ok_or("no directory for the node key")?;
    ledger::fs::create_private_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("cannot write the node key: {e}"))?;
    tmp.write_all(&wrapped).map_err(|e| format!("cannot write the node key: {e}"))?;
    tmp.as_file().sync_all().map_err(|e| format!("cannot write the node key: {e}"))?;
    tmp.persist(file).map_err(|e| format!("cannot write the node key: {e}"))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_key_is_made_once_and_opens_only_with_its_root_key_and_node_id() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = [7u8; 32];
        let made = load_or_create(dir.path(), "node1", &root).expect("create");
        let again = load_or_create(dir.path(), "node1", &root).expect("load");
        assert_eq!(made.public(), again.public());
        assert!(load_or_create(dir.path(), "node2", &root).is_err(), "another node id");
        assert!(load_or_create(dir.path(), "node1", &[8u8; 32]).is_err(), "another cluster's root key");
    }
}
