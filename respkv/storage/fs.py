"""The FileSystem seam: every OS file call the storage engine makes goes through one object.

As in LevelDB's ``Env``, the engine never touches ``os`` itself; it is handed a ``FileSystem``.
``OSFileSystem`` is the real one; ``respkv.storage.faultfs.FaultFileSystem`` is an in-memory one
for tests that remembers what was fsynced, so a test can crash it (dropping everything that was
not), tear the last write, and inject ENOSPC/EIO.

Durability contract (the one both implementations keep, and the engine relies on):

* ``WritableFile.append`` hands bytes to the OS; they survive a process crash, not a power loss.
* ``WritableFile.sync`` (fsync) makes the file's *contents* durable, but not its name.
* A file's name (creation, rename, unlink) is durable only after ``fsync_dir`` on its directory.
* ``rename`` atomically replaces ``dst``.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Protocol


class WritableFile(Protocol):
    """An append-only file. Used by one thread at a time (callers serialize with a lock),
    except that ``sync`` may run concurrently with nothing else on the same file."""

    path: str

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at the end of the file, or raise OSError (possibly after
        writing a prefix of it)."""
        ...

    def sync(self) -> None:
        """fsync: the contents appended so far are durable when this returns."""
        ...

    def size(self) -> int: ...

    def close(self) -> None: ...


class RandomAccessFile(Protocol):
    """A read-only file; ``pread`` is safe to call from several threads at once."""

    path: str

    def pread(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (fewer only at end of file)."""
        ...

    def size(self) -> int: ...

    def close(self) -> None: ...


class FileSystem(Protocol):
    def create(self, path: str) -> WritableFile:
        """Create (or truncate) ``path`` for appending."""
        ...

    def open_append(self, path: str) -> WritableFile: ...

    def open_read(self, path: str) -> RandomAccessFile: ...

    def read_file(self, path: str) -> bytes: ...

    def rename(self, src: str, dst: str) -> None: ...

    def unlink(self, path: str) -> None: ...

    def listdir(self, path: str) -> list[str]: ...

    def fsync_dir(self, path: str) -> None: ...

    def mkdir(self, path: str) -> None:
        """Create the directory if it does not exist (and its parents)."""
        ...

    def exists(self, path: str) -> bool: ...

    def size(self, path: str) -> int: ...

    def truncate(self, path: str, size: int) -> None: ...

    def join(self, directory: str, name: str) -> str: ...

    def lock(self, path: str) -> object:
        """Take an exclusive lock on ``path`` (created if missing) for the life of the returned
        handle (release with ``unlock``); raise BlockingIOError if another process holds it."""
        ...

    def unlock(self, handle: object) -> None: ...


# -- the real one -------------------------------------------------------------------------------


class OSWritableFile:
    __slots__ = ("path", "_fd", "_size")

    def __init__(self, path: str, truncate: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self.path = path
        self._fd = os.open(path, flags, 0o644)
        self._size = os.fstat(self._fd).st_size

    def append(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            self._size += n
            view = view[n:]

    def sync(self) -> None:
        os.fsync(self._fd)

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class OSRandomAccessFile:
    __slots__ = ("path", "_fd", "_size", "__weakref__")

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        self._size = os.fstat(self._fd).st_size

    def pread(self, offset: int, n: int) -> bytes:
        return os.pread(self._fd, n, offset)

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        # Readers of obsolete tables may outlive the table list (a scan in progress holds one);
        # the descriptor is released when the last reference goes.
        self.close()


def replace_durably(path: str, data: bytes) -> None:
    """Replace the file ``path`` with ``data`` on the real file system: write a temporary file
    beside it, fsync it, rename it over ``path``, fsync the directory. After a crash the file
    holds the old contents or the new ones, never a mix, and once this returns, the new."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    OSFileSystem().fsync_dir(os.path.dirname(path) or ".")


class OSFileSystem:
    """The real file system (POSIX)."""

    def create(self, path: str) -> OSWritableFile:
        return OSWritableFile(path, truncate=True)

    def open_append(self, path: str) -> OSWritableFile:
        return OSWritableFile(path, truncate=False)

    def open_read(self, path: str) -> OSRandomAccessFile:
        return OSRandomAccessFile(path)

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def mkdir(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def size(self, path: str) -> int:
        return os.stat(path).st_size

    def truncate(self, path: str, size: int) -> None:
        os.truncate(path, size)

    def join(self, directory: str, name: str) -> str:
        return os.path.join(directory, name)

    def lock(self, path: str) -> object:
        import fcntl

        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise BlockingIOError(f"{path} is locked by another process") from None
        return fd

    def unlock(self, handle: object) -> None:
        import fcntl

        assert isinstance(handle, int)
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)


def enospc(path: str) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def eio(path: str) -> OSError:
    return OSError(errno.EIO, os.strerror(errno.EIO), path)


def wall_clock_ms() -> int:
    """The engine's default ``now_ms``: Unix time in milliseconds. (The clock is an OS call too,
    so it lives at the seam; tests pass their own.)"""
    return time.time_ns() // 1_000_000
