#!/usr/bin/env python3
"""Independent verifier for cairn ledger directories (format version 1).

Written from ledger/FORMAT.md alone, without reading cairn's Rust sources. It
implements the on-disk layout (§2), hashes and signatures (§3), system events
(§4), the key-slot/erasure accounting of §5 and the verification walk of §8
(steps 1-10; step 11, "expected checkpoint", has no command-line input and is
not implemented). Bundles (§9) are not implemented.

Usage:
    python3 verify_ledger.py DIR [--trusted-key ed25519:BASE64 ...] [--json]

DIR is a ledger directory (containing segments/) or a server data directory
(containing ledger/segments/).

Exit status: 0 intact, 1 broken, 2 usage or I/O error.

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
KeyRegistered (0x0004) events add keys, rotations retire them, and a checkpoint
may be signed by any key active when its frame began. A checkpoint not signed
that way is reported at its frame's first seq, as §8 step 7 says.

Choices where FORMAT.md leaves room (see the report that came with this file):
- Frame CRCs are checked. A complete frame whose CRC fails is still run through
  the §8 rules first, so a changed event is reported at its own seq; if the
  rules all pass, the frame is reported at its first seq as a torn tail (final
  frame of the last segment) or as corruption.
- An unreadable frame (incomplete header, bad magic, length past the end of
  the file, CRC mismatch with an undecodable body, damaged slots in the final
  frame) is reported at the next expected seq: "torn tail" if it is in the
  last segment and no CRC-valid frame follows it, otherwise corruption.
- "E erased payloads" counts key slots that are erased or damaged (all of
  which must be named by a PayloadErased event for the ledger to be intact).
- PayloadErased slot indexes are 0-based within the target event's slots and
  must be below its slot_count. System events must have kind_version 1.
- A failure of the trusted-key rule (step 10) is reported at seq 1.
- A last segment holding only its header is accepted if its name is the next
  expected seq; any other segment must hold at least one frame.
"""

from __future__ import annotations

import argparse
import base64
import binascii
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
# Reading segments (§2.1, §2.2)


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
        raise Unreadable("frame length past the end of the file")
    return body_len, slot_count, crc, total


def frame_crc_ok(data: bytes, pos: int, body_len: int, crc: int) -> bool:
    covered = data[pos:pos + 12] + data[pos + 16:pos + 16 + body_len]
    return crc32c(covered) == crc


def read_frame(data: bytes, pos: int) -> tuple[Frame | None, int, str | None]:
    """Read one frame at `pos`.

    Returns (frame, next_pos, problem). `frame` is None if the frame cannot be
    decoded at all; `problem` says why (or notes a CRC mismatch on a frame
    that still decodes)."""
    body_len, slot_count, crc, total = frame_extent(data, pos)
    crc_ok = frame_crc_ok(data, pos, body_len, crc)
    body = data[pos + 16:pos + 16 + body_len]
    slots_start = pos + 16 + body_len
    slots = [data[slots_start + i * SLOT_LEN:slots_start + (i + 1) * SLOT_LEN]
             for i in range(slot_count)]
    try:
        events, checkpoint = parse_body(body)
    except DecodeError as exc:
        if not crc_ok:
            raise Unreadable(f"CRC mismatch and undecodable body ({exc})") from exc
        return None, pos + total, f"malformed frame: {exc}"
    return Frame(pos, events, checkpoint, crc_ok, slots), pos + total, None


def intact_frame_after(data: bytes, pos: int) -> bool:
    """Is there any CRC-valid, complete frame starting after `pos`?"""
    start = data.find(FRAME_MAGIC, pos + 1)
    while start != -1:
        try:
            body_len, _, crc, _ = frame_extent(data, start)
            if frame_crc_ok(data, start, body_len, crc):
                return True
        except Unreadable:
            pass
        start = data.find(FRAME_MAGIC, start + 1)
    return False


# ---------------------------------------------------------------------------
# Verification walk (§8)


class Broken(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


@dataclass
class KeyRecord:
    public_key: bytes
    registered_at: int
    retired_at: int | None = None

    def may_sign(self, first_seq: int) -> bool:
        """Active when the frame starting at first_seq began (§8 step 7); the
        Genesis key also signs its own frame."""
        registered = self.registered_at < first_seq or self.registered_at == 1
        return registered and (self.retired_at is None or self.retired_at >= first_seq)


@dataclass
class State:
    next_seq: int = 1
    head: bytes = bytes(32)
    last_time: int = 0
    tree: Frontier = field(default_factory=Frontier)
    ledger_id: bytes | None = None
    # every checkpoint key the ledger registered, oldest first
    keys: list[KeyRecord] = field(default_factory=list)
    checkpoints: int = 0
    # (seq, slot index) -> "erased" | "damaged", and slots named by erasures
    bad_slots: dict[tuple[int, int], str] = field(default_factory=dict)
    named_slots: set[tuple[int, int]] = field(default_factory=set)
    slot_counts: dict[int, int] = field(default_factory=dict)


def check_link(state: State, frame: Frame, i: int) -> None:
    """Step 2, including which event is the culprit."""
    ev = frame.events[i]
    if ev.prev == state.head:
        return
    if i + 1 < len(frame.events):
        following_prev = frame.events[i + 1].prev
    else:
        following_prev = frame.checkpoint.head
    if following_prev == ev.hash:
        raise Broken(ev.seq - 1, f"event {ev.seq - 1} was changed "
                     f"(event {ev.seq}'s prev does not match its hash)")
    raise Broken(ev.seq, f"event {ev.seq} was changed "
                 f"(its prev does not match the hash of event {ev.seq - 1})")


def check_genesis(state: State, ev: Event) -> None:
    r = Reader(ev.body)
    try:
        lid = r.take(16)
        pk = r.take(32)
        r.finish()
    except DecodeError as exc:
        raise Broken(ev.seq, f"malformed Genesis body: {exc}") from exc
    if lid != state.ledger_id:
        raise Broken(ev.seq, "Genesis ledger id differs from the segment headers'")
    if is_small_order_or_invalid(pk):
        raise Broken(ev.seq, "Genesis public key is weak (small order) or invalid")
    state.keys.append(KeyRecord(pk, 1))


def active_record(state: State, kid: bytes) -> KeyRecord | None:
    for rec in state.keys:
        if rec.retired_at is None and key_id(rec.public_key) == kid:
            return rec
    return None


def check_rotation(state: State, ev: Event) -> bytes:
    """Returns the new public key (it becomes current after the checkpoint)."""
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
    if active_record(state, new_kid) is None:
        state.keys.append(KeyRecord(new_pk, ev.seq))
    return new_pk


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
    if any(key_id(rec.public_key) == kid for rec in state.keys):
        raise Broken(ev.seq, "key registered twice")
    state.keys.append(KeyRecord(pk, ev.seq))


def check_erasure(state: State, ev: Event) -> None:
    r = Reader(ev.body)
    try:
        target = r.u64()
        indexes = list(r.short())
        r.finish()
    except DecodeError as exc:
        raise Broken(ev.seq, f"malformed PayloadErased body: {exc}") from exc
    if not indexes:
        raise Broken(ev.seq, "PayloadErased names no slots")
    if any(a >= b for a, b in zip(indexes, indexes[1:])):
        raise Broken(ev.seq, "PayloadErased slot indexes not strictly increasing")
    if not 1 <= target < ev.seq:
        raise Broken(ev.seq, f"PayloadErased names seq {target}, not an earlier event")
    if indexes[-1] >= state.slot_counts[target]:
        raise Broken(ev.seq, f"PayloadErased names slot {indexes[-1]} of event "
                     f"{target}, which has {state.slot_counts[target]} slots")
    state.named_slots.update((target, i) for i in indexes)


def check_system_event(state: State, ev: Event) -> bytes | None:
    """Step 4. Returns a rotation's new key, if this event is a rotation."""
    if ev.seq == 1 and ev.kind != KIND_GENESIS:
        raise Broken(ev.seq, "event 1 is not a Genesis")
    if ev.kind >= SYSTEM_KIND_LIMIT:
        return None
    if ev.kind not in (KIND_GENESIS, KIND_KEY_ROTATION, KIND_PAYLOAD_ERASED,
                       KIND_KEY_REGISTERED):
        raise Broken(ev.seq, f"unknown system kind 0x{ev.kind:04x}")
    if ev.kind_version != 1:
        raise Broken(ev.seq, f"unknown version {ev.kind_version} of system kind "
                     f"0x{ev.kind:04x}")
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


def check_event(state: State, frame: Frame, i: int) -> bytes | None:
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
    new_key = check_system_event(state, ev)
    state.head = ev.hash
    state.tree.append(ev.hash)
    state.last_time = ev.time
    state.slot_counts[ev.seq] = ev.slot_count
    state.next_seq += 1
    return new_key


def check_checkpoint(state: State, frame: Frame, first_seq: int) -> None:
    """Steps 6 and 7."""
    cp = frame.checkpoint
    last = frame.events[-1]
    if cp.last_seq != last.seq:
        raise Broken(last.seq, f"checkpoint last_seq {cp.last_seq} is not the frame's "
                     f"last event {last.seq}")
    if cp.head != state.head:
        raise Broken(last.seq, "checkpoint head does not match the hash of event "
                     f"{last.seq}")
    if cp.root != state.tree.root():
        raise Broken(last.seq, "checkpoint root does not match the Merkle root")
    if cp.time < last.time:
        raise Broken(last.seq, "checkpoint time is before its events' time")
    signers = [rec.public_key for rec in state.keys
               if rec.may_sign(first_seq) and key_id(rec.public_key) == cp.key_id]
    if not signers:
        raise Broken(first_seq, "checkpoint is not signed by a key active when its "
                     "frame began")
    message = (CHECKPOINT_DOMAIN + state.ledger_id + cp.raw[1:1 + 8 + 32 + 32 + 8 + 8])
    if not any(verify_strict(pk, message, cp.signature) for pk in signers):
        raise Broken(first_seq, "checkpoint signature does not verify")


def account_slots(state: State, frame: Frame, is_final: bool, first_seq: int) -> None:
    """Assign the frame's slots to its events and record erased/damaged ones."""
    expected = sum(ev.slot_count for ev in frame.events)
    if expected != len(frame.slots):
        raise Broken(first_seq, f"frame slot_count {len(frame.slots)} is not the sum "
                     f"of its events' slot counts ({expected})")
    pos = 0
    for ev in frame.events:
        for idx in range(ev.slot_count):
            status = slot_state(frame.slots[pos])
            pos += 1
            if status == "intact":
                continue
            if status == "damaged" and is_final:
                raise Broken(first_seq, "torn tail: damaged key slots in the final frame")
            state.bad_slots[(ev.seq, idx)] = status


def verify_frame(state: State, frame: Frame, is_final: bool) -> None:
    first_seq = state.next_seq
    rotation: bytes | None = None
    for i, ev in enumerate(frame.events):
        new_key = check_event(state, frame, i)
        if new_key is not None:
            if rotation is not None:
                raise Broken(ev.seq, "more than one key rotation in one frame")
            rotation = new_key
    check_checkpoint(state, frame, first_seq)
    account_slots(state, frame, is_final, first_seq)
    if not frame.crc_ok:
        what = "torn tail" if is_final else "corrupt frame"
        raise Broken(first_seq, f"{what}: frame CRC mismatch")
    state.checkpoints += 1
    # Step 8: key events already updated state.keys; their registered_at and
    # retired_at make them count from the next frame on.


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


def verify_segment(state: State, data: bytes, name_seq: int, is_last: bool) -> None:
    check_segment_header(data, state, name_seq)
    if name_seq != state.next_seq:
        raise Broken(state.next_seq, f"segment {name_seq:020d} should start at "
                     f"seq {state.next_seq}")
    pos = SEGMENT_HEADER_LEN
    if pos == len(data) and not is_last:
        raise Broken(state.next_seq, f"segment {name_seq:020d} holds no frames")
    while pos < len(data):
        try:
            frame, next_pos, problem = read_frame(data, pos)
        except Unreadable as exc:
            if is_last and not intact_frame_after(data, pos):
                raise Broken(state.next_seq, f"torn tail: {exc}") from exc
            raise Broken(state.next_seq, f"unreadable frame ({exc}) that is not "
                         "a torn tail (intact data follows it)") from exc
        if frame is None:
            raise Broken(state.next_seq, problem)
        verify_frame(state, frame, is_last and next_pos == len(data))
        pos = next_pos


def check_erasure_accounting(state: State) -> None:
    """Step 9: every erased or damaged slot is named by a PayloadErased event."""
    for (seq, idx), status in sorted(state.bad_slots.items()):
        if (seq, idx) not in state.named_slots:
            raise Broken(seq, f"key slot {idx} is {status} but no PayloadErased "
                         "event names it")


def check_trusted(state: State, trusted: list[bytes]) -> None:
    """Step 10."""
    if trusted and not any(rec.public_key in trusted for rec in state.keys):
        raise Broken(1, "no key of the ledger's key chain is trusted")


def list_segments(seg_dir: str) -> list[tuple[int, str]]:
    segments = []
    for name in os.listdir(seg_dir):
        if not name.endswith(".seg"):
            continue
        m = SEGMENT_NAME.match(name)
        if not m:
            raise Broken(None, f"bad segment file name {name!r}")
        segments.append((int(m.group(1)), os.path.join(seg_dir, name)))
    segments.sort()
    return segments


@dataclass
class Report:
    intact: bool
    events: int
    checkpoints: int
    keys: int
    erased: int
    seq: int | None = None
    reason: str | None = None


def verify_ledger(seg_dir: str, trusted: list[bytes]) -> Report:
    """Walk every segment of a ledger. Raises OSError on I/O errors."""
    state = State()
    try:
        segments = list_segments(seg_dir)
        if not segments:
            raise Broken(1, "ledger has no segments (event 1 is missing)")
        for n, (name_seq, path) in enumerate(segments):
            with open(path, "rb") as f:
                data = f.read()
            verify_segment(state, data, name_seq, n == len(segments) - 1)
        if state.next_seq == 1:
            raise Broken(1, "ledger has no events (event 1 is missing)")
        check_erasure_accounting(state)
        check_trusted(state, trusted)
    except Broken as b:
        return Report(False, state.next_seq - 1, state.checkpoints, len(state.keys),
                      len(state.bad_slots), b.seq, b.reason)
    return Report(True, state.next_seq - 1, state.checkpoints, len(state.keys),
                  len(state.bad_slots))


# ---------------------------------------------------------------------------
# Command line


def parse_trusted_key(text: str) -> bytes:
    if not text.startswith("ed25519:"):
        raise ValueError(f"trusted key {text!r} does not start with 'ed25519:'")
    b64 = text[len("ed25519:"):]
    padded = b64 + "=" * (-len(b64) % 4)
    try:
        if "-" in b64 or "_" in b64:
            key = base64.urlsafe_b64decode(padded)
        else:
            key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"trusted key {text!r} is not valid base64") from exc
    if len(key) != 32:
        raise ValueError(f"trusted key {text!r} is not 32 bytes")
    return key


def find_segments_dir(path: str) -> str:
    for candidate in (os.path.join(path, "segments"),
                      os.path.join(path, "ledger", "segments")):
        if os.path.isdir(candidate):
            return candidate
    raise FileNotFoundError(f"{path}: no segments/ or ledger/segments/ directory")


def print_report(report: Report, as_json: bool) -> None:
    if as_json:
        print(json.dumps({
            "intact": report.intact,
            "events": report.events,
            "checkpoints": report.checkpoints,
            "first_bad_seq": report.seq,
            "reason": report.reason,
            "erased_payloads": report.erased,
        }))
    elif report.intact:
        print(f"intact: {report.events} events, {report.checkpoints} checkpoints, "
              f"{report.keys} keys, {report.erased} erased payloads")
    else:
        where = f"seq {report.seq}" if report.seq is not None else "segments"
        print(f"BROKEN at {where}: {report.reason}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a cairn ledger (FORMAT.md v1).")
    parser.add_argument("dir", help="ledger directory or server data directory")
    parser.add_argument("--trusted-key", action="append", default=[],
                        metavar="ed25519:BASE64", help="a trusted public key (repeatable)")
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    try:
        trusted = [parse_trusted_key(k) for k in args.trusted_key]
        seg_dir = find_segments_dir(args.dir)
        report = verify_ledger(seg_dir, trusted)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(report, args.json)
    return 0 if report.intact else 1


if __name__ == "__main__":
    sys.exit(main())
