"""Process facts for INFO, TIME and friends: the node-side half of respkv/commands/server.py.

respkv.commands never touches the OS; this module gives it what only the process knows, as
``ServerState.info_providers`` (section -> callable returning the fields to add or replace) and
``ServerState.clock_us`` (wall clock in microseconds, for TIME and server_time_usec).

Contract: every provider is cheap (a few syscalls, no allocation proportional to data) and never
blocks; it runs inside a command on the node's event loop.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from typing import Any, Protocol

from respkv.commands.core import ServerState
from respkv.compiled import MODULES as COMPILED_MODULES
from respkv.compiled import compiled_modules
from respkv.config import Config


class _NodeLike(Protocol):
    state: ServerState
    config: Config
    port: int | None


def wall_clock_us() -> int:
    return time.time_ns() // 1000


def process_rss_bytes() -> int:
    """Resident set size now (Linux: /proc/self/statm); the peak where that is unavailable."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def total_system_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return 0


class RateMeter:
    """instantaneous_* figures: rates between two INFO calls (the first: since start-up).

    redis-server samples every 100 ms in its cron; respkv's commands run without a cron hook, so
    the window is the time since the previous INFO, which for a monitoring poller is its period.
    """

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.last = (state.clock_ms(), 0, 0, 0)

    def __call__(self) -> dict[str, Any]:
        st = self.state.stats
        now = (
            self.state.clock_ms(),
            st.get("total_commands_processed", 0),
            st.get("total_net_input_bytes", 0),
            st.get("total_net_output_bytes", 0),
        )
        t0, ops0, in0, out0 = self.last
        self.last = now
        dt = (now[0] - t0) / 1000.0
        if dt <= 0:
            return {}
        return {
            "instantaneous_ops_per_sec": max(0, int((now[1] - ops0) / dt)),
            "instantaneous_input_kbps": "%.2f" % max(0.0, (now[2] - in0) / dt / 1024),
            "instantaneous_output_kbps": "%.2f" % max(0.0, (now[3] - out0) / dt / 1024),
        }


def register_info_providers(node: _NodeLike) -> None:
    """Install the process providers and the microsecond clock on ``node.state``."""
    state = node.state
    state.clock_us = wall_clock_us  # type: ignore[attr-defined]
    uname = platform.uname()
    executable = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else sys.executable
    supervised = "systemd" if os.environ.get("NOTIFY_SOCKET") else "no"
    multiplexing = {"linux": "epoll", "darwin": "kqueue"}.get(sys.platform, "select")
    # how many of the hot-path modules run compiled (respkv/compiled.py): "7/7" after
    # ``pip install .``, "0/7" from an editable install
    compiled = f"{len(compiled_modules())}/{len(COMPILED_MODULES)}"
    peak = [0]

    def server_info() -> dict[str, Any]:
        return {
            "os": f"{uname.system} {uname.release} {uname.machine}",
            "arch_bits": 64 if sys.maxsize > 2**32 else 32,
            "monotonic_clock": "POSIX clock_gettime",
            "multiplexing_api": multiplexing,
            "process_id": os.getpid(),
            "process_supervised": supervised,
            "tcp_port": node.port if node.port is not None else node.config.port,
            "executable": executable,
            "python_version": platform.python_version(),
            "respkv_compiled": compiled,
        }

    def memory_info() -> dict[str, Any]:
        # Python does not count its allocations cheaply: used_memory is the RSS, so
        # mem_fragmentation_ratio reads 1.00.
        rss = process_rss_bytes()
        peak[0] = max(peak[0], rss)
        return {
            "used_memory": rss,
            "used_memory_rss": rss,
            "used_memory_peak": peak[0],
            "total_system_memory": total_system_memory(),
        }

    def cpu_info() -> dict[str, Any]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = {
            "used_cpu_sys": "%.6f" % me.ru_stime,
            "used_cpu_user": "%.6f" % me.ru_utime,
            "used_cpu_sys_children": "%.6f" % kids.ru_stime,
            "used_cpu_user_children": "%.6f" % kids.ru_utime,
        }
        thread = getattr(resource, "RUSAGE_THREAD", None)
        if thread is not None:
            main = resource.getrusage(thread)
            out["used_cpu_sys_main_thread"] = "%.6f" % main.ru_stime
            out["used_cpu_user_main_thread"] = "%.6f" % main.ru_utime
        return out

    state.info_providers["server"] = server_info
    state.info_providers["memory"] = memory_info
    state.info_providers["cpu"] = cpu_info
    state.info_providers["stats"] = RateMeter(state)
