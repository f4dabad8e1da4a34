"""FaultFileSystem: an in-memory ``FileSystem`` that knows what a power loss would keep.

Modelled on LevelDB's ``db/fault_injection_test.cc``. Each file is an inode with its bytes and the
length that was fsynced; each directory has its live entries and the entries that were made
durable by the last ``fsync_dir``. ``crash()`` throws away everything a power loss may throw away:

* names created, renamed or unlinked since the directory's last fsync revert to their durable
  state (a new file that was never dir-fsynced vanishes, an unlinked one comes back);
* (or, with ``partial_dir_ops``, each such name change independently survives or not);
* every file keeps only its fsynced prefix, plus, when ``tear`` is on, a random prefix of the
  bytes appended after the last fsync (a torn write).

Fault injection: ``crash_after(k)`` raises ``SimulatedCrash`` at the k-th mutating operation
(counted from the call; the operation is not performed) and every operation after it, until
``crash()``; ``space_left`` makes appends fail with ENOSPC once exhausted (after writing what
fits, like a real short write); ``eio_paths`` makes reads of those files fail with EIO.

Randomness is passed in: a ``random.Random`` seeded by the test. Thread-safe (one lock).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from respkv.storage.fs import eio, enospc


class SimulatedCrash(Exception):
    """The fault file system 'lost power' at a chosen operation."""


@dataclass
class _Inode:
    data: bytearray = field(default_factory=bytearray)
    synced_len: int = 0


class _Dir:
    def __init__(self) -> None:
        self.live: dict[str, _Inode] = {}
        self.durable: dict[str, _Inode] = {}


def _split(path: str) -> tuple[str, str]:
    d, _, name = path.rpartition("/")
    return d, name


class _FaultWritable:
    def __init__(self, fs: FaultFileSystem, path: str, inode: _Inode) -> None:
        self.path = path
        self._fs = fs
        self._inode = inode
        self._gen = fs._generation

    def append(self, data: bytes | bytearray | memoryview) -> None:
        self._fs._append(self, bytes(data))

    def sync(self) -> None:
        self._fs._sync(self)

    def size(self) -> int:
        return len(self._inode.data)

    def close(self) -> None:
        pass


class _FaultReadable:
    def __init__(self, fs: FaultFileSystem, path: str, inode: _Inode) -> None:
        self.path = path
        self._fs = fs
        self._inode = inode

    def pread(self, offset: int, n: int) -> bytes:
        fs = self._fs
        with fs._lock:
            fs.reads += 1
            if self.path in fs.eio_paths:
                raise eio(self.path)
            return bytes(self._inode.data[offset : offset + n])

    def size(self) -> int:
        return len(self._inode.data)

    def close(self) -> None:
        pass


class FaultFileSystem:
    def __init__(self, rng: Any = None) -> None:
        self._lock = threading.RLock()
        self._dirs: dict[str, _Dir] = {}
        self._rng = rng
        self._crash_countdown: int | None = None
        self._crashed = False
        self._generation = 0
        self.ops = 0  # mutating operations performed so far (create/append/sync/rename/...)
        self.reads = 0
        self.space_left: int | None = None  # None: unlimited
        self.eio_paths: set[str] = set()
        self._locks: set[tuple[int, str]] = set()

    # -- fault control ------------------------------------------------------------------------
    def crash_after(self, k: int) -> None:
        """Raise SimulatedCrash at the k-th mutating operation from now (k >= 1)."""
        with self._lock:
            self._crash_countdown = k

    @property
    def crashed(self) -> bool:
        return self._crashed

    def crash(self, tear: bool = False, partial_dir_ops: bool = False) -> None:
        """Lose power: keep only what was durable (see module docstring), then come back up.
        With ``partial_dir_ops`` each name changed since the last fsync_dir independently keeps
        its new state or reverts (a file system may have persisted some directory updates on its
        own; each rename still replaces its target atomically). Handles opened before the crash
        are dead afterwards."""
        with self._lock:
            for d in self._dirs.values():
                if partial_dir_ops and self._rng is not None:
                    names = set(d.live) | set(d.durable)
                    kept: dict[str, _Inode] = {}
                    for name in sorted(names):
                        new, old = d.live.get(name), d.durable.get(name)
                        pick = new if new is old or self._rng.random() < 0.5 else old
                        if pick is not None:
                            kept[name] = pick
                    d.live = kept
                else:
                    d.live = dict(d.durable)
                d.durable = dict(d.live)
                for inode in d.live.values():
                    keep = inode.synced_len
                    unsynced = len(inode.data) - keep
                    if tear and unsynced > 0 and self._rng is not None:
                        keep += self._rng.randrange(unsynced + 1)
                    del inode.data[keep:]
                    inode.synced_len = len(inode.data)  # what survived is on disk now
            self._crash_countdown = None
            self._crashed = False
            self._generation += 1

    def _tick(self) -> None:
        # Called with the lock held, before each mutating operation.
        if self._crashed:
            raise SimulatedCrash("file system is down")
        if self._crash_countdown is not None:
            self._crash_countdown -= 1
            if self._crash_countdown <= 0:
                self._crashed = True
                raise SimulatedCrash(f"simulated crash at operation {self.ops + 1}")
        self.ops += 1

    # -- helpers ------------------------------------------------------------------------------
    def _dir(self, d: str) -> _Dir:
        try:
            return self._dirs[d]
        except KeyError:
            raise FileNotFoundError(2, "no such directory", d) from None

    def _lookup(self, path: str) -> _Inode:
        d, name = _split(path)
        try:
            return self._dir(d).live[name]
        except KeyError:
            raise FileNotFoundError(2, "no such file", path) from None

    def _check_gen(self, f: _FaultWritable) -> None:
        if f._gen != self._generation:
            raise SimulatedCrash("handle from before a crash")

    def _append(self, f: _FaultWritable, data: bytes) -> None:
        with self._lock:
            self._check_gen(f)
            self._tick()
            if self.space_left is not None:
                fits = max(0, min(len(data), self.space_left))
                f._inode.data += data[:fits]
                self.space_left -= fits
                if fits < len(data):
                    raise enospc(f.path)
                return
            f._inode.data += data

    def _sync(self, f: _FaultWritable) -> None:
        with self._lock:
            self._check_gen(f)
            self._tick()
            f._inode.synced_len = len(f._inode.data)

    # -- FileSystem ---------------------------------------------------------------------------
    def create(self, path: str) -> _FaultWritable:
        with self._lock:
            self._tick()
            d, name = _split(path)
            inode = _Inode()
            self._dir(d).live[name] = inode
            return _FaultWritable(self, path, inode)

    def open_append(self, path: str) -> _FaultWritable:
        with self._lock:
            return _FaultWritable(self, path, self._lookup(path))

    def open_read(self, path: str) -> _FaultReadable:
        with self._lock:
            return _FaultReadable(self, path, self._lookup(path))

    def read_file(self, path: str) -> bytes:
        with self._lock:
            if path in self.eio_paths:
                raise eio(path)
            self.reads += 1
            return bytes(self._lookup(path).data)

    def rename(self, src: str, dst: str) -> None:
        with self._lock:
            self._tick()
            sd, sname = _split(src)
            dd, dname = _split(dst)
            inode = self._lookup(src)
            del self._dir(sd).live[sname]
            self._dir(dd).live[dname] = inode

    def unlink(self, path: str) -> None:
        with self._lock:
            self._tick()
            d, name = _split(path)
            self._lookup(path)
            del self._dir(d).live[name]

    def listdir(self, path: str) -> list[str]:
        with self._lock:
            return sorted(self._dir(path).live)

    def fsync_dir(self, path: str) -> None:
        with self._lock:
            self._tick()
            d = self._dir(path)
            d.durable = dict(d.live)

    def mkdir(self, path: str) -> None:
        # Directories themselves are durable at once (the engine's directory is made once).
        with self._lock:
            if path not in self._dirs:
                self._tick()
                self._dirs[path] = _Dir()

    def exists(self, path: str) -> bool:
        with self._lock:
            if path in self._dirs:
                return True
            d, name = _split(path)
            return d in self._dirs and name in self._dirs[d].live

    def size(self, path: str) -> int:
        with self._lock:
            return len(self._lookup(path).data)

    def truncate(self, path: str, size: int) -> None:
        with self._lock:
            self._tick()
            inode = self._lookup(path)
            del inode.data[size:]
            inode.synced_len = min(inode.synced_len, size)

    def join(self, directory: str, name: str) -> str:
        return f"{directory}/{name}"

    def lock(self, path: str) -> object:
        # In-memory: locks are per FaultFileSystem (one "machine"); a crash releases them.
        with self._lock:
            key = (self._generation, path)
            if key in self._locks:
                raise BlockingIOError(f"{path} is locked")
            self._locks.add(key)
            return key

    def unlock(self, handle: object) -> None:
        with self._lock:
            self._locks.discard(handle)  # type: ignore[arg-type]

    def kill_process(self) -> None:
        """The process died without closing anything: its locks go, its written (not only its
        synced) bytes stay — the OS still has them. Test helper."""
        with self._lock:
            self._locks.clear()

    # -- test helpers (not part of the FileSystem protocol) -----------------------------------
    def corrupt(self, path: str, offset: int, xor: int = 0x01) -> None:
        """Flip bits of one byte in place (durably: it models media corruption)."""
        with self._lock:
            self._lookup(path).data[offset] ^= xor

    def chop(self, path: str, size: int) -> None:
        """Durably truncate a file to ``size`` bytes (models a torn or damaged file)."""
        with self._lock:
            inode = self._lookup(path)
            del inode.data[size:]
            inode.synced_len = min(inode.synced_len, size)
