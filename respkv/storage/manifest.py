"""The manifest: which tables make up the database, as an append-only log of version edits.

As in LevelDB: ``MANIFEST-<n>`` holds checksummed edit records (same framing as the commit log,
type MANIFEST_EDIT); the file ``CURRENT`` names the live manifest. A new manifest starts with a
snapshot edit of the whole state, is fsynced, and becomes live by writing ``CURRENT.tmp``,
fsyncing it, renaming it over ``CURRENT`` and fsyncing the directory. An edit is committed when its
record is fsynced; a torn last record is an edit that never committed. Byte layout:
docs/formats/manifest.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from respkv.storage.commitlog import frame, read_records
from respkv.storage.errors import LogCorruptionError, ManifestCorruptionError
from respkv.storage.format import (
    ADD_TABLE_FIXED,
    CURRENT,
    MANIFEST_EDIT,
    MANIFEST_FORMAT_VERSION,
    TAG_ADD_TABLE,
    TAG_DELETE_TABLE,
    TAG_FORMAT,
    TAG_LAST_SEQ,
    TAG_LOG_NUMBER,
    TAG_NEXT_FILE,
    TEMP_SUFFIX,
    U32,
    U64,
    manifest_name,
)
from respkv.storage.fs import FileSystem, WritableFile


@dataclass(frozen=True)
class TableMeta:
    number: int
    size: int
    min_seq: int
    max_seq: int
    entries: int
    level: int
    smallest: bytes
    largest: bytes


@dataclass
class VersionEdit:
    format_version: int | None = None
    log_number: int | None = None
    next_file: int | None = None
    last_seq: int | None = None
    added: list[TableMeta] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)

    def encode(self) -> bytes:
        out = bytearray()
        if self.format_version is not None:
            out += bytes([TAG_FORMAT]) + U32.pack(self.format_version)
        for tag, v in ((TAG_LOG_NUMBER, self.log_number), (TAG_NEXT_FILE, self.next_file),
                       (TAG_LAST_SEQ, self.last_seq)):
            if v is not None:
                out += bytes([tag]) + U64.pack(v)
        for n in self.deleted:
            out += bytes([TAG_DELETE_TABLE]) + U64.pack(n)
        for t in self.added:
            out += bytes([TAG_ADD_TABLE])
            out += ADD_TABLE_FIXED.pack(t.number, t.size, t.min_seq, t.max_seq, t.entries,
                                        t.level, len(t.smallest), len(t.largest))
            out += t.smallest + t.largest
        return bytes(out)

    @classmethod
    def decode(cls, p: bytes) -> VersionEdit:
        e = cls()
        o = 0
        while o < len(p):
            tag = p[o]
            o += 1
            if tag == TAG_FORMAT:
                (e.format_version,) = U32.unpack_from(p, o)
                o += 4
            elif tag in (TAG_LOG_NUMBER, TAG_NEXT_FILE, TAG_LAST_SEQ):
                (v,) = U64.unpack_from(p, o)
                o += 8
                if tag == TAG_LOG_NUMBER:
                    e.log_number = v
                elif tag == TAG_NEXT_FILE:
                    e.next_file = v
                else:
                    e.last_seq = v
            elif tag == TAG_DELETE_TABLE:
                e.deleted.append(U64.unpack_from(p, o)[0])
                o += 8
            elif tag == TAG_ADD_TABLE:
                num, size, mn, mx, ent, lvl, sl, ll = ADD_TABLE_FIXED.unpack_from(p, o)
                o += ADD_TABLE_FIXED.size
                if o + sl + ll > len(p):
                    raise ValueError("add-table keys beyond the edit")
                e.added.append(TableMeta(num, size, mn, mx, ent, lvl, p[o : o + sl],
                                         p[o + sl : o + sl + ll]))
                o += sl + ll
            else:
                raise ValueError(f"unknown edit tag {tag}")
        return e


@dataclass
class ManifestState:
    """The database state a manifest describes. ``tables`` maps file number to TableMeta."""

    tables: dict[int, TableMeta] = field(default_factory=dict)
    log_number: int = 0
    next_file: int = 1
    last_seq: int = 0

    def apply(self, e: VersionEdit) -> None:
        if e.log_number is not None:
            self.log_number = e.log_number
        if e.next_file is not None:
            self.next_file = max(self.next_file, e.next_file)
        if e.last_seq is not None:
            self.last_seq = max(self.last_seq, e.last_seq)
        for n in e.deleted:
            self.tables.pop(n, None)
        for t in e.added:
            self.tables[t.number] = t

    def snapshot_edit(self) -> VersionEdit:
        return VersionEdit(MANIFEST_FORMAT_VERSION, self.log_number, self.next_file,
                           self.last_seq, sorted(self.tables.values(), key=lambda t: t.number), [])


def read_current(fs: FileSystem, directory: str) -> str | None:
    """The live manifest's file name, or None for a new database."""
    path = fs.join(directory, CURRENT)
    if not fs.exists(path):
        return None
    raw = fs.read_file(path)
    name = raw.decode("ascii", "replace").strip()
    if not raw.endswith(b"\n") or not name.startswith("MANIFEST-"):
        raise ManifestCorruptionError(path, 0, f"CURRENT does not name a manifest: {raw[:40]!r}")
    return name


def read_manifest(fs: FileSystem, path: str) -> ManifestState:
    data = fs.read_file(path)
    try:
        res = read_records(data, path, frozenset((MANIFEST_EDIT,)))
    except LogCorruptionError as e:
        raise ManifestCorruptionError(e.path, e.offset, e.reason) from None
    state = ManifestState()
    if not res.records:
        raise ManifestCorruptionError(path, 0, "manifest holds no complete edit")
    for i, (_, payload) in enumerate(res.records):
        try:
            edit = VersionEdit.decode(payload)
        except (ValueError, IndexError) as err:
            raise ManifestCorruptionError(path, 0, f"malformed edit #{i}: {err}") from None
        if i == 0 and edit.format_version != MANIFEST_FORMAT_VERSION:
            raise ManifestCorruptionError(path, 0, f"unknown manifest format {edit.format_version}")
        state.apply(edit)
    return state


class ManifestWriter:
    """The live manifest file. ``append`` commits one edit (write + fsync). Callers serialize."""

    def __init__(self, fs: FileSystem, directory: str, number: int, file: WritableFile) -> None:
        self.fs = fs
        self.directory = directory
        self.number = number
        self.file = file

    @classmethod
    def create(cls, fs: FileSystem, directory: str, number: int,
               state: ManifestState) -> ManifestWriter:
        """Write a new manifest holding ``state`` and make it live (CURRENT). When this returns
        the new manifest is durable and current; a crash before then leaves the old one live."""
        path = fs.join(directory, manifest_name(number))
        f = fs.create(path)
        f.append(frame(MANIFEST_EDIT, state.snapshot_edit().encode()))
        f.sync()
        tmp = fs.join(directory, CURRENT + TEMP_SUFFIX)
        t = fs.create(tmp)
        t.append(manifest_name(number).encode("ascii") + b"\n")
        t.sync()
        t.close()
        fs.rename(tmp, fs.join(directory, CURRENT))
        fs.fsync_dir(directory)
        return cls(fs, directory, number, f)

    def append(self, edit: VersionEdit) -> None:
        self.file.append(frame(MANIFEST_EDIT, edit.encode()))
        self.file.sync()

    def close(self) -> None:
        self.file.close()
