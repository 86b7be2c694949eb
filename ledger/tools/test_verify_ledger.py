"""Unit tests of verify_ledger.py: `python3 -m unittest` in ledger/tools (run by
ledger/tests/second_implementation.rs, so `cargo test` runs them).

The ledgers and bundles here are written by a small writer made from FORMAT.md
alone (this file), so they exercise the verifier on shapes cairn's writer does
not make on purpose: hand-zeroed slots, truncations, tampered proofs, bundles
with a later-erasures section (format 2). The same checks against bundles and
ledgers written by cairn itself are in second_implementation.rs.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_ledger as vl  # noqa: E402

T0 = 1_700_000_000_000_000_000


# ---------------------------------------------------------------------------
# Reference proofs (RFC 9162 §2.1.3.1 PATH, §2.1.4.1 SUBPROOF) over cairn's tree


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return path(m, leaves[:k]) + [vl.mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [vl.mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [vl.mth(leaves)]
    k = _split(n)
    if m <= k:
        return subproof(m, leaves[:k], b) + [vl.mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [vl.mth(leaves[:k])]


def consistency(m: int, leaves: list[bytes]) -> list[bytes]:
    return subproof(m, leaves, True)


# ---------------------------------------------------------------------------
# A writer made from FORMAT.md


def key(seed: int) -> tuple[Ed25519PrivateKey, bytes]:
    sk = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    return sk, sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def short(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def slot(i: int) -> bytearray:
    s = struct.pack(">I", 1) + bytes([i]) * 12 + bytes([i + 1]) * 32 + bytes([i + 2]) * 16
    return bytearray(s + struct.pack(">I", vl.crc32c(s)))


class Writer:
    """Writes a single-node ledger: every frame signed by the current key."""

    def __init__(self, ledger_id: bytes = b"\x55" * 16, seed: int = 1) -> None:
        self.ledger_id = ledger_id
        self.sk, self.pk = key(seed)
        self.events: list[bytes] = []  # raw records, seq = index + 1
        self.hashes: list[bytes] = []
        self.times: list[int] = []
        self.kinds: list[int] = []
        self.bodies: list[bytes] = []
        self.slots: dict[int, list[bytearray]] = {}
        self.frames: list[tuple[int, int, bytes]] = []  # (first seq, last seq, checkpoint)
        self.frame(1, [(vl.KIND_GENESIS, ledger_id + self.pk, 0)])

    def kid(self) -> bytes:
        return vl.key_id(self.pk)

    def frame(self, n_calls: int, entries: list[tuple[int, bytes, int]]) -> int:
        """Appends one frame; returns its first seq."""
        del n_calls
        first = len(self.events) + 1
        time = T0 + first
        for kind, body, nslots in entries:
            seq = len(self.events) + 1
            prev = self.hashes[-1] if self.hashes else bytes(32)
            rec = (b"\x01" + struct.pack(">Q", seq) + prev + struct.pack(">QHH", time, kind, 1)
                   + b"\x22" * 16 + short(b"acc") + short(b"\x33" * 16) + short(b"token")
                   + short(b"127.0.0.1") + bytes([nslots]) + struct.pack(">I", len(body)) + body)
            self.events.append(rec)
            self.hashes.append(vl.h(vl.EVENT_DOMAIN + rec))
            self.times.append(time)
            self.kinds.append(kind)
            self.bodies.append(body)
            self.slots[seq] = [slot(seq + i) for i in range(nslots)]
        last = len(self.events)
        fields = (struct.pack(">Q", last) + self.hashes[-1] + vl.mth(self.hashes)
                  + struct.pack(">Q", time) + self.kid())
        sig = self.sk.sign(vl.CHECKPOINT_DOMAIN + self.ledger_id + fields)
        self.frames.append((first, last, b"\x02" + fields + sig))
        return first

    def app(self, n: int = 1, nslots: int = 0) -> int:
        return self.frame(1, [(0x0100, f"event {len(self.events) + i}".encode(), nslots)
                              for i in range(n)])

    def erase(self, target: int, idxs: list[int], zero: bool = True) -> int:
        seq = self.frame(1, [(vl.KIND_PAYLOAD_ERASED,
                              struct.pack(">Q", target) + short(bytes(idxs)), 0)])
        if zero:
            for i in idxs:
                self.slots[target][i][:] = bytes(vl.SLOT_LEN)
        return seq

    def rotate(self, seed: int) -> int:
        new_sk, new_pk = key(seed)
        proof = new_sk.sign(vl.ROTATION_DOMAIN + self.ledger_id + self.kid() + new_pk)
        seq = self.frame(1, [(vl.KIND_KEY_ROTATION, self.kid() + new_pk + proof, 0)])
        self.sk, self.pk = new_sk, new_pk
        return seq

    def checkpoint_of(self, seq: int) -> bytes:
        return next(cp for _, last, cp in self.frames if last == seq)

    def frame_bytes(self, first: int, last: int, cp: bytes) -> bytes:
        body = b"".join(self.events[first - 1:last]) + cp
        slots = b"".join(bytes(s) for seq in range(first, last + 1) for s in self.slots[seq])
        head = b"CLF1" + struct.pack(">II", len(body), len(slots) // vl.SLOT_LEN)
        return head + struct.pack(">I", vl.crc32c(head + body)) + body + slots

    def segment(self, frames: list[tuple[int, int, bytes]] | None = None) -> bytes:
        out = b"CAIRNSEG" + struct.pack(">II", 1, 0) + self.ledger_id
        return out + b"".join(self.frame_bytes(*f) for f in (frames or self.frames))

    def write_dir(self, d: str, data: bytes | None = None) -> str:
        os.makedirs(os.path.join(d, "segments"), exist_ok=True)
        with open(os.path.join(d, "segments", "%020d.seg" % 1), "wb") as f:
            f.write(self.segment() if data is None else data)
        return d

    def proven(self, seq: int, tree_size: int) -> bytes:
        raw = self.events[seq - 1]
        p = path(seq - 1, self.hashes[:tree_size])
        return struct.pack(">I", len(raw)) + raw + bytes([len(p)]) + b"".join(p)

    def bundle(self, first_frame: int, last_frame: int, fmt: int = 2,
               later: bool = True) -> bytes:
        frames = self.frames[first_frame:last_frame + 1]
        start, last = frames[0][0], frames[-1][1]
        out = b"CAIRNBDL" + struct.pack(">I", fmt) + self.ledger_id + struct.pack(">Q", start)
        if start > 1:
            size = start - 1
            roots, off = [], 0
            for b in range(size.bit_length() - 1, -1, -1):
                if size >> b & 1:
                    roots.append(vl.mth(self.hashes[off:off + (1 << b)]))
                    off += 1 << b
            keys = [s for s in range(1, start) if self.kinds[s - 1] in (1, 2, 4)]
            out += (self.hashes[size - 1] + struct.pack(">QQI", self.times[size - 1], size,
                                                        len(roots)) + b"".join(roots)
                    + self.checkpoint_of(size) + struct.pack(">I", len(keys))
                    + b"".join(self.proven(s, size) for s in keys))
        out += b"".join(self.frame_bytes(*f) for f in frames)
        end = len(self.events)
        erasures = [s for s in range(last + 1, end + 1) if self.kinds[s - 1] == 3
                    and start <= struct.unpack(">Q", self.bodies[s - 1][:8])[0] <= last]
        if later and erasures and fmt == 2:
            keys = [s for s in range(last + 1, end + 1) if self.kinds[s - 1] in (1, 2, 4)]
            proof = consistency(last, self.hashes[:end])
            out += (b"CAIRNLTR" + self.checkpoint_of(end) + bytes([len(proof)])
                    + b"".join(proof) + struct.pack(">I", len(keys))
                    + b"".join(self.proven(s, end) for s in keys)
                    + struct.pack(">I", len(erasures))
                    + b"".join(self.proven(s, end) for s in erasures))
        return out + b"CAIRNEND" + struct.pack(">QQ", len(frames), last)


# ---------------------------------------------------------------------------


def run(*args: str) -> tuple[int, dict]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = vl.main([*args, "--json"])
    return code, json.loads(buf.getvalue())


class GoldenVectors(unittest.TestCase):
    def test_section_10(self) -> None:
        self.assertEqual(vl.NODE_KEY.hex(),
                         "37ef6ab65ec0679da97b9f983275a05f853cb814dce2cd600d6699946d0a4c2d")
        self.assertEqual(vl.mth([]).hex(),
                         "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262")
        self.assertEqual(vl.node(b"\x01" * 32, b"\x02" * 32).hex(),
                         "0547d60a23edbe356ef1f513719df2fcd9cb85988eed356201d26b22ef76ff14")
        self.assertEqual(vl.mth([b"\x01" * 32, b"\x02" * 32, b"\x03" * 32]).hex(),
                         "2b7e98f97fa30bc76085a5a1ecf2406233bfd74bbacba5e493f4371190c75e6c")
        _, pk = key(0x44)
        self.assertEqual(vl.key_id(pk).hex(), "2acd1d2f2a5febf2")


class Proofs(unittest.TestCase):
    leaves = [vl.h(bytes([i])) for i in range(40)]

    def test_inclusion_for_every_leaf_of_every_size(self) -> None:
        for n in range(1, 40):
            root = vl.mth(self.leaves[:n])
            for m in range(n):
                p = path(m, self.leaves[:n])
                self.assertTrue(vl.verify_inclusion(m, n, self.leaves[m], p, root), (m, n))
                if p:
                    bad = list(p)
                    bad[-1] = bytes(32)
                    self.assertFalse(vl.verify_inclusion(m, n, self.leaves[m], bad, root))
                    self.assertFalse(vl.verify_inclusion(m, n, self.leaves[m], p[:-1], root))
                self.assertFalse(vl.verify_inclusion(m, n, self.leaves[m], p + [root], root))

    def test_consistency_for_every_pair_of_sizes(self) -> None:
        for n in range(1, 40):
            second = vl.mth(self.leaves[:n])
            for m in range(1, n + 1):
                first = vl.mth(self.leaves[:m])
                p = consistency(m, self.leaves[:n])
                self.assertTrue(vl.verify_consistency(m, n, first, second, p), (m, n))
                if m < n:
                    self.assertFalse(vl.verify_consistency(m, n, second, second, p))
                    self.assertFalse(vl.verify_consistency(m, n, first, first, p))
                    for i in range(len(p)):
                        bad = list(p)
                        bad[i] = bytes(32)
                        self.assertFalse(vl.verify_consistency(m, n, first, second, bad),
                                         (m, n, i))
                    self.assertFalse(vl.verify_consistency(m, n, first, second, p[:-1]))
        self.assertFalse(vl.verify_consistency(1, 1, self.leaves[0], self.leaves[0],
                                               [self.leaves[0]]))


class CheckpointFiles(unittest.TestCase):
    cp = {"ledger_id": "55" * 16, "seq": 2, "head": "66" * 32, "root": "77" * 32,
          "time": 1700000000000000001, "key_id": "2acd1d2f2a5febf2",
          "signature": "5f55e9c39dc0b2d43d81fc54eb65ddf34cdd8758ad4bab4800a64c0a6fba1932"
                       "d64d65f98992697f0d6f01c04a1b78d2c76ee41ad1e015000418a8f2f2a4100e"}

    def test_time_as_integer_or_string_and_the_api_answer(self) -> None:
        for text in (json.dumps(self.cp), json.dumps({**self.cp, "time": "1700000000000000001"}),
                     json.dumps({"request_id": "x", "data": {**self.cp, "note": "n",
                                                             "tree_size": 2}})):
            e = vl.parse_expected(text)
            self.assertEqual((e.seq, e.time), (2, 1700000000000000001))
            msg = (vl.CHECKPOINT_DOMAIN + e.ledger_id + struct.pack(">Q", e.seq) + e.head
                   + e.root + struct.pack(">Q", e.time) + e.key_id)
            _, pk = key(0x44)
            self.assertTrue(vl.verify_strict(pk, msg, e.signature))  # the golden vector
        for bad in ({**self.cp, "time": 1.5}, {**self.cp, "time": "-1"},
                    {**self.cp, "head": "66"}, {**self.cp, "seq": True}):
            with self.assertRaises(ValueError):
                vl.parse_expected(json.dumps(bad))

    def test_the_golden_note(self) -> None:
        origin = "cairn.ledger/" + "55" * 16
        note = (f"{origin}\n2\nd3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3c=\n\n"
                f"\u2014 {origin} aepdggBBVqTlw8D/z6qo8P3rZX87g3oyD4mVcKB9"
                "gEutiKc4aNFP+J2qlEm8xb3e94PHPBKbgMfy76X8VMC8n4uSnwU=\n")
        _, pk = key(0x44)
        self.assertEqual(vl.note_key_id(origin, pk).hex(), "69ea5d82")
        e = vl.parse_expected(note)
        self.assertEqual((e.ledger_id, e.seq, e.root, e.head), (b"\x55" * 16, 2, b"\x77" * 32, None))
        self.assertEqual(e.signed_by([vl.KeyRecord(pk, 1)]), (True, True))
        _, other = key(0x45)
        self.assertEqual(e.signed_by([vl.KeyRecord(other, 1)]), (False, False))
        # A witness's cosignature (another name) is ignored; strict parsing.
        witnessed = note + "\u2014 witness.example AAAAAAAA\n"
        self.assertEqual(vl.parse_expected(witnessed).signed_by([vl.KeyRecord(pk, 1)]),
                         (True, True))
        for bad in (note.replace("\n2\n", "\n02\n"), note.replace("3c=", "3c"),
                    note.replace("\n\n", "\n"), note[:-1], note.replace("2\n", "2\r\n", 1)):
            with self.assertRaises(ValueError, msg=bad):
                vl.parse_expected(bad)
        forged = note.replace("d3d3d3d3", "d3d3d3d4", 1)
        self.assertEqual(vl.parse_expected(forged).signed_by([vl.KeyRecord(pk, 1)]),
                         (False, True))

    def test_trusted_key_text(self) -> None:
        _, pk = key(3)
        import base64
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "keys")
            with open(p, "w") as f:
                f.write(f"# pinned\n\ned25519:{base64.b64encode(pk).decode()} key_id=x\n"
                        f"ed25519:{pk.hex()}\n")
            self.assertEqual(vl.load_trusted_keys(p), [pk, pk])
        with self.assertRaises(ValueError):
            vl.parse_trusted_key("ed25519:" + base64.urlsafe_b64encode(b"\xff" * 32).decode())


def sample() -> tuple[Writer, dict[str, int]]:
    """A ledger of 1 genesis; 5 app frames; a sealed event (2 slots); 3 frames;
    a rotation; 3 frames; the erasure of slot 1 of the sealed event; 2 frames."""
    w = Writer()
    for _ in range(5):
        w.app()
    sealed = w.app(nslots=2)
    w.app(2)
    w.app()
    rot = w.rotate(9)
    w.app(3)
    w.app()
    erase = w.erase(sealed, [1])
    w.app()
    w.app()
    return w, {"sealed": sealed, "rot": rot, "erase": erase, "last": len(w.events)}


class Ledgers(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.d = self.tmp.name

    def tearDown(self) -> None:
        self.tmp.cleanup()

    def test_intact_ledger_and_partial_reads(self) -> None:
        w, s = sample()
        w.write_dir(self.d)
        code, r = run(self.d)
        self.assertEqual((code, r["verdict"], r["last_seq"]), (0, "intact", s["last"]), r)
        self.assertEqual((r["erased_payloads"], r["pending_erasures"]), (1, 0))
        # A range ending before the erase event still verifies: the reader reads on
        # to the erase event and stops there.
        code, r = run(self.d, "--to", str(s["sealed"]))
        self.assertEqual((code, r["last_seq"], r["proven_to_seq"]),
                         (0, s["sealed"], s["erase"]), r)
        self.assertEqual(r["erased_payloads"], 1)
        # --to in the middle of a frame widens to the frame.
        code, r = run(self.d, "--to", str(s["sealed"] + 1))
        self.assertEqual((code, r["last_seq"]), (0, s["sealed"] + 2), r)
        # A range before the sealed event needs nothing after it.
        code, r = run(self.d, "--to", "3")
        self.assertEqual((code, r["last_seq"], r["proven_to_seq"]), (0, 3, None), r)

    def test_truncation_is_reported_as_such(self) -> None:
        w, s = sample()
        frames = [f for f in w.frames if f[1] < s["erase"]]
        w.write_dir(self.d, w.segment(frames))
        code, r = run(self.d)
        self.assertEqual((code, r["failure"]["seq"]), (1, s["sealed"]), r)
        self.assertIn(f"truncated after seq {s['erase'] - 1}", r["failure"]["reason"])
        self.assertIn("zeroed by hand", r["failure"]["reason"])
        code, r = run(self.d, "--to", str(s["sealed"]))
        self.assertEqual((code, r["failure"]["seq"]), (1, s["sealed"]), r)
        # A clean truncation with no erased slot looks whole, but not against a
        # checkpoint saved earlier.
        w2, s2 = sample()
        saved = vl.saved_checkpoint(w2.ledger_id, vl.parse_checkpoint(
            vl.Reader(w2.checkpoint_of(s2["last"]))))
        cp_file = os.path.join(self.d, "cp.json")
        with open(cp_file, "w") as f:
            json.dump(saved, f)
        w2.write_dir(self.d, w2.segment(w2.frames[:4]))
        self.assertEqual(run(self.d)[0], 0)
        code, r = run(self.d, "--expect-checkpoint", cp_file)
        self.assertEqual((code, r["failure"]["seq"]), (1, 5), r)
        self.assertIn("truncated", r["failure"]["reason"])
        w2.write_dir(self.d)
        code, r = run(self.d, "--expect-checkpoint", cp_file)
        self.assertEqual((code, r["expected_checkpoint"]), (0, f"matched at seq {s2['last']}"))
        # A partial read goes on to the expected checkpoint's seq.
        code, r = run(self.d, "--expect-checkpoint", cp_file, "--to", "2")
        self.assertEqual((code, r["last_seq"], r["proven_to_seq"]), (0, 2, s2["last"]), r)
        # Another ledger's history at that seq is not the expected state.
        w3 = Writer()
        for _ in range(s2["last"]):
            w3.app()
        w3.write_dir(self.d)
        code, r = run(self.d, "--expect-checkpoint", cp_file)
        self.assertEqual(code, 1, r)

    def test_hand_zeroed_and_damaged_slots(self) -> None:
        w, s = sample()
        w.slots[s["sealed"]][0][:] = bytes(vl.SLOT_LEN)
        w.write_dir(self.d)
        code, r = run(self.d)
        self.assertEqual((code, r["failure"]["seq"]), (1, s["sealed"]), r)
        self.assertIn("slot 0", r["failure"]["reason"])
        w, s = sample()
        w.slots[s["sealed"]][0][5] ^= 1
        w.write_dir(self.d)
        code, r = run(self.d)
        self.assertEqual((code, r["failure"]["seq"]), (1, s["sealed"]), r)
        self.assertIn("damaged", r["failure"]["reason"])
        # Named but intact: pending.
        w, s = sample()
        w.erase(s["sealed"], [0], zero=False)
        w.write_dir(self.d)
        code, r = run(self.d)
        self.assertEqual((code, r["erased_payloads"], r["pending_erasures"]), (0, 1, 1), r)

    def test_torn_tails(self) -> None:
        w, s = sample()
        good = w.segment()
        last_frame = len(good) - len(w.frame_bytes(*w.frames[-1]))
        cases = [("cut short", good[:-30], s["last"] - 1, last_frame),
                 ("half a frame appended", good + good[last_frame:last_frame + 40],
                  s["last"], len(good)),
                 ("garbage", good + b"CLF1\0\0\0garbage", s["last"], len(good)),
                 ("flipped byte in the last frame",
                  good[:-80] + bytes([good[-80] ^ 1]) + good[-79:], s["last"] - 1, last_frame)]
        for what, data, after, offset in cases:
            w.write_dir(self.d, data)
            code, r = run(self.d)
            self.assertEqual((code, r["verdict"]), (3, "torn_tail"), (what, r))
            self.assertEqual((r["torn_tail"]["after_seq"], r["last_seq"], r["failure"]),
                             (after, after, None), what)
            self.assertEqual((r["torn_tail"]["offset"], r["torn_tail"]["bytes"]),
                             (offset, len(data) - offset), what)
        # Damaged slots in the final frame: a torn zeroing can never be there.
        w.app(nslots=1)
        w.slots[len(w.events)][0][3] ^= 1
        w.write_dir(self.d)
        code, r = run(self.d)
        self.assertEqual((code, r["torn_tail"]["after_seq"]), (3, s["last"]), r)
        # A cut frame with intact frames after it is corruption.
        w, s = sample()
        good = w.segment()
        second = good.index(b"CLF1", good.index(b"CLF1") + 1)
        w.write_dir(self.d, good[:second + 20] + good[second + 40:])
        code, r = run(self.d)
        self.assertEqual((code, r["verdict"], r["failure"]["seq"]), (1, "broken", 2), r)


class TrustedKeys(unittest.TestCase):
    @unittest.expectedFailure
    def test_a_copied_registration_does_not_make_a_forged_ledger_trusted(self) -> None:
        """FORMAT.md §8 step 10 trusts a ledger if any key it ever had is trusted. A
        KeyRegistered proof of possession signs only ledger_id ‖ public_key, so a forger
        can start a ledger of their own with the real ledger's id and their own genesis
        key, copy the real registration of node key B into it, and sign everything with
        their key: B is then "a key the ledger had", and the forgery passes step 10 with
        B pinned. cairn's verifier accepts it too (reported to the coordinator). This
        test states the property the spec should give; it fails until the spec does."""
        lid = b"\x42" * 16
        sk_b, pk_b = key(2)
        proof = sk_b.sign(vl.REGISTRATION_DOMAIN + lid + pk_b)
        forged = Writer(lid, seed=7)
        forged.frame(1, [(vl.KIND_KEY_REGISTERED, pk_b + proof, 0)])
        forged.frame(1, [(0x0100, b"forged history", 0)])
        with tempfile.TemporaryDirectory() as d:
            forged.write_dir(d)
            report = vl.verify_ledger(os.path.join(d, "segments"), [pk_b])
        self.assertFalse(report.intact)


class Bundles(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.tmp.name, "b.bundle")

    def tearDown(self) -> None:
        self.tmp.cleanup()

    def verify(self, data: bytes, *args: str) -> tuple[int, dict]:
        with open(self.path, "wb") as f:
            f.write(data)
        return run(self.path, *args)

    def test_whole_and_partial_bundles(self) -> None:
        w, s = sample()
        for first, last in [(0, len(w.frames) - 1), (0, 3), (2, 5), (5, 6), (6, 6), (7, 9)]:
            for fmt in (1, 2):
                b = w.bundle(first, last, fmt)
                code, r = self.verify(b)
                start, end = w.frames[first][0], w.frames[last][1]
                expect_ok = fmt == 2 or not (start <= s["sealed"] <= end < s["erase"])
                self.assertEqual(code, 0 if expect_ok else 1, (first, last, fmt, r))
                self.assertEqual((r["first_seq"], r["last_seq"]), (start, end))
                if not expect_ok:
                    self.assertEqual(r["failure"]["seq"], s["sealed"])
                    self.assertIn("truncated", r["failure"]["reason"])
                if fmt == 2 and start <= s["sealed"] <= end < s["erase"]:
                    self.assertEqual(r["later_erasures"]["checkpoint_seq"], s["last"], r)
                    self.assertEqual(r["later_erasures"]["key_events"], 1, r)
                    self.assertEqual(r["erased_payloads"], 1)
                    # The later rotation is not the bundle's: its keys are as at its end.
                    self.assertEqual([(k["registered_at"], k["retired_at"]) for k in r["keys"]],
                                     [(1, None)], r)

    def test_tampered_bundles(self) -> None:
        w, s = sample()
        b = w.bundle(2, 6)  # starts after seq 2, holds the sealed event, ends before erase
        start, last = w.frames[2][0], w.frames[6][1]
        self.assertEqual(self.verify(b)[0], 0)
        ltr = b.index(b"CAIRNLTR")

        def flip(at: int) -> bytes:
            return b[:at] + bytes([b[at] ^ 1]) + b[at + 1:]

        later_cp = ltr + 8
        proof = later_cp + vl.CHECKPOINT_LEN + 1
        n_proof = b[later_cp + vl.CHECKPOINT_LEN]
        anchor = 88 + 32 * struct.unpack(">I", b[84:88])[0]
        after_proof = proof + 32 * n_proof
        cases = [
            ("head of the start state", flip(36), start),
            ("a frontier root", flip(36 + 32 + 8 + 8 + 4), start),
            ("the anchor signature", flip(anchor + vl.CHECKPOINT_LEN - 3), start),
            ("the anchor's root", flip(anchor + 1 + 8 + 32 + 1), start),
            ("a start key event", flip(anchor + vl.CHECKPOINT_LEN + 4 + 4 + 30), start),
            ("an event body", flip(b.index(b"event 4")), 5),
            ("the later checkpoint's root", flip(later_cp + 1 + 8 + 32 + 3), last + 1),
            ("the later checkpoint's signature", flip(later_cp + vl.CHECKPOINT_LEN - 3),
             last + 1),
            ("a consistency proof hash", flip(proof + 5), last + 1),
            ("a later key event", flip(after_proof + 4 + 4 + 60), last + 1),
            ("an inclusion proof hash of the erase event", flip(len(b) - 24 - 3), last + 1),
            ("the trailer", flip(len(b) - 1), last + 1),
            ("dropped later section", b[:ltr] + b[-24:], s["sealed"]),
            ("later section in format 1", b[:8] + struct.pack(">I", 1) + b[12:], last + 1),
            ("bytes after the trailer", b + b"\0", last + 1),
        ]
        for what, data, seq in cases:
            code, r = self.verify(data)
            self.assertEqual((code, r["verdict"]), (1, "broken"), (what, r))
            self.assertEqual(r["failure"]["seq"], seq, (what, r))
        self.assertGreater(n_proof, 0)

    def test_expected_checkpoint_against_a_bundle(self) -> None:
        w, s = sample()
        cp = vl.parse_checkpoint(vl.Reader(w.checkpoint_of(w.frames[4][1])))
        cp_file = os.path.join(self.tmp.name, "cp.json")
        with open(cp_file, "w") as f:
            json.dump(vl.saved_checkpoint(w.ledger_id, cp), f)
        for first, last, code in [(2, 6, 0), (5, 6, 0), (2, 3, 1)]:
            got, r = self.verify(w.bundle(first, last), "--expect-checkpoint", cp_file)
            self.assertEqual(got, code, (first, last, r))


if __name__ == "__main__":
    unittest.main()
