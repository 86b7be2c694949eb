//! Fuzz target: arbitrary bytes as a stored event body of any kind and version, decoded as
//! replay and the verifier decode them (`migrations::Event::decode`, and the allocation-free
//! skim of access events). Nothing may panic or allocate without bound (the body codec
//! has a size limit); a body that decodes must encode back to a body that decodes to it.
//! (Not byte for byte: a map's entries may arrive in any order. The chain hashes the stored
//! bytes, so that changes no proof.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use migrations::{Event, access_used_token};

fuzz_target!(|data: &[u8]| {
    // Layout: kind (2 bytes, big-endian), version (2 bytes), then the body.
    if data.len() < 4 {
        return;
    }
    let kind = u16::from_be_bytes([data[0], data[1]]);
    // Kinds the catalogue knows are the ones worth reaching: fold the fuzzer's choice onto
    // them half of the time.
    let kind = if kind & 0x8000 == 0 {
        let known = migrations::CATALOGUE;
        known[usize::from(kind) % known.len()].0
    } else {
        kind & 0x7fff
    };
    let version = u16::from_be_bytes([data[2], data[3]]) % 4;
    let body = &data[4..];
    let _ = access_used_token(body);
    let Ok(event) = Event::decode(kind, version, body) else { return };
    let (k, v, bytes) = event.encode().expect("a decoded event encodes");
    assert_eq!(k, kind);
    let again = Event::decode(k, v, &bytes).expect("an encoded event decodes");
    assert_eq!(again, event, "encode and decode round-trip");
});
