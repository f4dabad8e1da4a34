"""Errors raised by the LSM storage engine.

Every corruption error names the file and the byte offset where the damage was found, so an
operator can inspect (or truncate) the file by hand.
"""

from __future__ import annotations


class CorruptionError(Exception):
    """Bytes on disk do not match their checksum or their documented format."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"corruption in {path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class LogCorruptionError(CorruptionError):
    """A bad commit-log record with valid records after it (not a torn tail)."""


class TableCorruptionError(CorruptionError):
    """A bad SSTable block, index, filter or footer."""


class ManifestCorruptionError(CorruptionError):
    """A bad manifest edit (not a torn tail) or a missing/garbled CURRENT file."""


class EngineClosedError(Exception):
    """The engine was closed, or stopped after an earlier write error (see ``__cause__``)."""
