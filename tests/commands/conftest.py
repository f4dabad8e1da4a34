"""Fixtures for pure command tests: a server state over a MemoryEngine and a settable clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import respkv.commands  # noqa: F401  (registers commands)
from respkv.commands.core import TABLE, Client, ServerState, dispatch
from respkv.config import Config
from respkv.storage.memory import MemoryEngine


class FakeClock:
    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


class Conn:
    """A client connection without a socket: ``conn("SET", "k", "v")`` -> reply value."""

    def __init__(self, server: ServerState) -> None:
        self.server = server
        self.client: Client = server.new_client("127.0.0.1:50000", "127.0.0.1:6379")

    def __call__(self, *args: bytes | str | int) -> object:
        raw = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        return dispatch(TABLE, self.client, raw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> ServerState:
    return ServerState(Config(engine="memory"), MemoryEngine(), clock)


@pytest.fixture
def conn(server: ServerState) -> Conn:
    return Conn(server)


@pytest.fixture
def make_conn(server: ServerState) -> Callable[[], Conn]:
    """More connections to the same server (``conn`` is one of them)."""
    return lambda: Conn(server)
