//! The barrier's key hierarchy, with no server around it (ARCHITECTURE.md, "Key
//! hierarchy"): unseal key shares → unseal key → root key → keyring terms, each key below
//! the unseal key opened from its wrapped form in the ledger with its context.
//!
//! The server unseals with it, `commands` wraps the keys of a new barrier under its
//! contexts, and the offline tools (`cairn replay --unseal-key-file`) open the values of a
//! past moment with it. Nothing here logs or prints a key, and errors say nothing about one.

pub mod shamir;

use base64::Engine;
use ledger::seal::{Keyring, unwrap};
use zeroize::Zeroizing;

pub use shamir::ShamirError;

/// Contexts (associated data) of the wrapped keys.
pub const ROOT_KEY_CONTEXT: &[u8] = b"root-key";
pub const KEYRING_CONTEXT: &[u8] = b"keyring";
pub const SIGNING_KEY_CONTEXT: &[u8] = b"ledger-signing-key";
pub const HMAC_KEY_CONTEXT: &[u8] = b"hmac-key";

/// Bytes of the unseal key itself (a share has one more: its x coordinate).
pub const KEY_LEN: usize = 32;

/// A key that does not open what was wrapped under the right one (a wrong key, or
/// modified bytes): authenticated decryption cannot tell which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the key does not open the stored keys")]
pub struct WrongKey;

/// Opens a 32-byte key wrapped (`ledger::seal::wrap`) under `key` with `context`.
pub fn unwrap_key(key: &[u8; 32], wrapped: &[u8], context: &[u8]) -> Result<Zeroizing<[u8; 32]>, WrongKey> {
    let plain = unwrap(key, wrapped, context).map_err(|_| WrongKey)?;
    if plain.len() != KEY_LEN {
        return Err(WrongKey);
    }
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    out.copy_from_slice(&plain);
    Ok(out)
}

/// The root key, opened with the unseal key (with auto-unseal, the recovery key plays its
/// part) from the `wrapped_root_key` of the `Initialized` event.
pub fn open_root_key(unseal_key: &[u8; 32], wrapped_root_key: &[u8]) -> Result<Zeroizing<[u8; 32]>, WrongKey> {
    unwrap_key(unseal_key, wrapped_root_key, ROOT_KEY_CONTEXT)
}

/// The keyring: the key of every term, each recorded wrapped under the root key (the
/// projection's `seal.keyring`); the highest term is the active one.
pub fn open_keyring<'a>(
    root_key: &[u8; 32],
    terms: impl IntoIterator<Item = (u32, &'a [u8])>,
) -> Result<Keyring, WrongKey> {
    let mut keyring = Keyring::new();
    for (term, wrapped) in terms {
        keyring.insert(term, &*unwrap_key(root_key, wrapped, KEYRING_CONTEXT)?);
    }
    Ok(keyring)
}

/// A key share as `sys/unseal` takes it and `sys/init` gives it out: hex, else base64
/// (surrounding white space ignored).
pub fn decode_share(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let text = text.trim();
    hex::decode(text).ok().or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok()).map(Zeroizing::new)
}

/// The unseal key from what an operator holds: at least `threshold` shares, or the unseal
/// key itself (32 bytes: what `cairn server -dev` prints and keeps in its data directory).
/// Shares that combine into a wrong key are only caught by [`open_root_key`].
pub fn unseal_key(keys: &[Zeroizing<Vec<u8>>], threshold: usize) -> Result<Zeroizing<[u8; 32]>, ShamirError> {
    if let [key] = keys
        && key.len() == KEY_LEN
    {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        out.copy_from_slice(key);
        return Ok(out);
    }
    shamir::combine(keys, threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::seal::{random_key, wrap};

    /// The keys a `sys/init` records, made the way `commands::sealing` makes them.
    struct Recorded {
        unseal_key: Zeroizing<[u8; 32]>,
        wrapped_root_key: Vec<u8>,
        terms: Vec<(u32, Vec<u8>)>,
        term_keys: Vec<Zeroizing<[u8; 32]>>,
    }

    fn recorded() -> Recorded {
        let (unseal_key, root_key) = (random_key().expect("key"), random_key().expect("key"));
        let wrapped_root_key = wrap(&unseal_key, &*root_key, ROOT_KEY_CONTEXT).expect("wrap");
        let term_keys = vec![random_key().expect("key"), random_key().expect("key")];
        let terms = term_keys
            .iter()
            .zip(1u32..)
            .map(|(k, term)| (term, wrap(&root_key, &**k, KEYRING_CONTEXT).expect("wrap")))
            .collect();
        Recorded { unseal_key, wrapped_root_key, terms, term_keys }
    }

    fn keyring_from(r: &Recorded, keys: &[Zeroizing<Vec<u8>>], threshold: usize) -> Result<Keyring, String> {
        let unseal = unseal_key(keys, threshold).map_err(|e| e.to_string())?;
        let root = open_root_key(&unseal, &r.wrapped_root_key).map_err(|e| e.to_string())?;
        open_keyring(&root, r.terms.iter().map(|(t, w)| (*t, w.as_slice()))).map_err(|e| e.to_string())
    }

    /// A value sealed under each term, as the server seals one.
    fn opens_what_each_term_sealed(r: &Recorded, keyring: &Keyring) {
        for (k, term) in r.term_keys.iter().zip(1u32..) {
            let mut sealer = Keyring::new();
            sealer.insert(term, k);
            let (sealed, slot) = sealer.seal(b"s3cr3t", b"kv2\0m\0p\x001", 0).expect("seal");
            assert_eq!(slot.term(), term);
            let opened = keyring.open(&sealed, &slot, b"kv2\0m\0p\x001").expect("open");
            assert_eq!(opened.as_slice(), b"s3cr3t");
        }
    }

    #[test]
    fn shares_the_server_split_open_the_keyring_it_recorded() {
        let r = recorded();
        let shares = shamir::split(&r.unseal_key, 5, 3).expect("split");
        // As `bao operator init` prints them: hex and base64, both taken.
        let printed: Vec<String> =
            shares
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    if i % 2 == 0 { hex::encode(&**s) } else { base64::engine::general_purpose::STANDARD.encode(&**s) }
                })
                .collect();
        let decoded: Vec<_> = printed.iter().map(|p| decode_share(&format!("{p}\n")).expect("decodes")).collect();
        for pick in [[0, 1, 2], [4, 2, 3]] {
            let keys: Vec<_> = pick.iter().map(|&i| decoded[i].clone()).collect();
            let keyring = keyring_from(&r, &keys, 3).expect("opens");
            assert_eq!(keyring.terms().collect::<Vec<_>>(), [1, 2]);
            assert_eq!(keyring.active_term(), Some(2));
            opens_what_each_term_sealed(&r, &keyring);
        }
        // Four shares of a threshold of three work too.
        assert!(keyring_from(&r, &decoded[..4], 3).is_ok());
    }

    #[test]
    fn the_dev_unseal_key_itself_opens_the_keyring() {
        let r = recorded();
        let key = decode_share(&base64::engine::general_purpose::STANDARD.encode(*r.unseal_key)).expect("decodes");
        opens_what_each_term_sealed(&r, &keyring_from(&r, &[key], 1).expect("opens"));
        // A one-share setup's share is the key at x = 1.
        let share = shamir::split(&r.unseal_key, 1, 1).expect("split");
        opens_what_each_term_sealed(&r, &keyring_from(&r, &share, 1).expect("opens"));
    }

    #[test]
    fn too_few_shares_and_wrong_keys_are_refused_without_a_key_in_the_message() {
        let r = recorded();
        let shares = shamir::split(&r.unseal_key, 5, 3).expect("split");
        assert_eq!(
            keyring_from(&r, &shares[..2], 3).err(),
            Some("2 key shares given, 3 needed".to_string()),
            "too few shares"
        );
        // Shares of another barrier combine into another key, which opens nothing.
        let other = shamir::split(&random_key().expect("key"), 5, 3).expect("split");
        let err = keyring_from(&r, &other[..3], 3).expect_err("refused");
        assert_eq!(err, "the key does not open the stored keys");
        let wrong = Zeroizing::new(random_key().expect("key").to_vec());
        assert_eq!(keyring_from(&r, &[wrong], 1).err().as_deref(), Some("the key does not open the stored keys"));
        // A term wrapped under another root key is refused too, not skipped.
        let mut r2 = recorded();
        r2.terms.push((3, wrap(&random_key().expect("key"), &[7u8; 32], KEYRING_CONTEXT).expect("wrap")));
        let keys = shamir::split(&r2.unseal_key, 1, 1).expect("split");
        assert!(keyring_from(&r2, &keys, 1).is_err());
        assert!(decode_share("not a key!").is_none());
    }
}
