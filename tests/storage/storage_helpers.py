"""Shared helpers for the storage tests (imported by name: tests/storage is on sys.path)."""

from __future__ import annotations

from respkv.storage.faultfs import FaultFileSystem
from respkv.storage.lsm import LSMEngine

DB = "/db"


class Clock:
    """A manual clock passed to the engine as ``now_ms``."""

    def __init__(self, t: int = 1_700_000_000_000) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def open_engine(fs: FaultFileSystem, clock: Clock | None = None, **kw: object) -> LSMEngine:
    kw.setdefault("inline_background", True)
    kw.setdefault("memtable_bytes", 16 << 10)
    return LSMEngine.open(DB, fs=fs, now_ms=clock or Clock(), **kw)  # type: ignore[arg-type]
