"""A pytest plugin: a test module that leaves a socket open fails (its last test errors in
teardown, naming each socket).

Why: ``filterwarnings = error`` already fails a test whose dropped socket the garbage collector
closes while it runs. A socket something still refers to when the module ends (a module-level
list, an autouse async fixture that pytest-trio never ran, a client parked in a global) stays
open until the interpreter exits, and its ``ResourceWarning: unclosed <socket.socket ...>`` is
printed after pytest's summary, where it fails nothing and names no test.

How: the process's socket descriptors (``/proc/self/fd``, by descriptor and inode) are read
when a module's first test is set up and again after its last test's teardown (module
fixtures finalized by then). Sockets that appeared and survive a garbage collection and a short
grace (a thread still closing) are reported, with the socket objects' addresses and, under
``PYTHONTRACEMALLOC``, where each was allocated; so are the ones that collection had to close
(their ResourceWarnings). A module that closed what it opened pays two directory listings.

Contract: a module closes every socket it opens. Session-scoped fixtures must not hold sockets
(they would be reported against the module that first used them); none do. Without
``/proc/self/fd`` (not Linux) the guard is off.
"""

from __future__ import annotations

import gc
import os
import socket
import time
import tracemalloc
import warnings
from collections.abc import Generator
from typing import Any

import pytest

_FD_DIR = "/proc/self/fd"
GRACE_S = 1.0

_baseline: dict[str, set[tuple[int, str]]] = {}


def open_sockets() -> set[tuple[int, str]]:
    """(descriptor, "socket:[inode]") of every socket this process holds open."""
    found = set()
    for name in os.listdir(_FD_DIR):
        try:
            link = os.readlink(os.path.join(_FD_DIR, name))
        except OSError:  # closed meanwhile (or the listing's own descriptor)
            continue
        if link.startswith("socket:"):
            found.add((int(name), link))
    return found


def _describe(fds: set[int]) -> str:
    """The Python socket objects behind ``fds`` (an fd without one is named bare)."""
    lines = []
    seen = set()
    for obj in gc.get_objects():
        if isinstance(obj, socket.socket) and obj.fileno() in fds:
            seen.add(obj.fileno())
            lines.append(f"  {obj!r}")
            tb = tracemalloc.get_object_traceback(obj)
            if tb is not None:
                lines += ["    " + line for line in tb.format()]
    lines += [f"  fd {fd} (no socket.socket object refers to it)" for fd in sorted(fds - seen)]
    if not tracemalloc.is_tracing():
        lines.append("  (run with PYTHONTRACEMALLOC=20 to see where each was allocated)")
    return "\n".join(lines)


def _module_of(item: pytest.Item | None) -> str | None:
    return None if item is None else item.nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if not os.path.isdir(_FD_DIR):
        return
    module = _module_of(item)
    if module is not None and module not in _baseline:
        _baseline[module] = open_sockets()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
    result = yield
    module = _module_of(item)
    if module is None or _module_of(nextitem) == module or module not in _baseline:
        return result
    before = _baseline.pop(module)
    leaked = open_sockets() - before
    collected: list[str] = []  # closed only now, by the garbage collector: leaked as well
    deadline = time.monotonic() + GRACE_S
    while leaked and time.monotonic() < deadline:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            gc.collect()
        collected += [f"  {w.message}" for w in caught if issubclass(w.category, ResourceWarning)]
        leaked = open_sockets() - before
        if leaked:
            time.sleep(0.05)
    if leaked or collected:
        fds = {fd for fd, _ in leaked}
        pytest.fail(f"{module} left {len(fds)} socket(s) open and {len(collected)} to the "
                    f"garbage collector (respkv/testing/leaks.py):\n" + "\n".join(collected)
                    + ("\n" + _describe(fds) if fds else ""), pytrace=False)
    return result
