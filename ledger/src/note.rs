//! Checkpoints as C2SP signed notes (`c2sp.org/tlog-checkpoint`, `c2sp.org/signed-note`;
//! FORMAT.md §11).
//!
//! The note body is three lines: the origin `cairn.ledger/<ledger id hex>`, the tree size
//! in decimal and the base64 Merkle root. It is signed with Ed25519 by the ledger's
//! signing key, under the key name equal to the origin. This is a second signature, over
//! the note body; the checkpoint record's own signature covers a different message (§3).
//! Parsing is strict: a note is refused unless it is exactly what [`sign`] would produce,
//! apart from the signature lines (unknown ones are ignored, as signed-note asks).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::checkpoint::LedgerId;
use crate::hash::Hash;
use crate::keys::{LedgerKey, PublicKey};

/// Prefix of every cairn origin line (and key name).
pub const ORIGIN_PREFIX: &str = "cairn.ledger/";
/// signed-note signature type of Ed25519.
pub const SIG_TYPE_ED25519: u8 = 0x01;
/// Longest note accepted by [`parse`].
pub const MAX_NOTE_LEN: usize = 64 * 1024;
/// Most signature lines accepted by [`parse`].
pub const MAX_SIGNATURES: usize = 64;
/// Start of a signature line: an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("the note is longer than {MAX_NOTE_LEN} bytes")]
    TooLong,
    #[error("the note holds a control character other than newline")]
    ControlCharacter,
    #[error("the note has no blank line between its text and its signatures")]
    NoSignatureBlock,
    #[error("malformed signature line {0}")]
    BadSignatureLine(usize),
    #[error("the note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    #[error("the note has no signature")]
    NoSignatures,
    #[error("the checkpoint body must be exactly 3 lines (origin, size, root)")]
    BadBody,
    #[error("origin {0:?} is not a cairn ledger (cairn.ledger/<32 hex digits>)")]
    BadOrigin(String),
    #[error("tree size {0:?} is not a canonical decimal u64")]
    BadSize(String),
    #[error("root hash {0:?} is not the canonical base64 of 32 bytes")]
    BadRoot(String),
    #[error("no signature of {origin} by a trusted key verifies")]
    NotTrusted { origin: String },
}

/// The origin line (and key name) of a ledger.
pub fn origin(ledger_id: &LedgerId) -> String {
    format!("{ORIGIN_PREFIX}{}", hex::encode(ledger_id))
}

/// signed-note key id: the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key).
pub fn key_id(name: &str, key: &PublicKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', SIG_TYPE_ED25519]);
    h.update(key.to_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The verifier key string of signed-note (`name+hex key id+base64(0x01 ‖ key)`), as Go's
/// `golang.org/x/mod/sumdb/note` and the C2SP tools read it.
pub fn verifier_key(ledger_id: &LedgerId, key: &PublicKey) -> String {
    let name = origin(ledger_id);
    let mut raw = Vec::with_capacity(33);
    raw.push(SIG_TYPE_ED25519);
    raw.extend_from_slice(&key.to_bytes());
    format!("{name}+{}+{}", hex::encode(key_id(&name, key)), STANDARD.encode(raw))
}

/// The note body (the signed bytes): origin, size, base64 root, each ending in `\n`.
pub fn body(ledger_id: &LedgerId, size: u64, root: &Hash) -> String {
    format!("{}\n{size}\n{}\n", origin(ledger_id), STANDARD.encode(root.0))
}

/// The whole signed note of the tree (`size`, `root`) of a ledger, signed by `key`.
pub fn sign(key: &LedgerKey, ledger_id: &LedgerId, size: u64, root: &Hash) -> String {
    let body = body(ledger_id, size, root);
    let name = origin(ledger_id);
    let mut blob = Vec::with_capacity(68);
    blob.extend_from_slice(&key_id(&name, &key.public()));
    blob.extend_from_slice(&key.sign(body.as_bytes()));
    format!("{body}\n{SIG_PREFIX}{name} {}\n", STANDARD.encode(blob))
}

/// One signature line: key name, key id, and the signature bytes after the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: [u8; 4],
    pub signature: Vec<u8>,
}

/// A parsed (not yet verified) checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed bytes.
    pub body: String,
    pub ledger_id: LedgerId,
    pub size: u64,
    pub root: Hash,
    pub signatures: Vec<NoteSignature>,
}

/// Parses a checkpoint note. Nothing in it is trusted until [`Note::verify`].
pub fn parse(text: &str) -> Result<Note, NoteError> {
    if text.len() > MAX_NOTE_LEN {
        return Err(NoteError::TooLong);
    }
    if text.chars().any(|c| c.is_ascii_control() && c != '\n') {
        return Err(NoteError::ControlCharacter);
    }
    let split = text.rfind("\n\n").ok_or(NoteError::NoSignatureBlock)?;
    let (body, sigs) = (&text[..split + 1], &text[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(NoteError::NoSignatureBlock);
    }
    let mut signatures = Vec::new();
    for (i, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
        if signatures.len() >= MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        signatures.push(parse_signature_line(line).ok_or(NoteError::BadSignatureLine(i + 1))?);
    }
    if signatures.is_empty() {
        return Err(NoteError::NoSignatures);
    }
    let lines: Vec<&str> = body[..body.len() - 1].split('\n').collect();
    let [origin_line, size_line, root_line] = lines.as_slice() else {
        return Err(NoteError::BadBody);
    };
    let ledger_id = parse_origin(origin_line).ok_or_else(|| NoteError::BadOrigin(origin_line.to_string()))?;
    let size = parse_size(size_line).ok_or_else(|| NoteError::BadSize(size_line.to_string()))?;
    let root = parse_root(root_line).ok_or_else(|| NoteError::BadRoot(root_line.to_string()))?;
    Ok(Note { body: body.to_string(), ledger_id, size, root, signatures })
}

fn parse_signature_line(line: &str) -> Option<NoteSignature> {
    let rest = line.strip_prefix(SIG_PREFIX)?;
    let (name, b64) = rest.split_once(' ')?;
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) || b64.contains(' ') {
        return None;
    }
    let blob = STANDARD.decode(b64).ok()?;
    if blob.len() < 5 {
        return None;
    }
    let key_id = [blob[0], blob[1], blob[2], blob[3]];
    Some(NoteSignature { name: name.to_string(), key_id, signature: blob[4..].to_vec() })
}

fn parse_origin(line: &str) -> Option<LedgerId> {
    let hex_id = line.strip_prefix(ORIGIN_PREFIX)?;
    // Lower case only, so one ledger has one origin.
    if hex_id.len() != 32 || !hex_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut id = [0u8; 16];
    hex::decode_to_slice(hex_id, &mut id).ok()?;
    Some(id)
}

fn parse_size(line: &str) -> Option<u64> {
    let canonical =
        !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) && (line == "0" || !line.starts_with('0'));
    if !canonical {
        return None;
    }
    line.parse().ok()
}

fn parse_root(line: &str) -> Option<Hash> {
    let bytes = STANDARD.decode(line).ok()?;
    let root = Hash(<[u8; 32]>::try_from(bytes.as_slice()).ok()?);
    (STANDARD.encode(root.0) == line).then_some(root)
}

impl Note {
    /// The signature-checked tree: some signature line named by the origin, with the key
    /// id of a trusted key, must verify (strictly) over the body. Other lines are ignored.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<(LedgerId, u64, Hash, PublicKey), NoteError> {
        let name = origin(&self.ledger_id);
        for sig in self.signatures.iter().filter(|s| s.name == name) {
            let Ok(signature) = <[u8; 64]>::try_from(sig.signature.as_slice()) else { continue };
            for key in trusted {
                if key_id(&name, key) == sig.key_id && key.verify(self.body.as_bytes(), &signature) {
                    return Ok((self.ledger_id, self.size, self.root, *key));
                }
            }
        }
        Err(NoteError::NotTrusted { origin: name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    fn fixed_key() -> LedgerKey {
        LedgerKey::from_seed(&[0x44; 32]).expect("valid seed")
    }

    #[test]
    fn produced_notes_parse_back_and_verify() {
        let key = fixed_key();
        let id = [0x55u8; 16];
        let root = Hash([0x77; 32]);
        let text = sign(&key, &id, 62, &root);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "cairn.ledger/55555555555555555555555555555555");
        assert_eq!(lines[1], "62");
        assert_eq!(lines[2], STANDARD.encode([0x77; 32]));
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("\u{2014} cairn.ledger/55555555555555555555555555555555 "));
        assert_eq!(lines.len(), 5);
        let note = parse(&text).expect("parses");
        assert_eq!((note.ledger_id, note.size, note.root), (id, 62, root));
        assert_eq!(note.body, body(&id, 62, &root));
        assert_eq!(note.verify(&[key.public()]), Ok((id, 62, root, key.public())));
        let other = LedgerKey::from_seed(&[0x45; 32]).expect("valid seed");
        assert!(matches!(note.verify(&[other.public()]), Err(NoteError::NotTrusted { .. })));
        assert!(note.verify(&[]).is_err());
    }

    /// FORMAT.md §10, computed independently with Python's `hashlib` and `cryptography`.
    #[test]
    fn golden_note() {
        let note = sign(&fixed_key(), &[0x55; 16], 2, &Hash([0x77; 32]));
        let expected = "cairn.ledger/55555555555555555555555555555555\n2\n\
            d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3c=\n\n\
            \u{2014} cairn.ledger/55555555555555555555555555555555 \
            aepdggBBVqTlw8D/z6qo8P3rZX87g3oyD4mVcKB9gEutiKc4aNFP+J2qlEm8xb3e94PHPBKbgMfy76X8VMC8n4uSnwU=\n";
        assert_eq!(note, expected);
        assert_eq!(
            hex::encode(key_id("cairn.ledger/55555555555555555555555555555555", &fixed_key().public())),
            "69ea5d82"
        );
    }

    #[test]
    fn the_signature_is_plain_ed25519_over_the_body() {
        let key = fixed_key();
        let id = [0x55u8; 16];
        let text = sign(&key, &id, 3, &Hash([1; 32]));
        let note = parse(&text).expect("parses");
        let vk = VerifyingKey::from_bytes(&key.public().to_bytes()).expect("key");
        let sig = Signature::from_slice(&note.signatures[0].signature).expect("64 bytes");
        assert!(vk.verify(note.body.as_bytes(), &sig).is_ok());
        assert!(vk.verify_strict(b"cairn.ledger/x\n3\n", &sig).is_err());
    }

    #[test]
    fn key_id_follows_signed_note() {
        let key = fixed_key();
        let name = "cairn.ledger/55555555555555555555555555555555";
        let mut h = Sha256::new();
        h.update(format!("{name}\n").as_bytes());
        h.update([1u8]);
        h.update(key.public().to_bytes());
        assert_eq!(key_id(name, &key.public())[..], h.finalize()[..4]);
        // A different name gives a different id for the same key.
        assert_ne!(key_id(name, &key.public()), key_id("cairn.ledger/other", &key.public()));
        let vkey = verifier_key(&[0x55; 16], &key.public());
        let parts: Vec<&str> = vkey.split('+').collect();
        assert_eq!(parts[0], name);
        assert_eq!(parts[1], hex::encode(key_id(name, &key.public())));
        assert_eq!(STANDARD.decode(parts[2]).expect("b64")[0], 1);
    }

    #[test]
    fn anything_but_the_canonical_form_is_refused() {
        let key = fixed_key();
        let id = [0x55u8; 16];
        let good = sign(&key, &id, 62, &Hash([0x77; 32]));
        let root_line = STANDARD.encode([0x77; 32]);
        let sig_line = good.lines().last().expect("sig line").to_string();
        let bad = [
            good.trim_end().to_string(),
            good.replace("\n62\n", "\n062\n"),
            good.replace("\n62\n", "\n+62\n"),
            good.replace("\n62\n", "\n18446744073709551616\n"),
            good.replace("cairn.ledger/5555", "cairn.ledger/AAAA"),
            good.replace("cairn.ledger/5555", "other.log/5555"),
            good.replace(&root_line, &root_line[..root_line.len() - 1]),
            good.replace(&format!("{root_line}\n"), &format!("{root_line}\nextra\n")),
            good.replace('\n', "\r\n"),
            good.replace(&sig_line, ""),
            good.replace("\u{2014} ", "- "),
            format!("{}\n\n{sig_line}\n", good.lines().next().unwrap_or_default()),
        ];
        for (i, text) in bad.iter().enumerate() {
            assert!(parse(text).is_err(), "case {i} parsed: {text:?}");
        }
        // Another line that is not ours, after ours, is ignored.
        let cosigned = format!("{good}\u{2014} witness.example AAAAAAAAAAAA\n");
        assert!(parse(&cosigned).expect("parses").verify(&[key.public()]).is_ok());
        // A body change breaks the signature.
        let moved = good.replace("\n62\n", "\n63\n");
        assert!(parse(&moved).expect("parses").verify(&[key.public()]).is_err());
    }
}
