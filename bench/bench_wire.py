"""CPU cost of the peer dialect codec (respkv/cluster/wire.py), before and after, in one run.

``Reference`` below is the codec as it was before the fast paths (frozen slots dataclasses, a
bytearray frame encoder, one decode_request with if-chains), kept verbatim as the baseline: each
line prints the reference's cost, the current module's cost through the same calls, and, where
wire.py has one, its fast entry point (``encode_write``, ``FrameDecoder.next_request``, ...).
Before timing, every encoder's bytes are checked equal to the reference's and every decoded
message field by field, so a faster codec that changed the wire cannot print a figure.

Decoding is timed as the peer loops use it (respkv/node/peer.py): ``feed(read)`` then take
frames until None, with one frame per read and with 16 pipelined frames per read. Payloads are
``--payload`` bytes (a sibling set of a ~100-byte value is about that). Figures are CPU
microseconds per message (process_time), the best of ``--rounds`` passes of ``--n`` messages.

    python bench/bench_wire.py [--n 100000] [--rounds 5] [--payload 128]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hiredis

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from respkv.cluster import wire  # noqa: E402


class Reference:
    """The codec before the fast paths: the baseline, and the oracle for the bytes."""

    class WireError(ValueError):
        pass

    @staticmethod
    def encode_frame(parts: list[bytes] | tuple[bytes, ...]) -> bytes:
        out = bytearray(b"*%d\r\n" % len(parts))
        for p in parts:
            out += b"$%d\r\n" % len(p)
            out += p
            out += b"\r\n"
        return bytes(out)

    class FrameDecoder:
        __slots__ = ("_reader", "_pending")

        def __init__(self) -> None:
            self._reader = hiredis.Reader()
            self._pending = 0

        def feed(self, data: bytes) -> None:
            self._pending += len(data)
            if self._pending > wire.MAX_FRAME_BYTES + 64 * 1024:
                raise Reference.WireError("frame too large")
            self._reader.feed(data)

        def next_frame(self) -> list[bytes] | None:
            try:
                item = self._reader.gets()
            except hiredis.ProtocolError as exc:
                raise Reference.WireError(f"protocol error: {exc}") from None
            if item is False:
                return None
            self._pending = 0
            if type(item) is not list or not 1 <= len(item) <= wire.MAX_FRAME_PARTS:
                raise Reference.WireError("expected an array of 1 to 16 bulk strings")
            for part in item:
                if type(part) is not bytes:
                    raise Reference.WireError("expected bulk strings only")
            return item

    @staticmethod
    def parse_uint(raw: bytes) -> int:
        if not raw or not raw.isdigit() or len(raw) > 20 or (raw[0] == 48 and len(raw) > 1):
            raise Reference.WireError(f"bad unsigned integer {raw[:24]!r}")
        return int(raw)

    @dataclass(frozen=True, slots=True)
    class ReplicaRead:
        req_id: int
        sender: str
        timeout_ms: int
        db: int
        key: bytes

    @dataclass(frozen=True, slots=True)
    class ReplicaWrite:
        req_id: int
        sender: str
        timeout_ms: int
        db: int
        key: bytes
        sibling_set: bytes

    @dataclass(frozen=True, slots=True)
    class CoordinateWrite:
        req_id: int
        sender: str
        timeout_ms: int
        db: int
        key: bytes
        context: bytes
        value: bytes | None
        expire_at_ms: int
        timestamp_ms: int

    @dataclass(frozen=True, slots=True)
    class Reply:
        req_id: int
        ok: bool
        payload: bytes

    @staticmethod
    def encode_request(r: Any) -> bytes:
        R = Reference
        head = [b"%d" % r.req_id, r.sender.encode(), b"%d" % r.timeout_ms]
        if type(r) is R.ReplicaRead:
            return R.encode_frame([b"RR", *head, b"%d" % r.db, r.key])
        if type(r) is R.ReplicaWrite:
            return R.encode_frame([b"RW", *head, b"%d" % r.db, r.key, r.sibling_set])
        if type(r) is R.CoordinateWrite:
            flags = b"t" if r.value is None else b"v"
            return R.encode_frame([
                b"CW", *head, b"%d" % r.db, r.key, r.context, flags, r.value or b"",
                b"%d" % r.expire_at_ms, b"%d" % r.timestamp_ms,
            ])
        raise TypeError(r)

    @staticmethod
    def decode_request(frame: list[bytes]) -> Any:
        R = Reference
        kind = frame[0]
        want = {b"RR": 6, b"RW": 7, b"CW": 11, b"PING": 4}.get(kind)
        if want is None or len(frame) != want:
            raise R.WireError("bad request")
        req_id = R.parse_uint(frame[1])
        try:
            sender = frame[2].decode()
        except UnicodeDecodeError:
            raise R.WireError("sender is not UTF-8") from None
        timeout_ms = R.parse_uint(frame[3])
        db = R.parse_uint(frame[4])
        if kind == b"RR":
            return R.ReplicaRead(req_id, sender, timeout_ms, db, frame[5])
        if kind == b"RW":
            return R.ReplicaWrite(req_id, sender, timeout_ms, db, frame[5], frame[6])
        flags = frame[7]
        if flags not in (b"v", b"t"):
            raise R.WireError("CW flags must be 'v' or 't'")
        value = None if flags == b"t" else frame[8]
        return R.CoordinateWrite(req_id, sender, timeout_ms, db, frame[5], frame[6], value,
                                 R.parse_uint(frame[9]), R.parse_uint(frame[10]))

    @staticmethod
    def encode_reply(req_id: int, ok: bool, payload: bytes) -> bytes:
        return Reference.encode_frame([b"R", b"%d" % req_id, b"OK" if ok else b"ERR", payload])

    @staticmethod
    def decode_reply(frame: list[bytes]) -> Any:
        R = Reference
        if len(frame) != 4 or frame[0] != b"R" or frame[2] not in (b"OK", b"ERR"):
            raise R.WireError("malformed reply")
        return R.Reply(R.parse_uint(frame[1]), frame[2] == b"OK", frame[3])


R = Reference
SENDER = "node-1"
SENDER_B = SENDER.encode()
FIRST_ID = 1_000_000  # a node that has run a while: request ids are past the small-number table


def fields(msg: Any) -> tuple[Any, ...]:
    return tuple(getattr(msg, f) for f in type(msg).__annotations__)


def check_same_wire(n: int, payload: bytes) -> None:
    """The current codec's bytes and messages are the reference's, on the benchmark's inputs."""
    for i in range(FIRST_ID, FIRST_ID + min(n, 1000)):
        key = b"key:%d" % i
        cases: list[tuple[Any, Any, bytes]] = [
            (R.ReplicaWrite(i, SENDER, 2000, 0, key, payload),
             wire.ReplicaWrite(i, SENDER, 2000, 0, key, payload),
             wire.encode_write(i, SENDER_B, 2000, 0, key, payload)),
            (R.ReplicaRead(i, SENDER, 1999, 3, key), wire.ReplicaRead(i, SENDER, 1999, 3, key),
             wire.encode_read(i, SENDER_B, 1999, 3, key)),
            (R.CoordinateWrite(i, SENDER, 2000, 0, key, b"", payload, 0, 1_700_000_000_000 + i),
             wire.CoordinateWrite(i, SENDER, 2000, 0, key, b"", payload, 0, 1_700_000_000_000 + i),
             wire.encode_coordinate(i, SENDER_B, 2000, 0, key, b"", payload, 0,
                                    1_700_000_000_000 + i)),
        ]
        for ref, cur, fast in cases:
            data = R.encode_request(ref)
            assert wire.encode_request(cur) == data == fast, (ref, cur)
            dec = wire.FrameDecoder()
            dec.feed(data)
            assert fields(dec.next_request()) == fields(ref)  # type: ignore[arg-type]
        for ok, p in ((True, b""), (True, payload), (False, b"timeout")):
            data = R.encode_reply(i, ok, p)
            assert wire.encode_reply(i, ok, p) == data
            ref_dec, dec = R.FrameDecoder(), wire.FrameDecoder()
            ref_dec.feed(data)
            dec.feed(data)
            ref_frame = ref_dec.next_frame()
            assert ref_frame is not None
            assert fields(dec.next_reply()) == fields(R.decode_reply(ref_frame))
        assert wire.encode_ok_empty(i) == R.encode_reply(i, True, b"")


def measure(n: int, rounds: int, payload: bytes) -> list[tuple[str, dict[str, float]]]:
    """[(operation, {implementation: us per message})], in print order."""
    ids = range(FIRST_ID, FIRST_ID + n)
    pairs = [(i, b"key:%d" % i) for i in ids]
    rw_frames = [R.encode_request(R.ReplicaWrite(i, SENDER, 2000, 0, k, payload))
                 for i, k in pairs]
    rr_frames = [R.encode_request(R.ReplicaRead(i, SENDER, 2000, 0, k)) for i, k in pairs]
    ok_frames = [R.encode_reply(i, True, b"") for i in ids]
    rows: list[tuple[str, dict[str, float]]] = []

    def row(label: str, **impls: Callable[[], object]) -> None:
        best: dict[str, float] = {}
        for _ in range(rounds):
            for name, fn in impls.items():
                t0 = time.process_time()
                fn()
                us = (time.process_time() - t0) * 1e6 / n
                best[name] = min(us, best.get(name, us))
        rows.append((label, best))

    def batches(frames: list[bytes], per_read: int) -> list[bytes]:
        return [b"".join(frames[i : i + per_read]) for i in range(0, len(frames), per_read)]

    def frames_then(decoder_cls: Any, reads: list[bytes], decode: Callable[[Any], object]
                    ) -> Callable[[], object]:
        def run() -> None:
            dec = decoder_cls()
            for data in reads:
                dec.feed(data)
                while (frame := dec.next_frame()) is not None:
                    decode(frame)
        return run

    def fused(reads: list[bytes], method: str) -> Callable[[], object]:
        def run() -> None:
            dec = wire.FrameDecoder()
            take = getattr(dec, method)
            for data in reads:
                dec.feed(data)
                while take() is not None:
                    pass
        return run

    for label, frames, per_read in (("RW", rw_frames, 1), ("RW", rw_frames, 16),
                                    ("RR", rr_frames, 1)):
        reads = batches(frames, per_read)
        row(f"decode {label} request, {per_read} per read",
            reference=frames_then(R.FrameDecoder, reads, R.decode_request),
            current=frames_then(wire.FrameDecoder, reads, wire.decode_request),
            fast=fused(reads, "next_request"))
    for per_read in (1, 16):
        reads = batches(ok_frames, per_read)
        row(f"decode OK reply, {per_read} per read",
            reference=frames_then(R.FrameDecoder, reads, R.decode_reply),
            current=frames_then(wire.FrameDecoder, reads, wire.decode_reply),
            fast=fused(reads, "next_reply"))
    rw_frame = wire.FrameDecoder()
    rw_frame.feed(rw_frames[0])
    one_rw = rw_frame.next_frame()
    assert one_rw is not None
    row("decode_request(RW frame) alone",
        reference=lambda: [R.decode_request(one_rw) for _ in ids],
        current=lambda: [wire.decode_request(one_rw) for _ in ids])
    one_ok = [b"R", b"%d" % FIRST_ID, b"OK", b""]
    row("decode_reply(OK frame) alone",
        reference=lambda: [R.decode_reply(one_ok) for _ in ids],
        current=lambda: [wire.decode_reply(one_ok) for _ in ids])

    row("encode RW request",
        reference=lambda: [R.encode_request(R.ReplicaWrite(i, SENDER, 2000, 0, k, payload))
                           for i, k in pairs],
        current=lambda: [wire.encode_request(wire.ReplicaWrite(i, SENDER, 2000, 0, k, payload))
                         for i, k in pairs],
        fast=lambda: [wire.encode_write(i, SENDER_B, 2000, 0, k, payload)
                      for i, k in pairs])
    row("encode RR request",
        reference=lambda: [R.encode_request(R.ReplicaRead(i, SENDER, 2000, 0, k))
                           for i, k in pairs],
        current=lambda: [wire.encode_request(wire.ReplicaRead(i, SENDER, 2000, 0, k))
                         for i, k in pairs],
        fast=lambda: [wire.encode_read(i, SENDER_B, 2000, 0, k) for i, k in pairs])
    row("encode CW request",
        reference=lambda: [R.encode_request(R.CoordinateWrite(i, SENDER, 2000, 0, k, b"", payload,
                                                              0, i)) for i, k in pairs],
        current=lambda: [wire.encode_request(wire.CoordinateWrite(i, SENDER, 2000, 0, k, b"",
                                                                  payload, 0, i))
                         for i, k in pairs],
        fast=lambda: [wire.encode_coordinate(i, SENDER_B, 2000, 0, k, b"", payload, 0, i)
                      for i, k in pairs])
    row("encode OK reply, empty payload",
        reference=lambda: [R.encode_reply(i, True, b"") for i in ids],
        current=lambda: [wire.encode_reply(i, True, b"") for i in ids],
        fast=lambda: [wire.encode_ok_empty(i) for i in ids])
    row("encode OK reply, payload",
        reference=lambda: [R.encode_reply(i, True, payload) for i in ids],
        current=lambda: [wire.encode_reply(i, True, payload) for i in ids])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--payload", type=int, default=128)
    args = p.parse_args()
    payload = bytes(range(256)) * (args.payload // 256) + bytes(range(args.payload % 256))
    check_same_wire(args.n, payload)
    rows = measure(args.n, args.rounds, payload)
    width = max(len(label) for label, _ in rows)
    print(f"CPU us per message, best of {args.rounds} passes of {args.n}, "
          f"{args.payload}-byte payloads")
    print(f"  {'':<{width}}  {'reference':>9}  {'current':>9}  {'fast':>9}  speedup")
    for label, best in rows:
        ref = best["reference"]
        cols = [f"{best[k]:9.3f}" if k in best else f"{'-':>9}" for k in ("reference", "current",
                                                                          "fast")]
        top = min(v for k, v in best.items() if k != "reference")
        print(f"  {label:<{width}}  {'  '.join(cols)}  {ref / top:6.2f}x")


if __name__ == "__main__":
    main()
