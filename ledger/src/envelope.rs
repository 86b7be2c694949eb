//! The event envelope: what every ledger event carries besides its body
//! (FORMAT.md, "Event record").
//!
//! The ledger assigns `seq`, `prev` and `time`; the caller supplies the rest as an
//! [`EventDraft`]. The body is opaque here: kinds below [`FIRST_APPLICATION_KIND`] are the
//! ledger's own (genesis, key rotation, payload erasure, see `system.rs`), every other kind
//! belongs to the layers above and is encoded with [`crate::body`].

use crate::codec::{DecodeError, Decoder, Encoder, fits_short};
use crate::hash::{Hash, event_hash};
use crate::seal::KeySlot;

/// Record tag of an event inside a frame.
pub const EVENT_TAG: u8 = 0x01;
/// Kinds below this number are reserved for the ledger itself.
pub const FIRST_APPLICATION_KIND: u16 = 0x0100;
/// Most erasable key slots one event can own.
pub const MAX_SLOTS_PER_EVENT: usize = 255;
/// Largest body the ledger accepts: above the API's 32 MiB request limit (a sealed value
/// is its plaintext plus 16 bytes), and bounded so a corrupt length cannot make a reader
/// allocate without limit.
pub const MAX_BODY_LEN: usize = 40 << 20;

/// Who caused an event. Never holds a token id: only its accessor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actor {
    /// Accessor of the token that made the request ("" for the server itself).
    pub accessor: String,
    /// Identity entity id (a UUID), when the token has one.
    pub entity_id: Option<[u8; 16]>,
    /// The token's display name.
    pub display_name: String,
    /// Remote address of the request ("" when not from the network).
    pub remote_addr: String,
}

impl Actor {
    /// The server acting on its own behalf (expiry, start-up, key management).
    pub fn system() -> Self {
        Actor { display_name: "system".into(), ..Actor::default() }
    }

    fn fits(&self) -> bool {
        fits_short(self.accessor.as_bytes())
            && fits_short(self.display_name.as_bytes())
            && fits_short(self.remote_addr.as_bytes())
    }
}

/// An event as submitted by a caller, before the ledger gives it a place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventDraft {
    pub kind: u16,
    pub kind_version: u16,
    pub request_id: [u8; 16],
    pub actor: Actor,
    pub body: Vec<u8>,
    /// Wrapped data keys of the payloads sealed in `body`, in slot order.
    pub slots: Vec<KeySlot>,
}

impl EventDraft {
    /// Checks the limits of the format (field lengths, slot count).
    pub fn check(&self) -> Result<(), &'static str> {
        if !self.actor.fits() {
            return Err("an actor field is longer than 255 bytes");
        }
        if self.slots.len() > MAX_SLOTS_PER_EVENT {
            return Err("more than 255 key slots in one event");
        }
        if self.body.len() > MAX_BODY_LEN {
            return Err("event body larger than 40 MiB");
        }
        Ok(())
    }
}

/// An event as stored in the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    /// Hash of event `seq - 1` ([`Hash::ZERO`] for event 1).
    pub prev: Hash,
    /// Commit time, nanoseconds since the Unix epoch (UTC).
    pub time: u64,
    pub kind: u16,
    pub kind_version: u16,
    pub request_id: [u8; 16],
    pub actor: Actor,
    /// Number of key slots this event owns in its frame's slot area.
    pub slot_count: u8,
    pub body: Vec<u8>,
}

impl Event {
    /// The canonical encoding (the bytes that are stored and hashed).
    pub fn encode(&self) -> Vec<u8> {
        let mut e =
            Encoder::with_capacity(96 + self.body.len() + self.actor.accessor.len() + self.actor.display_name.len());
        self.encode_into(&mut e);
        e.into_vec()
    }

    pub fn encode_into(&self, e: &mut Encoder) {
        e.u8(EVENT_TAG)
            .u64(self.seq)
            .raw(&self.prev.0)
            .u64(self.time)
            .u16(self.kind)
            .u16(self.kind_version)
            .raw(&self.request_id)
            .short_bytes(self.actor.accessor.as_bytes())
            .short_bytes(self.actor.entity_id.as_ref().map(|e| &e[..]).unwrap_or(&[]))
            .short_bytes(self.actor.display_name.as_bytes())
            .short_bytes(self.actor.remote_addr.as_bytes())
            .u8(self.slot_count)
            .long_bytes(&self.body);
    }

    /// Decodes one event record from the front of `d` (tag included).
    pub fn decode(d: &mut Decoder<'_>) -> Result<Event, DecodeError> {
        if d.u8()? != EVENT_TAG {
            return Err(DecodeError::Invalid { what: "event tag" });
        }
        let seq = d.u64()?;
        let prev = Hash(d.array()?);
        let time = d.u64()?;
        let kind = d.u16()?;
        let kind_version = d.u16()?;
        let request_id = d.array()?;
        let accessor = d.short_str()?.to_owned();
        let entity_id = match d.short_bytes()? {
            [] => None,
            bytes => Some(<[u8; 16]>::try_from(bytes).map_err(|_| DecodeError::Invalid { what: "entity id length" })?),
        };
        let display_name = d.short_str()?.to_owned();
        let remote_addr = d.short_str()?.to_owned();
        let slot_count = d.u8()?;
        let body = d.long_bytes()?.to_vec();
        Ok(Event {
            seq,
            prev,
            time,
            kind,
            kind_version,
            request_id,
            actor: Actor { accessor, entity_id, display_name, remote_addr },
            slot_count,
            body,
        })
    }

    /// Decodes exactly one event record.
    pub fn from_bytes(bytes: &[u8]) -> Result<Event, DecodeError> {
        let mut d = Decoder::new(bytes);
        let ev = Event::decode(&mut d)?;
        d.finish()?;
        Ok(ev)
    }

    pub fn hash(&self) -> Hash {
        event_hash(&self.encode())
    }

    /// True for the ledger's own kinds (genesis, key rotation, payload erasure).
    pub fn is_system(&self) -> bool {
        self.kind < FIRST_APPLICATION_KIND
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_event() -> impl Strategy<Value = Event> {
        (
            any::<u64>(),
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<(u16, u16)>(),
            any::<[u8; 16]>(),
            ("[a-zA-Z0-9]{0,30}", proptest::option::of(any::<[u8; 16]>()), "\\PC{0,20}", "[0-9.:]{0,40}"),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..600),
        )
            .prop_map(
                |(
                    seq,
                    prev,
                    time,
                    (kind, kind_version),
                    request_id,
                    (accessor, entity_id, display_name, remote_addr),
                    slot_count,
                    body,
                )| Event {
                    seq,
                    prev: Hash(prev),
                    time,
                    kind,
                    kind_version,
                    request_id,
                    actor: Actor { accessor, entity_id, display_name, remote_addr },
                    slot_count,
                    body,
                },
            )
    }

    proptest! {
        #[test]
        fn encoding_round_trips_and_is_canonical(ev in arb_event()) {
            let bytes = ev.encode();
            let back = Event::from_bytes(&bytes).expect("decodes");
            prop_assert_eq!(&back, &ev);
            prop_assert_eq!(back.encode(), bytes.clone());
            // Any strict prefix is rejected, and so is any trailing byte.
            prop_assert!(Event::from_bytes(&bytes[..bytes.len() - 1]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(Event::from_bytes(&longer).is_err());
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Event::from_bytes(&bytes);
        }
    }

    #[test]
    fn typical_envelope_stays_within_the_overhead_budget() {
        // A token accessor (24 chars), an entity (16 bytes), a short display name and an IPv4
        // address: the overhead beyond the body must stay under 150 bytes (issue target).
        let ev = Event {
            seq: 1,
            prev: Hash::ZERO,
            time: 0,
            kind: 0x0100,
            kind_version: 1,
            request_id: [0; 16],
            actor: Actor {
                accessor: "a".repeat(24),
                entity_id: Some([1; 16]),
                display_name: "approle".into(),
                remote_addr: "10.1.2.3".into(),
            },
            slot_count: 0,
            body: vec![0; 300],
        };
        let overhead = ev.encode().len() - 300;
        assert!(overhead <= 150, "overhead {overhead}");
    }
}
