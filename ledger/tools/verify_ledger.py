#!/usr/bin/env python3
"""Independent verifier for cairn ledgers and bundles (ledger format 1, bundle
formats 1 and 2).

Written from ledger/FORMAT.md alone, without reading cairn's Rust sources. It
implements the on-disk layout (§2), hashes and signatures (§3), system events
(§4), the key-slot/erasure accounting of §5, torn tails (§7), the verification
walk of §8 (steps 1-11), partial reads and later erasures (§8.1) and bundles
(§9, formats 1 and 2, with the start state and the later-erasures section).
Checkpoint notes (§11) are read as expected checkpoints. The proof answers of
§12 are not read; RFC 9162 inclusion and consistency proofs are verified where
bundles carry them.

Usage:
    python3 verify_ledger.py PATH [--trusted-key KEY|FILE ...]
                            [--expect-checkpoint FILE] [--to SEQ] [--json]

PATH is a ledger directory (containing segments/), a server data directory
(containing ledger/segments/) or a bundle file (recognised by its magic
CAIRNBDL). KEY is `ed25519:` followed by standard base64 or 64 hex digits;
FILE holds such keys one per line (§8.1). --expect-checkpoint takes the saved
JSON form of §8 (time as a JSON integer or a decimal string), the
`sys/ledger/checkpoint` API answer (fields inside {"data": {...}}) or the
checkpoint note of §11 alone. --to SEQ verifies the ledger directory as a
partial reader of 1..=SEQ would (§8.1).

Exit status: 0 intact, 1 broken, 3 torn tail (§7), 2 usage or I/O error.
The JSON report has "verdict" (intact / torn_tail / broken), "failure"
({seq, reason} or null), "torn_tail" ({after_seq, offset, bytes} or null),
and for compatibility "first_bad_seq": the failure's seq, or for a torn tail
the seq the torn frame would have held.

Ed25519 strictness (§3): signatures are checked with the `cryptography`
package, which is not ed25519-dalek's `verify_strict`. On top of it this
module rejects a signature whose S is not below the group order L, and rejects
a public key A or a signature point R that is of small order. Small order is
decided by decoding the point (accepting non-canonical encodings: y >= p, and
x = 0 with the sign bit set, the way dalek decodes) and checking whether
multiplying it by the cofactor 8 gives the identity. This covers all 8
small-order points in every encoding, canonical or not. Encodings that do not
decode to a curve point at all are rejected.

Checkpoint keys (§4, §8 step 7) are a set: Genesis, KeyRotation and
KeyRegistered events add keys, rotations retire them, and a checkpoint may be
signed by any key active when its frame began.

Choices where FORMAT.md leaves room (each also in the report that came with
this file):
- Torn tails (§7). In the last segment, a frame that cannot be read (incomplete
  header, bad magic, length past the end of the file, CRC mismatch whether or
  not its body decodes, or damaged key slots in the file's final frame) with no
  intact frame (§2.2: magic, length, CRC, body and slot count all good)
  anywhere after it is a torn tail: verdict torn_tail after the last verified
  seq. This is decided before the §8 rules run on that frame. Anywhere else a
  frame with a CRC mismatch whose body decodes goes through the §8 rules first
  (so a changed event is reported at its own seq) and is then reported at its
  first seq (§7: an unreadable frame with intact frames after it is
  corruption; cairn's verifier accepts such a frame when the rules hold); one
  whose body does not decode is reported at the next expected seq. A torn tail
  in the very first frame leaves no frame: broken at seq 1.
- Steps 9-11 also run when the walk ends at a torn tail, on what verified; a
  failure there makes the verdict broken (an expected checkpoint beyond the
  torn tail reports the ledger as truncated).
- A PayloadErased event naming a slot index at or above the target's slot
  count is not a failure: the slot does not exist and nothing is erased (§4
  allows a verifier to skip that bound; bundles cannot know the slot count of
  events before their start, so the bound is skipped everywhere).
- "Erased payloads" counts named slots that are erased or damaged; "pending"
  counts named slots that are still intact.
- A failure of the trusted-key rule (step 10) is reported at the first verified
  seq (1 for a ledger, start_seq for a bundle).
- Expected checkpoint (step 11): the saved JSON, the API answer or its data
  object, or the checkpoint note alone (§11; it pins the size and root, not
  the head, and its signature line named by the origin must verify with a key
  of the ledger). The ledger id must be the ledger's and the signature must
  verify with a key the ledger ever had (any key with that key id); failures
  of those, or a head or root that differs, are reported at the checkpoint's
  seq; a ledger (or bundle) that ends before it is reported as truncated at
  last_seq + 1 (also when its signing key lies beyond the end, so that the
  signature cannot be checked). For a bundle, seq start_seq - 1 is checked
  against the start state; an earlier seq cannot be checked and is a failure
  at start_seq. With --to, the walk goes on to the expected seq if it is beyond
  the range.
- --to SEQ is widened to the end of the frame holding SEQ (as export widens to
  whole frames); what is reported (last seq, counts, keys, last checkpoint) is
  that range's; "proven_to_seq" says how far the reader went past it to prove
  later erasures. --to is refused for bundles (a bundle already is a range).
- Bundles: a failure in the header or start state (frontier, anchor, key
  events and their proofs) is reported at start_seq (cairn's verifier reports
  seq 1); a trailer that does not
  match the frames read, bytes after it, or a missing trailer at last_seq + 1;
  every failure of the later-erasures section at last_seq + 1 (§9). The torn
  tail rule does not apply inside a bundle (export writes it whole), so frame
  CRCs are not checked there (§2.2: the CRC only tells a torn tail from
  corruption; the chain and signatures cover all it covers); a frame that does
  not decode is a failure at the next expected seq, and damaged slots in the
  last frame go to step 9 like any others.
- The anchor (and the later checkpoint) may be signed by a key active after
  the replayed key events or by the key the last of those rotations retired
  (for the later checkpoint, the last rotation among the later key events).
  Registered keys count too. The later key events only decide who may sign
  the later checkpoint: the keys reported (and used for step 10) are the
  bundle's own. A bundle's start-state key events must begin with
  the Genesis at seq 1 and be in strictly increasing seq order; "at most one
  rotation per frame" cannot be checked for proven events and is not.
- Files in segments/ whose names are not 20 digits followed by .seg are
  ignored (§2.1). A last segment holding only its header is accepted if its
  name is the next expected seq; any other segment must hold at least one
  frame.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import struct
import sys
from dataclasses import dataclass, field

import blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# ---------------------------------------------------------------------------
# Constants (§2, §3, §4)

SEGMENT_MAGIC = b"CAIRNSEG"
SEGMENT_HEADER_LEN = 32
FRAME_MAGIC = b"CLF1"
FRAME_HEADER_LEN = 16
SLOT_LEN = 68
CHECKPOINT_LEN = 153
TAG_EVENT = 0x01
TAG_CHECKPOINT = 0x02

KIND_GENESIS = 0x0001
KIND_KEY_ROTATION = 0x0002
KIND_PAYLOAD_ERASED = 0x0003
KIND_KEY_REGISTERED = 0x0004
SYSTEM_KIND_LIMIT = 0x0100

EVENT_DOMAIN = b"cairn.event.v1\x00"
KEY_ID_DOMAIN = b"cairn.key-id.v1\x00"
CHECKPOINT_DOMAIN = b"cairn.checkpoint.v1\x00"
ROTATION_DOMAIN = b"cairn.key-rotation.v1\x00"
REGISTRATION_DOMAIN = b"cairn.key-registration.v1\x00"
MERKLE_NODE_KEY_DOMAIN = b"cairn.merkle-node.v1"

NOTE_ORIGIN = "cairn.ledger/"

SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")


def h(data: bytes) -> bytes:
    """BLAKE3 with a 32-byte output."""
    return blake3.blake3(data).digest()


def h_keyed(key: bytes, data: bytes) -> bytes:
    """BLAKE3 in keyed mode."""
    return blake3.blake3(data, key=key).digest()


NODE_KEY = h(MERKLE_NODE_KEY_DOMAIN)

# ---------------------------------------------------------------------------
# CRC-32C (Castagnoli, reflected polynomial 0x82F63B78)


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------------------
# Ed25519 strict verification (§3)

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decode_point(enc: bytes) -> tuple[int, int] | None:
    """Decode an Edwards point leniently (non-canonical y and x=0 with sign
    bit set are accepted). Returns None if it is not on the curve."""
    y = int.from_bytes(enc, "little") & ((1 << 255) - 1)
    sign = enc[31] >> 7
    y %= _P
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x2 = u * pow(v, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if x & 1 != sign:
        x = (_P - x) % _P
    return x, y


def _point_double(pt: tuple[int, int]) -> tuple[int, int]:
    x, y = pt
    dxxyy = _D * x * x * y * y % _P
    nx = 2 * x * y * pow(1 + dxxyy, _P - 2, _P) % _P
    ny = (y * y + x * x) * pow(1 - dxxyy, _P - 2, _P) % _P
    return nx, ny


def is_small_order_or_invalid(enc: bytes) -> bool:
    """True if `enc` is not a curve point or is a point of order dividing 8."""
    pt = _decode_point(enc)
    if pt is None:
        return True
    for _ in range(3):
        pt = _point_double(pt)
    return pt == (0, 1)


def verify_strict(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Ed25519 verification with dalek's verify_strict extra checks."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    if int.from_bytes(signature[32:], "little") >= _L:
        return False
    if is_small_order_or_invalid(public_key) or is_small_order_or_invalid(signature[:32]):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def key_id(public_key: bytes) -> bytes:
    return h(KEY_ID_DOMAIN + public_key)[:8]


# ---------------------------------------------------------------------------
# Merkle tree (§3): RFC 9162 shape, leaves are event hashes.


def node(left: bytes, right: bytes) -> bytes:
    return h_keyed(NODE_KEY, left + right)


def mth(leaves: list[bytes]) -> bytes:
    """Reference Merkle tree hash (used for golden vectors)."""
    if not leaves:
        return h(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


class Frontier:
    """Roots of the perfect subtrees of the tree so far, largest first."""

    def __init__(self) -> None:
        self.size = 0
        self.nodes: list[tuple[int, bytes]] = []  # (subtree size, root)

    def append(self, leaf: bytes) -> None:
        self.nodes.append((1, leaf))
        self.size += 1
        while len(self.nodes) >= 2 and self.nodes[-1][0] == self.nodes[-2][0]:
            (size, right), (_, left) = self.nodes.pop(), self.nodes.pop()
            self.nodes.append((size * 2, node(left, right)))

    def root(self) -> bytes:
        if not self.nodes:
            return h(b"")
        acc = self.nodes[-1][1]
        for _, sub in reversed(self.nodes[:-1]):
            acc = node(sub, acc)
        return acc


# ---------------------------------------------------------------------------
# Canonical codec (§1)


class DecodeError(Exception):
    pass


class Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise DecodeError("input too short")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]

    def short(self) -> bytes:
        return self.take(self.u8())

    def short_text(self) -> str:
        try:
            return self.short().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid UTF-8") from exc

    def long(self) -> bytes:
        return self.take(self.u32())

    def at_end(self) -> bool:
        return self.pos == len(self.data)

    def finish(self) -> None:
        if not self.at_end():
            raise DecodeError("trailing bytes")


# ---------------------------------------------------------------------------
# Records (§2.3, §2.4, §2.5)


@dataclass
class Event:
    raw: bytes
    seq: int
    prev: bytes
    time: int
    kind: int
    kind_version: int
    slot_count: int
    body: bytes
    hash: bytes = b""
    slots: list[bytes] = field(default_factory=list)


@dataclass
class Checkpoint:
    raw: bytes
    last_seq: int
    head: bytes
    root: bytes
    time: int
    key_id: bytes
    signature: bytes


@dataclass
class Frame:
    offset: int
    events: list[Event]
    checkpoint: Checkpoint
    crc_ok: bool
    slots: list[bytes]


def parse_event(r: Reader) -> Event:
    start = r.pos
    r.u8()  # tag, already checked by the caller
    seq = r.u64()
    prev = r.take(32)
    time = r.u64()
    kind = r.u16()
    kind_version = r.u16()
    r.take(16)  # request_id
    r.short_text()  # accessor
    entity = r.short()
    if len(entity) not in (0, 16):
        raise DecodeError(f"event {seq}: entity_id of {len(entity)} bytes")
    r.short_text()  # display_name
    r.short_text()  # remote_addr
    slot_count = r.u8()
    body = r.long()
    raw = r.data[start:r.pos]
    return Event(raw, seq, prev, time, kind, kind_version, slot_count, body,
                 hash=h(EVENT_DOMAIN + raw))


def parse_checkpoint(r: Reader) -> Checkpoint:
    start = r.pos
    r.u8()  # tag
    last_seq = r.u64()
    head = r.take(32)
    root = r.take(32)
    time = r.u64()
    kid = r.take(8)
    signature = r.take(64)
    return Checkpoint(r.data[start:r.pos], last_seq, head, root, time, kid, signature)


def parse_body(body: bytes) -> tuple[list[Event], Checkpoint]:
    """body := event_record+ ‖ checkpoint_record"""
    r = Reader(body)
    events: list[Event] = []
    while True:
        if r.at_end():
            raise DecodeError("frame body has no checkpoint")
        tag = body[r.pos]
        if tag == TAG_EVENT:
            events.append(parse_event(r))
        elif tag == TAG_CHECKPOINT:
            checkpoint = parse_checkpoint(r)
            r.finish()
            break
        else:
            raise DecodeError(f"unknown record tag 0x{tag:02x}")
    if not events:
        raise DecodeError("frame has no events")
    return events, checkpoint


def slot_state(slot: bytes) -> str:
    """'erased', 'intact' or 'damaged' (§2.5)."""
    if slot == bytes(SLOT_LEN):
        return "erased"
    if crc32c(slot[:64]) == struct.unpack(">I", slot[64:])[0]:
        return "intact"
    return "damaged"


# ---------------------------------------------------------------------------
# RFC 9162 proofs (§3: the tree shape of RFC 9162 with cairn's keyed `node`;
# a leaf is the event hash itself)

MAX_PROOF_LEN = 128


def verify_inclusion(leaf_index: int, tree_size: int, leaf: bytes, path: list[bytes],
                     root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if leaf_index >= tree_size or len(path) > MAX_PROOF_LEN:
        return False
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       path: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, for 1 <= first <= second."""
    if first < 1 or first > second or len(path) > MAX_PROOF_LEN:
        return False
    if first == second:
        return not path and first_root == second_root
    if first & (first - 1) == 0:  # an exact power of two
        path = [first_root] + path
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def frontier_from(tree_size: int, roots: list[bytes]) -> Frontier | None:
    """The frontier of §9 (one root per set bit of tree_size, largest first),
    or None if the count does not match."""
    sizes = [1 << b for b in range(tree_size.bit_length() - 1, -1, -1) if tree_size >> b & 1]
    if len(sizes) != len(roots):
        return None
    f = Frontier()
    f.size = tree_size
    f.nodes = list(zip(sizes, roots))
    return f


# ---------------------------------------------------------------------------
# Frames (§2.2) and torn tails (§7)


class Unreadable(Exception):
    """A frame that cannot be read at all (torn write or corruption)."""


def frame_extent(data: bytes, pos: int) -> tuple[int, int, int, int]:
    """Return (body_len, slot_count, crc, total_len) or raise Unreadable."""
    if len(data) - pos < FRAME_HEADER_LEN:
        raise Unreadable("incomplete frame header")
    if data[pos:pos + 4] != FRAME_MAGIC:
        raise Unreadable("bad frame magic")
    body_len, slot_count, crc = struct.unpack(">III", data[pos + 4:pos + 16])
    total = FRAME_HEADER_LEN + body_len + SLOT_LEN * slot_count
    if pos + total > len(data):
        raise Unreadable("frame length past the end of the data")
    return body_len, slot_count, crc, total


def frame_crc_ok(data: bytes, pos: int, body_len: int, crc: int) -> bool:
    covered = data[pos:pos + 12] + data[pos + 16:pos + 16 + body_len]
    return crc32c(covered) == crc


def is_intact_frame(data: bytes, pos: int) -> bool:
    """§2.2: magic, announced length within the data, CRC, a body of events and
    one checkpoint, and a slot count matching the events'."""
    try:
        body_len, slot_count, crc, _ = frame_extent(data, pos)
        if not frame_crc_ok(data, pos, body_len, crc):
            return False
        events, _ = parse_body(data[pos + 16:pos + 16 + body_len])
    except (Unreadable, DecodeError):
        return False
    return sum(ev.slot_count for ev in events) == slot_count


def intact_frame_after(data: bytes, pos: int) -> bool:
    """Is there an intact frame starting anywhere after `pos`?"""
    start = data.find(FRAME_MAGIC, pos + 1)
    while start != -1:
        if is_intact_frame(data, start):
            return True
        start = data.find(FRAME_MAGIC, start + 1)
    return False


# ---------------------------------------------------------------------------
# Verification state (§8)


class Broken(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


class TornTail(Exception):
    """§7: an unreadable frame that recovery would cut."""

    def __init__(self, after_seq: int, offset: int, length: int, reason: str) -> None:
        super().__init__(reason)
        self.after_seq = after_seq
        self.offset = offset
        self.length = length
        self.reason = reason


@dataclass
class KeyRecord:
    public_key: bytes
    registered_at: int
    retired_at: int | None = None

    @property
    def kid(self) -> bytes:
        return key_id(self.public_key)

    def may_sign(self, first_seq: int) -> bool:
        """Active when the frame starting at first_seq began (§8 step 7); the
        Genesis key also signs its own frame."""
        registered = self.registered_at < first_seq or self.registered_at == 1
        return registered and (self.retired_at is None or self.retired_at >= first_seq)

    def as_json(self) -> dict:
        return {"key_id": self.kid.hex(), "public_key": "ed25519:" +
                base64.b64encode(self.public_key).decode(),
                "registered_at": self.registered_at, "retired_at": self.retired_at}


@dataclass
class Expected:
    """A saved checkpoint (§8 step 11): the JSON form, or a checkpoint note
    (§11), which has no head, time or checkpoint signature but its body and
    signature lines (key id of 4 bytes, signature)."""
    ledger_id: bytes
    seq: int
    head: bytes | None
    root: bytes
    time: int = 0
    key_id: bytes = b""
    signature: bytes = b""
    note_body: bytes | None = None
    note_sigs: list[tuple[bytes, bytes]] = field(default_factory=list)

    def signed_by(self, keys: list[KeyRecord]) -> tuple[bool, bool]:
        """(signed by one of `keys`, some key of `keys` has the key id)."""
        if self.note_body is not None:
            origin = NOTE_ORIGIN + self.ledger_id.hex()
            signers = [(k.public_key, sig) for k in keys for kid, sig in self.note_sigs
                       if note_key_id(origin, k.public_key) == kid]
            return (any(verify_strict(pk, self.note_body, sig) for pk, sig in signers),
                    bool(signers))
        msg = (CHECKPOINT_DOMAIN + self.ledger_id + struct.pack(">Q", self.seq)
               + (self.head or b"") + self.root + struct.pack(">Q", self.time) + self.key_id)
        signers = [k.public_key for k in keys if k.kid == self.key_id]
        return any(verify_strict(pk, msg, self.signature) for pk in signers), bool(signers)


@dataclass
class RangeEnd:
    """What a partial read reports: the state at the end of its range."""
    last_seq: int
    head: bytes
    checkpoints: int
    last_checkpoint: Checkpoint | None
    keys: list[KeyRecord]


@dataclass
class State:
    ledger_id: bytes | None = None
    first_seq: int = 1
    next_seq: int = 1
    head: bytes = bytes(32)
    last_time: int = 0
    tree: Frontier = field(default_factory=Frontier)
    # every checkpoint key the ledger registered, oldest first
    keys: list[KeyRecord] = field(default_factory=list)
    checkpoints: int = 0
    last_checkpoint: Checkpoint | None = None
    # (seq, slot index) -> "erased" | "damaged", for events of the range only
    bad_slots: dict[tuple[int, int], str] = field(default_factory=dict)
    named_slots: set[tuple[int, int]] = field(default_factory=set)
    unnamed: set[tuple[int, int]] = field(default_factory=set)
    slot_counts: dict[int, int] = field(default_factory=dict)
    # partial reads (§8.1)
    to_seq: int | None = None
    range_end: RangeEnd | None = None
    # expected checkpoint (step 11): the event hash and root at its seq
    expect: Expected | None = None
    at_expected: tuple[bytes, bytes] | None = None

    def in_range(self) -> bool:
        return self.range_end is None

    def last_read(self) -> int:
        return self.next_seq - 1

    def done(self) -> bool:
        """A partial read may stop: its range is read, every erased or damaged
        slot of it is named, and the expected checkpoint's seq is reached."""
        if self.range_end is None or self.unnamed:
            return False
        return self.expect is None or self.next_seq > self.expect.seq

    def name_slots(self, target: int, indexes: list[int]) -> None:
        for i in indexes:
            self.named_slots.add((target, i))
            self.unnamed.discard((target, i))


def check_link(state: State, frame: Frame, i: int) -> None:
    """Step 2, including which event is the culprit."""
    ev = frame.events[i]
    if ev.prev == state.head:
        return
    if i > 0:
        if i + 1 < len(frame.events):
            following_prev = frame.events[i + 1].prev
        else:
            following_prev = frame.checkpoint.head
        if following_prev == ev.hash:
            raise Broken(ev.seq - 1, f"event {ev.seq - 1} was changed "
                         f"(event {ev.seq}'s prev does not match its hash)")
    raise Broken(ev.seq, f"event {ev.seq} was changed "
                 f"(its prev does not match the hash of event {ev.seq - 1})")


# ---------------------------------------------------------------------------
# System events (§4, §8 step 4)


def check_genesis(state: State, ev: Event) -> None:
    r = Reader(ev.body)
    try:
        lid = r.take(16)
        pk = r.take(32)
        r.finish()
    except DecodeError as exc:
        raise Broken(ev.seq, f"malformed Genesis body: {exc}") from exc
    if lid != state.ledger_id:
        raise Broken(ev.seq, "Genesis ledger id differs from the ledger's")
    if is_small_order_or_invalid(pk):
        raise Broken(ev.seq, "Genesis public key is weak (small order) or invalid")
    state.keys.append(KeyRecord(pk, 1))


def active_record(state: State, kid: bytes) -> KeyRecord | None:
    for rec in state.keys:
        if rec.retired_at is None and rec.kid == kid:
            return rec
    return None


def check_rotation(state: State, ev: Event) -> KeyRecord:
    """Returns the retired key's record."""
    r = Reader(ev.body)
    try:
        old_kid = r.take(8)
        new_pk = r.take(32)
        proof = r.take(64)
        r.finish()
    except DecodeError as exc:
        raise Broken(ev.seq, f"malformed KeyRotation body: {exc}") from exc
    old = active_record(state, old_kid)
    if old is None:
        raise Broken(ev.seq, "key rotation does not start from an active key")
    if is_small_order_or_invalid(new_pk):
        raise Broken(ev.seq, "key rotation to a weak (small-order) or invalid key")
    message = ROTATION_DOMAIN + state.ledger_id + old_kid + new_pk
    if not verify_strict(new_pk, message, proof):
        raise Broken(ev.seq, "key rotation proof of possession does not verify")
    new_kid = key_id(new_pk)
    if new_kid != old_kid and active_record(state, new_kid) is not None:
        raise Broken(ev.seq, "key rotation to a key that is already active")
    # Key events count at once for later events of the frame; which keys may
    # sign the frame's checkpoint is decided by registered_at/retired_at.
    old.retired_at = ev.seq
    state.keys.append(KeyRecord(new_pk, ev.seq))
    return old


def check_registration(state: State, ev: Event) -> None:
    r = Reader(ev.body)
    try:
        pk = r.take(32)
        proof = r.take(64)
        r.finish()
    except DecodeError as exc:
        raise Broken(ev.seq, f"malformed KeyRegistered body: {exc}") from exc
    if is_small_order_or_invalid(pk):
        raise Broken(ev.seq, "key registration of a weak (small-order) or invalid key")
    if not verify_strict(pk, REGISTRATION_DOMAIN + state.ledger_id + pk, proof):
        raise Broken(ev.seq, "key registration proof of possession does not verify")
    kid = key_id(pk)
    if any(rec.kid == kid for rec in state.keys):
        raise Broken(ev.seq, "key registered twice (the ledger already has or had it)")
    state.keys.append(KeyRecord(pk, ev.seq))


def decode_erasure(ev: Event, fail_seq: int) -> tuple[int, list[int]]:
    """A PayloadErased body: target seq and slot indexes (§4)."""
    r = Reader(ev.body)
    try:
        target = r.u64()
        indexes = list(r.short())
        r.finish()
    except DecodeError as exc:
        raise Broken(fail_seq, f"malformed PayloadErased body at seq {ev.seq}: {exc}") from exc
    if not indexes:
        raise Broken(fail_seq, f"PayloadErased at seq {ev.seq} names no slots")
    if any(a >= b for a, b in zip(indexes, indexes[1:])):
        raise Broken(fail_seq, f"PayloadErased at seq {ev.seq}: slot indexes not "
                     "strictly increasing")
    return target, indexes


def check_erasure(state: State, ev: Event) -> None:
    target, indexes = decode_erasure(ev, ev.seq)
    if not 1 <= target < ev.seq:
        raise Broken(ev.seq, f"PayloadErased names seq {target}, not an earlier event")
    state.name_slots(target, indexes)


def check_system_kind(ev: Event, fail_seq: int) -> None:
    if ev.kind not in (KIND_GENESIS, KIND_KEY_ROTATION, KIND_PAYLOAD_ERASED,
                       KIND_KEY_REGISTERED):
        raise Broken(fail_seq, f"unknown system kind 0x{ev.kind:04x} at seq {ev.seq}")
    if ev.kind_version != 1:
        raise Broken(fail_seq, f"unknown version {ev.kind_version} of system kind "
                     f"0x{ev.kind:04x} at seq {ev.seq}")


def check_system_event(state: State, ev: Event) -> KeyRecord | None:
    """Step 4. Returns the retired key's record if this event is a rotation."""
    if ev.seq == 1 and ev.kind != KIND_GENESIS:
        raise Broken(ev.seq, "event 1 is not a Genesis")
    if ev.kind >= SYSTEM_KIND_LIMIT:
        return None
    check_system_kind(ev, ev.seq)
    if ev.kind == KIND_GENESIS:
        if ev.seq != 1:
            raise Broken(ev.seq, "Genesis event after event 1")
        check_genesis(state, ev)
        return None
    if ev.kind == KIND_KEY_ROTATION:
        return check_rotation(state, ev)
    if ev.kind == KIND_KEY_REGISTERED:
        check_registration(state, ev)
        return None
    check_erasure(state, ev)
    return None


# ---------------------------------------------------------------------------
# The walk over frames (§8 steps 1-8)


def check_event(state: State, frame: Frame, i: int) -> KeyRecord | None:
    """Steps 1-5 for event i of the frame."""
    ev = frame.events[i]
    if ev.seq > state.next_seq:
        raise Broken(state.next_seq, f"event {state.next_seq} is missing "
                     f"(found seq {ev.seq})")
    if ev.seq < state.next_seq:
        raise Broken(state.next_seq, f"event {state.next_seq} expected, found seq "
                     f"{ev.seq} (reordered or duplicated)")
    check_link(state, frame, i)
    if ev.seq > 1 and ev.time < state.last_time:
        raise Broken(ev.seq, "time is before the previous event's time")
    retired = check_system_event(state, ev)
    state.head = ev.hash
    state.tree.append(ev.hash)
    state.last_time = ev.time
    if state.in_range():
        state.slot_counts[ev.seq] = ev.slot_count
    if state.expect is not None and ev.seq == state.expect.seq:
        state.at_expected = (ev.hash, state.tree.root())
    state.next_seq += 1
    return retired


def checkpoint_message(ledger_id: bytes, cp: Checkpoint) -> bytes:
    """§3: the signed fields are the record's bytes after its tag, up to the
    key id."""
    return CHECKPOINT_DOMAIN + ledger_id + cp.raw[1:1 + 8 + 32 + 32 + 8 + 8]


def check_checkpoint(state: State, frame: Frame, first_seq: int) -> None:
    """Steps 6 and 7."""
    cp = frame.checkpoint
    last = frame.events[-1]
    if cp.last_seq != last.seq:
        raise Broken(first_seq, f"checkpoint last_seq {cp.last_seq} is not the frame's "
                     f"last event {last.seq}")
    if cp.head != state.head:
        raise Broken(last.seq, "checkpoint head does not match the hash of event "
                     f"{last.seq}")
    if cp.root != state.tree.root():
        raise Broken(first_seq, "checkpoint root does not match the Merkle root")
    if cp.time < last.time:
        raise Broken(last.seq, "checkpoint time is before its events' time")
    signers = [rec.public_key for rec in state.keys
               if rec.may_sign(first_seq) and rec.kid == cp.key_id]
    if not signers:
        raise Broken(first_seq, "checkpoint is not signed by a key active when its "
                     "frame began")
    message = checkpoint_message(state.ledger_id, cp)
    if not any(verify_strict(pk, message, cp.signature) for pk in signers):
        raise Broken(first_seq, "checkpoint signature does not verify")


def account_slots(state: State, frame: Frame) -> None:
    """Record the erased and damaged slots of the range's events."""
    if not state.in_range():
        return
    pos = 0
    for ev in frame.events:
        for idx in range(ev.slot_count):
            status = slot_state(frame.slots[pos])
            pos += 1
            if status == "intact":
                continue
            state.bad_slots[(ev.seq, idx)] = status
            if (ev.seq, idx) not in state.named_slots:
                state.unnamed.add((ev.seq, idx))


def verify_frame(state: State, frame: Frame) -> None:
    """Steps 1-8 for one decoded frame (slot counts already checked)."""
    first_seq = state.next_seq
    rotated = False
    for i, ev in enumerate(frame.events):
        if check_event(state, frame, i) is not None:
            if rotated:
                raise Broken(ev.seq, "more than one key rotation in one frame")
            rotated = True
    check_checkpoint(state, frame, first_seq)
    # Step 8: key events already updated state.keys; their registered_at and
    # retired_at make them count from the next frame on.


def finish_frame(state: State, frame: Frame) -> None:
    """After a frame verified: slots, counts, and the end of a partial read."""
    account_slots(state, frame)
    if not state.in_range():
        return
    state.checkpoints += 1
    state.last_checkpoint = frame.checkpoint
    if state.to_seq is not None and frame.checkpoint.last_seq >= state.to_seq:
        state.range_end = RangeEnd(
            frame.checkpoint.last_seq, state.head, state.checkpoints, frame.checkpoint,
            [KeyRecord(k.public_key, k.registered_at, k.retired_at) for k in state.keys])


def read_and_verify_frame(state: State, data: bytes, pos: int, torn_rule: bool,
                          in_bundle: bool = False) -> int:
    """Read the frame at `pos` and run it through §8. `torn_rule` says the
    torn-tail rule of §7 applies (the last segment of a ledger). In a bundle the
    CRC is not checked: §7 does not apply there, and the §8 rules cover
    everything the CRC does. Returns the position after the frame."""
    def torn(why: str) -> TornTail:
        return TornTail(state.last_read(), pos, len(data) - pos,
                        f"torn tail: {why}")

    try:
        body_len, slot_count, crc, total = frame_extent(data, pos)
    except Unreadable as exc:
        if torn_rule and not intact_frame_after(data, pos):
            raise torn(str(exc)) from exc
        raise Broken(state.next_seq, f"unreadable frame ({exc})"
                     + (" that is not a torn tail (intact data follows it)"
                        if torn_rule else "")) from exc
    crc_ok = in_bundle or frame_crc_ok(data, pos, body_len, crc)
    if not crc_ok and torn_rule and not intact_frame_after(data, pos):
        raise torn("frame CRC mismatch")
    body = data[pos + 16:pos + 16 + body_len]
    try:
        events, checkpoint = parse_body(body)
    except DecodeError as exc:
        if not crc_ok:
            raise Broken(state.next_seq, f"unreadable frame (CRC mismatch and "
                         f"undecodable body: {exc})") from exc
        raise Broken(state.next_seq, f"malformed frame: {exc}") from exc
    slots_start = pos + 16 + body_len
    slots = [data[slots_start + i * SLOT_LEN:slots_start + (i + 1) * SLOT_LEN]
             for i in range(slot_count)]
    expected_slots = sum(ev.slot_count for ev in events)
    if expected_slots != slot_count:
        raise Broken(state.next_seq, f"frame slot_count {slot_count} is not the sum "
                     f"of its events' slot counts ({expected_slots})")
    final = pos + total == len(data)
    if torn_rule and final and any(slot_state(s) == "damaged" for s in slots):
        raise torn("damaged key slots in the final frame")
    frame = Frame(pos, events, checkpoint, crc_ok, slots)
    first_seq = state.next_seq
    verify_frame(state, frame)
    if not crc_ok:
        raise Broken(first_seq, "corrupt frame: CRC mismatch (not at the tail)")
    finish_frame(state, frame)
    return pos + total


# ---------------------------------------------------------------------------
# The end of the walk (§8 steps 9-11)


def check_erasure_accounting(state: State) -> None:
    """Step 9: every erased or damaged slot of the range is named."""
    last = state.last_read()
    for (seq, idx), status in sorted(state.bad_slots.items()):
        if (seq, idx) in state.named_slots:
            continue
        if status == "erased":
            raise Broken(seq, f"key slot {idx} of event {seq} is erased but no "
                         "PayloadErased event names it: the ledger was truncated after "
                         f"seq {last} (its erase event would follow), or the slot was "
                         "zeroed by hand")
        raise Broken(seq, f"key slot {idx} of event {seq} is damaged (neither intact "
                     "nor erased) and no PayloadErased event names it")


def check_trusted(keys: list[KeyRecord], trusted: list[bytes], first_seq: int) -> None:
    """Step 10."""
    if trusted and not any(rec.public_key in trusted for rec in keys):
        raise Broken(first_seq, "no key the ledger ever had is trusted")


def check_expected(state: State, keys: list[KeyRecord], last_seq: int,
                   start: tuple[bytes, bytes] | None = None) -> str | None:
    """Step 11. `start` is a bundle's (head, root) at start_seq - 1."""
    exp = state.expect
    if exp is None:
        return None
    if exp.ledger_id != state.ledger_id:
        raise Broken(exp.seq, "the expected checkpoint is of another ledger "
                     f"({exp.ledger_id.hex()})")
    signed, known = exp.signed_by(keys)
    if exp.seq > last_seq and (signed or not known):
        # A key the truncated ledger never reached cannot be checked here.
        raise Broken(last_seq + 1, f"truncated: the ledger ends at seq {last_seq}, "
                     f"before the expected checkpoint's seq {exp.seq}"
                     + ("" if signed else " (whose signing key the ledger does not "
                        "reach, so its signature is unchecked)"))
    if not signed:
        raise Broken(exp.seq, "the expected checkpoint is not signed by any of the "
                     "ledger's keys")
    if start is not None and exp.seq == state.first_seq - 1:
        found = start
    elif exp.seq < state.first_seq:
        raise Broken(state.first_seq, f"the expected checkpoint's seq {exp.seq} is "
                     "before what this bundle can prove")
    else:
        found = state.at_expected
    assert found is not None
    if exp.head is not None and found[0] != exp.head:
        raise Broken(exp.seq, f"the hash of event {exp.seq} differs from the expected "
                     "checkpoint's head")
    if found[1] != exp.root:
        raise Broken(exp.seq, f"the Merkle root at seq {exp.seq} differs from the "
                     "expected checkpoint's root")
    return f"matched at seq {exp.seq}"


# ---------------------------------------------------------------------------
# Reports


@dataclass
class Report:
    kind: str  # "ledger" or "bundle"
    verdict: str  # "intact", "torn_tail" or "broken"
    ledger_id: bytes | None
    first_seq: int
    last_seq: int
    head: bytes | None
    checkpoints: int
    keys: list[KeyRecord]
    erased: int
    pending: int
    failure: tuple[int | None, str] | None = None
    torn_tail: TornTail | None = None
    expected: str | None = None
    last_checkpoint: Checkpoint | None = None
    proven_to_seq: int | None = None
    later: dict | None = None

    @property
    def intact(self) -> bool:
        return self.verdict == "intact"

    @property
    def events(self) -> int:
        return max(0, self.last_seq - self.first_seq + 1)

    def first_bad_seq(self) -> int | None:
        if self.failure is not None:
            return self.failure[0]
        if self.torn_tail is not None:
            return self.torn_tail.after_seq + 1
        return None


def make_report(kind: str, state: State, failure: Broken | None,
                torn: TornTail | None, expected: str | None = None,
                later: dict | None = None) -> Report:
    end = state.range_end
    if end is not None:
        last_seq, head, checkpoints, last_cp, keys = (
            end.last_seq, end.head, end.checkpoints, end.last_checkpoint, end.keys)
        proven_to = state.last_read() if state.last_read() > end.last_seq else None
    else:
        last_seq, head, checkpoints, last_cp, keys = (
            state.last_read(), state.head, state.checkpoints, state.last_checkpoint,
            state.keys)
        proven_to = None
    erased = sum(1 for k in state.bad_slots if k in state.named_slots)
    pending = sum(1 for (t, i) in state.named_slots
                  if (t, i) not in state.bad_slots and t in state.slot_counts
                  and i < state.slot_counts[t] and t <= last_seq)
    if failure is not None:
        verdict = "broken"
    elif torn is not None:
        verdict = "torn_tail"
    else:
        verdict = "intact"
    return Report(kind, verdict, state.ledger_id, state.first_seq, last_seq,
                  head if last_seq >= state.first_seq else None, checkpoints, keys, erased,
                  pending,
                  (failure.seq, failure.reason) if failure else None, torn, expected,
                  last_cp, proven_to, later)


def finish(kind: str, state: State, trusted: list[bytes], torn: TornTail | None,
           start: tuple[bytes, bytes] | None = None, later: dict | None = None) -> Report:
    """Steps 9-11 after a walk that found no failure."""
    end = state.range_end
    keys = end.keys if end is not None else state.keys
    try:
        check_erasure_accounting(state)
        check_trusted(keys, trusted, state.first_seq)
        # The expected checkpoint may lie past a partial read's range: the
        # walk went on to it, so it is checked against everything read.
        expected = check_expected(state, state.keys, state.last_read(), start)
    except Broken as b:
        return make_report(kind, state, b, torn, later=later)
    return make_report(kind, state, None, torn, expected, later)


# ---------------------------------------------------------------------------
# Ledger directories (§2.1)


def list_segments(seg_dir: str) -> list[tuple[int, str]]:
    segments = []
    for name in os.listdir(seg_dir):
        m = SEGMENT_NAME.match(name)
        if m:  # §2.1: other names are ignored
            segments.append((int(m.group(1)), os.path.join(seg_dir, name)))
    segments.sort()
    return segments


def check_segment_header(data: bytes, state: State, name_seq: int) -> None:
    if len(data) < SEGMENT_HEADER_LEN:
        raise Broken(state.next_seq, f"segment {name_seq:020d}: incomplete header")
    magic, fmt, reserved = struct.unpack(">8sII", data[:16])
    if magic != SEGMENT_MAGIC or fmt != 1 or reserved != 0:
        raise Broken(state.next_seq, f"segment {name_seq:020d}: bad header")
    lid = data[16:32]
    if state.ledger_id is None:
        state.ledger_id = lid
    elif lid != state.ledger_id:
        raise Broken(state.next_seq, f"segment {name_seq:020d}: ledger id differs")


def walk_segments(state: State, seg_dir: str) -> None:
    segments = list_segments(seg_dir)
    if not segments:
        raise Broken(1, "ledger has no segments (event 1 is missing)")
    for n, (name_seq, path) in enumerate(segments):
        if state.done():
            return
        is_last = n == len(segments) - 1
        with open(path, "rb") as f:
            data = f.read()
        check_segment_header(data, state, name_seq)
        if name_seq != state.next_seq:
            raise Broken(state.next_seq, f"segment {name_seq:020d} should start at "
                         f"seq {state.next_seq}")
        pos = SEGMENT_HEADER_LEN
        if pos == len(data) and not is_last:
            raise Broken(state.next_seq, f"segment {name_seq:020d} holds no frames")
        while pos < len(data):
            if state.done():
                return
            pos = read_and_verify_frame(state, data, pos, is_last)


def verify_ledger(seg_dir: str, trusted: list[bytes], expect: Expected | None = None,
                  to_seq: int | None = None) -> Report:
    """Walk a ledger directory's segments. Raises OSError on I/O errors."""
    state = State(expect=expect, to_seq=to_seq)
    torn = None
    try:
        walk_segments(state, seg_dir)
    except Broken as b:
        return make_report("ledger", state, b, None)
    except TornTail as t:
        torn = t
    if state.next_seq == 1:
        return make_report("ledger", state, Broken(1, "ledger has no intact frame "
                                                   "(event 1 is missing)"), None)
    return finish("ledger", state, trusted, torn)


# ---------------------------------------------------------------------------
# Bundles (§9)

BUNDLE_MAGIC = b"CAIRNBDL"
BUNDLE_LATER = b"CAIRNLTR"
BUNDLE_END = b"CAIRNEND"
BUNDLE_HEADER_LEN = 8 + 4 + 16 + 8
TRAILER_LEN = 8 + 8 + 8


def read_proven_events(r: Reader) -> list[tuple[Event, list[bytes]]]:
    """count u32 ‖ (long(event_record) ‖ proof_len u8 ‖ bytes[32] × proof_len)*"""
    out = []
    for _ in range(r.u32()):
        raw = r.long()
        er = Reader(raw)
        if not raw or raw[0] != TAG_EVENT:
            raise DecodeError("proven event is not an event record")
        ev = parse_event(er)
        er.finish()
        n = r.u8()
        if n > MAX_PROOF_LEN:
            raise DecodeError(f"proof path of {n} hashes (more than {MAX_PROOF_LEN})")
        out.append((ev, [r.take(32) for _ in range(n)]))
    return out


def read_checkpoint_record(r: Reader) -> Checkpoint:
    if r.pos >= len(r.data) or r.data[r.pos] != TAG_CHECKPOINT:
        raise DecodeError("not a checkpoint record")
    return parse_checkpoint(r)


def signed_by_replayed_keys(state: State, cp: Checkpoint, last_retired: KeyRecord | None
                            ) -> bool:
    """§9: signed by a key active after the replayed key events, or by the key
    the last rotation retired when that rotation is the checkpoint's last event."""
    candidates = [k for k in state.keys if k.retired_at is None]
    # The retired key signs only the frame that ends with its own rotation.
    if last_retired is not None and last_retired.retired_at == cp.last_seq:
        candidates.append(last_retired)
    message = checkpoint_message(state.ledger_id, cp)
    return any(k.kid == cp.key_id and verify_strict(k.public_key, message, cp.signature)
               for k in candidates)


def replay_key_events(state: State, events: list[tuple[Event, list[bytes]]],
                      tree_size: int, root: bytes, fail_seq: int, after: int,
                      allow_genesis: bool) -> KeyRecord | None:
    """Replay proven key events (§9) onto state.keys with the rules of §4.
    Returns the record the last rotation retired, if any."""
    last_retired = None
    prev_seq = after
    for ev, path in events:
        if ev.seq <= prev_seq:
            raise Broken(fail_seq, f"proven key event {ev.seq} is out of order")
        if ev.seq > tree_size:
            raise Broken(fail_seq, f"proven key event {ev.seq} is past the tree of "
                         f"{tree_size} events it is proven against")
        prev_seq = ev.seq
        if not verify_inclusion(ev.seq - 1, tree_size, ev.hash, path, root):
            raise Broken(fail_seq, f"inclusion proof of key event {ev.seq} does not "
                         "verify")
        if ev.kind not in (KIND_GENESIS, KIND_KEY_ROTATION, KIND_KEY_REGISTERED):
            raise Broken(fail_seq, f"proven event {ev.seq} (kind 0x{ev.kind:04x}) is "
                         "not a key event")
        check_system_kind(ev, fail_seq)
        try:
            if ev.kind == KIND_GENESIS:
                if not allow_genesis or ev.seq != 1:
                    raise Broken(ev.seq, "Genesis event after event 1")
                check_genesis(state, ev)
            elif not state.keys:
                raise Broken(ev.seq, "key events do not start with the Genesis")
            elif ev.kind == KIND_KEY_ROTATION:
                last_retired = check_rotation(state, ev)
            else:
                check_registration(state, ev)
        except Broken as b:
            raise Broken(fail_seq, f"proven key event {ev.seq}: {b.reason}") from b
    if allow_genesis and not state.keys:
        raise Broken(fail_seq, "the start state has no Genesis")
    return last_retired


def read_start_state(state: State, r: Reader, start_seq: int) -> tuple[bytes, bytes]:
    """§9 start_state. Returns (head, root) at start_seq - 1."""
    fail = start_seq
    try:
        head = r.take(32)
        last_time = r.u64()
        tree_size = r.u64()
        roots = [r.take(32) for _ in range(r.u32())] if tree_size == start_seq - 1 else None
        if roots is None:
            raise Broken(fail, f"start state tree_size {tree_size} is not start_seq - 1 "
                         f"({start_seq - 1})")
        anchor = read_checkpoint_record(r)
        key_events = read_proven_events(r)
    except DecodeError as exc:
        raise Broken(fail, f"bundle start state does not decode: {exc}") from exc
    frontier = frontier_from(tree_size, roots)
    if frontier is None:
        raise Broken(fail, f"start state frontier has {len(roots)} roots, not one per "
                     f"set bit of {tree_size}")
    root = frontier.root()
    if anchor.last_seq != start_seq - 1:
        raise Broken(fail, f"anchor checkpoint covers seq {anchor.last_seq}, not "
                     f"{start_seq - 1}")
    if anchor.head != head:
        raise Broken(fail, "anchor checkpoint head differs from the start state's head")
    if anchor.root != root:
        raise Broken(fail, "anchor checkpoint root differs from the frontier's root")
    last_retired = replay_key_events(state, key_events, tree_size, root, fail, 0, True)
    if not signed_by_replayed_keys(state, anchor, last_retired):
        raise Broken(fail, "anchor checkpoint is not signed by a key of the start state")
    state.next_seq = start_seq
    state.head = head
    state.last_time = last_time
    state.tree = frontier
    return head, root


def read_later_erasures(state: State, r: Reader, bundle_last: int) -> dict:
    """§9 later_erasures, after the last frame. Failures at last_seq + 1."""
    fail = bundle_last + 1
    try:
        later = read_checkpoint_record(r)
        n = r.u8()
        if n > MAX_PROOF_LEN:
            raise DecodeError(f"consistency proof of {n} hashes (more than "
                              f"{MAX_PROOF_LEN})")
        consistency = [r.take(32) for _ in range(n)]
        key_events = read_proven_events(r)
        erasures = read_proven_events(r)
    except DecodeError as exc:
        raise Broken(fail, f"later erasures section does not decode: {exc}") from exc
    if later.last_seq <= bundle_last:
        raise Broken(fail, f"later checkpoint at seq {later.last_seq} is not after the "
                     f"bundle's last seq {bundle_last}")
    if not verify_consistency(bundle_last, later.last_seq, state.tree.root(), later.root,
                              consistency):
        raise Broken(fail, f"consistency proof from {bundle_last} to the later "
                     f"checkpoint at {later.last_seq} does not verify")
    # The later key events only say who may sign the later checkpoint; the
    # report (and step 10) stay about the bundle's own keys.
    own_keys = [KeyRecord(k.public_key, k.registered_at, k.retired_at) for k in state.keys]
    last_retired = replay_key_events(state, key_events, later.last_seq, later.root, fail,
                                     bundle_last, False)
    if not signed_by_replayed_keys(state, later, last_retired):
        raise Broken(fail, f"later checkpoint at seq {later.last_seq} is not signed by a "
                     "key of the ledger")
    state.keys = own_keys
    prev = bundle_last
    for ev, path in erasures:
        if ev.seq <= prev or ev.seq > later.last_seq:
            raise Broken(fail, f"later erase event {ev.seq} is out of order or outside "
                         f"{bundle_last + 1}..={later.last_seq}")
        prev = ev.seq
        if not verify_inclusion(ev.seq - 1, later.last_seq, ev.hash, path, later.root):
            raise Broken(fail, f"inclusion proof of later erase event {ev.seq} does not "
                         "verify")
        if ev.kind != KIND_PAYLOAD_ERASED or ev.kind_version != 1:
            raise Broken(fail, f"later event {ev.seq} is not a PayloadErased v1")
        target, indexes = decode_erasure(ev, fail)
        if not state.first_seq <= target <= bundle_last:
            raise Broken(fail, f"later erase event {ev.seq} names seq {target}, not an "
                         f"event of the bundle ({state.first_seq}..={bundle_last})")
        state.name_slots(target, indexes)
    return {"checkpoint_seq": later.last_seq, "key_events": len(key_events),
            "erase_events": len(erasures)}


def verify_bundle(path: str, trusted: list[bytes], expect: Expected | None = None
                  ) -> Report:
    """Verify a bundle file. Raises OSError on I/O errors."""
    with open(path, "rb") as f:
        data = f.read()
    state = State(expect=expect)
    start = None
    later = None
    try:
        r = Reader(data)
        try:
            magic = r.take(8)
            fmt = r.u32()
            state.ledger_id = r.take(16)
            start_seq = r.u64()
        except DecodeError as exc:
            raise Broken(None, f"bundle header does not decode: {exc}") from exc
        if magic != BUNDLE_MAGIC:
            raise Broken(None, "not a bundle (bad magic)")
        if fmt not in (1, 2):
            raise Broken(None, f"unknown bundle format {fmt}")
        if start_seq < 1:
            raise Broken(None, "bundle start_seq is 0")
        state.first_seq = start_seq
        state.next_seq = start_seq
        if start_seq > 1:
            start = read_start_state(state, r, start_seq)
        pos = r.pos
        frames = 0
        while data[pos:pos + 8] not in (BUNDLE_LATER, BUNDLE_END):
            pos = read_and_verify_frame(state, data, pos, torn_rule=False, in_bundle=True)
            frames += 1
        if frames == 0:
            raise Broken(start_seq, "bundle holds no frame")
        bundle_last = state.last_read()
        r.pos = pos + 8
        if data[pos:pos + 8] == BUNDLE_LATER:
            if fmt < 2:
                raise Broken(bundle_last + 1, "later erasures section in a format 1 "
                             "bundle")
            later = read_later_erasures(state, r, bundle_last)
            if r.data[r.pos:r.pos + 8] != BUNDLE_END:
                raise Broken(bundle_last + 1, "bundle trailer missing after the later "
                             "erasures section")
            r.pos += 8
        try:
            t_frames = r.u64()
            t_last = r.u64()
        except DecodeError as exc:
            raise Broken(bundle_last + 1, "bundle trailer is cut short") from exc
        if (t_frames, t_last) != (frames, bundle_last):
            raise Broken(bundle_last + 1, f"bundle trailer says {t_frames} frames up to "
                         f"seq {t_last}; read {frames} frames up to seq {bundle_last}")
        if not r.at_end():
            raise Broken(bundle_last + 1, "bytes after the bundle trailer")
    except Broken as b:
        if b.seq is None:
            b.seq = state.first_seq
        return make_report("bundle", state, b, None, later=later)
    return finish("bundle", state, trusted, None, start, later)


# ---------------------------------------------------------------------------
# Command line


def parse_trusted_key(text: str) -> bytes:
    """`ed25519:` + standard base64 (or 64 hex digits) of 32 bytes (§8.1)."""
    word = text.split()[0] if text.split() else ""
    if not word.startswith("ed25519:"):
        raise ValueError(f"trusted key {text!r} does not start with 'ed25519:'")
    enc = word[len("ed25519:"):]
    if re.fullmatch(r"[0-9a-fA-F]{64}", enc):
        return bytes.fromhex(enc)
    try:
        key = base64.b64decode(enc, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"trusted key {text!r} is not valid base64") from exc
    if len(key) != 32:
        raise ValueError(f"trusted key {text!r} is not 32 bytes")
    return key


def load_trusted_keys(arg: str) -> list[bytes]:
    """A key, or a file of keys one per line (blank lines and # comments
    skipped, words after the key ignored)."""
    if arg.startswith("ed25519:"):
        return [parse_trusted_key(arg)]
    with open(arg, encoding="utf-8") as f:
        lines = f.read().splitlines()
    keys = [parse_trusted_key(line) for line in lines
            if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise ValueError(f"{arg}: no trusted key in it")
    return keys


def _hex_field(obj: dict, name: str, size: int) -> bytes:
    v = obj.get(name)
    if not isinstance(v, str) or not re.fullmatch(r"[0-9a-fA-F]*", v) or len(v) != 2 * size:
        raise ValueError(f"expected checkpoint: {name} is not {2 * size} hex digits")
    return bytes.fromhex(v)


def _uint_field(obj: dict, name: str) -> int:
    v = obj.get(name)
    if isinstance(v, bool):
        raise ValueError(f"expected checkpoint: {name} is not a whole number")
    if isinstance(v, str) and re.fullmatch(r"[0-9]+", v):
        v = int(v)
    if not isinstance(v, int) or not 0 <= v < 2**64:
        raise ValueError(f"expected checkpoint: {name} is not a whole number "
                         "(a JSON integer or a decimal string)")
    return v


def note_key_id(name: str, public_key: bytes) -> bytes:
    """§11: the first 4 bytes of SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public_key)."""
    return hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]


def _strict_b64(text: str, size: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("checkpoint note: bad base64") from exc
    if base64.b64encode(raw).decode() != text or (size is not None and len(raw) != size):
        raise ValueError("checkpoint note: base64 that does not re-encode to itself")
    return raw


def parse_note(text: str) -> Expected:
    """A checkpoint note (§11), parsed strictly."""
    if any(ord(c) < 0x20 and c != "\n" or ord(c) == 0x7F for c in text):
        raise ValueError("checkpoint note: control character")
    body_text, sep, sig_text = text.partition("\n\n")
    lines = body_text.split("\n")
    if not sep or len(lines) != 3:
        raise ValueError("checkpoint note: the body is not three lines and an empty line")
    origin, size_text, root_text = lines
    m = re.fullmatch(NOTE_ORIGIN + r"([0-9a-f]{32})", origin)
    if not m:
        raise ValueError("checkpoint note: origin is not cairn.ledger/<32 hex>")
    if not re.fullmatch(r"[1-9][0-9]*", size_text) or int(size_text) >= 2**64:
        raise ValueError("checkpoint note: tree size is not a canonical decimal")
    root = _strict_b64(root_text, 32)
    if not sig_text.endswith("\n"):
        raise ValueError("checkpoint note: signature lines must end in a newline")
    sigs = []
    for line in sig_text[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014":
            raise ValueError(f"checkpoint note: bad signature line {line!r}")
        blob = _strict_b64(parts[2])
        if parts[1] == origin and len(blob) == 68:
            sigs.append((blob[:4], blob[4:]))
    return Expected(bytes.fromhex(m.group(1)), int(size_text), None, root,
                    note_body=(body_text + "\n").encode(), note_sigs=sigs)


def parse_expected(text: str) -> Expected:
    """The saved checkpoint JSON of §8, the API answer {"data": {...}}, its
    data object, or a checkpoint note (§11)."""
    if text.startswith(NOTE_ORIGIN):
        return parse_note(text)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"expected checkpoint is not JSON: {exc}") from exc
    if isinstance(obj, dict) and "seq" not in obj and isinstance(obj.get("data"), dict):
        obj = obj["data"]
    if not isinstance(obj, dict):
        raise ValueError("expected checkpoint is not a JSON object")
    seq = _uint_field(obj, "seq")
    if seq < 1:
        raise ValueError("expected checkpoint: seq is 0")
    return Expected(_hex_field(obj, "ledger_id", 16), seq, _hex_field(obj, "head", 32),
                    _hex_field(obj, "root", 32), _uint_field(obj, "time"),
                    _hex_field(obj, "key_id", 8), _hex_field(obj, "signature", 64))


def find_segments_dir(path: str) -> str:
    for candidate in (os.path.join(path, "segments"),
                      os.path.join(path, "ledger", "segments")):
        if os.path.isdir(candidate):
            return candidate
    raise FileNotFoundError(f"{path}: no segments/ or ledger/segments/ directory")


def is_bundle(path: str) -> bool:
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(8) == BUNDLE_MAGIC


def saved_checkpoint(ledger_id: bytes, cp: Checkpoint) -> dict:
    return {"ledger_id": ledger_id.hex(), "seq": cp.last_seq, "head": cp.head.hex(),
            "root": cp.root.hex(), "time": str(cp.time), "key_id": cp.key_id.hex(),
            "signature": cp.signature.hex()}


def report_json(report: Report) -> dict:
    torn = report.torn_tail
    return {
        "kind": report.kind,
        "verdict": report.verdict,
        "intact": report.intact,
        "ledger_id": report.ledger_id.hex() if report.ledger_id else None,
        "first_seq": report.first_seq,
        "last_seq": report.last_seq,
        "head": report.head.hex() if report.head else None,
        "events": report.events,
        "checkpoints": report.checkpoints,
        "keys": [k.as_json() for k in report.keys],
        "erased_payloads": report.erased,
        "pending_erasures": report.pending,
        "failure": ({"seq": report.failure[0], "reason": report.failure[1]}
                    if report.failure else None),
        "torn_tail": ({"after_seq": torn.after_seq, "offset": torn.offset,
                       "bytes": torn.length, "reason": torn.reason} if torn else None),
        "first_bad_seq": report.first_bad_seq(),
        "reason": report.failure[1] if report.failure else (torn.reason if torn else None),
        "expected_checkpoint": report.expected,
        "proven_to_seq": report.proven_to_seq,
        "later_erasures": report.later,
        "last_checkpoint": (saved_checkpoint(report.ledger_id, report.last_checkpoint)
                            if report.last_checkpoint and report.ledger_id else None),
    }


def print_report(report: Report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report_json(report)))
        return
    span = f"{report.first_seq}..={report.last_seq}"
    if report.verdict == "intact":
        print(f"intact: {span} ({report.events} events, {report.checkpoints} "
              f"checkpoints, {len(report.keys)} keys, {report.erased} erased payloads, "
              f"{report.pending} pending)")
    elif report.verdict == "torn_tail":
        t = report.torn_tail
        print(f"TORN TAIL after seq {t.after_seq}: {t.reason} ({t.length} bytes at offset "
              f"{t.offset}); verified before the torn tail: {span}")
    else:
        seq, reason = report.failure
        where = f"seq {seq}" if seq is not None else "the start"
        print(f"BROKEN at {where}: {reason}")
    if report.expected:
        print(f"expected checkpoint: {report.expected}")
    if report.proven_to_seq is not None:
        print(f"read on past the range to seq {report.proven_to_seq} (later erasures, "
              "expected checkpoint)")
    if report.later is not None:
        print(f"later erasures proven up to the checkpoint at seq "
              f"{report.later['checkpoint_seq']}")


EXIT = {"intact": 0, "broken": 1, "torn_tail": 3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Verify a cairn ledger or bundle (FORMAT.md, independently).")
    parser.add_argument("path", help="ledger directory, server data directory or bundle")
    parser.add_argument("--trusted-key", action="append", default=[],
                        metavar="KEY|FILE", help="ed25519:BASE64, or a file of such "
                        "keys (repeatable)")
    parser.add_argument("--expect-checkpoint", metavar="FILE",
                        help="a checkpoint saved earlier (JSON)")
    parser.add_argument("--to", type=int, metavar="SEQ",
                        help="verify 1..=SEQ as a partial reader would (§8.1)")
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    try:
        trusted = [k for arg in args.trusted_key for k in load_trusted_keys(arg)]
        expect = None
        if args.expect_checkpoint:
            with open(args.expect_checkpoint, encoding="utf-8") as f:
                expect = parse_expected(f.read())
        if args.to is not None and args.to < 1:
            raise ValueError("--to must be at least 1")
        if is_bundle(args.path):
            if args.to is not None:
                raise ValueError("--to applies to ledger directories; a bundle is "
                                 "already a range")
            report = verify_bundle(args.path, trusted, expect)
        else:
            report = verify_ledger(find_segments_dir(args.path), trusted, expect, args.to)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(report, args.json)
    return EXIT[report.verdict]


if __name__ == "__main__":
    sys.exit(main())
