"""systemd's notify protocol (sd_notify(3)): tell the service manager when the node is ready and
when it stops, so `Type=notify` units (systemd/respkv.service) order and report correctly.

Protocol: one datagram of newline-separated ``KEY=VALUE`` fields sent to the AF_UNIX socket named
by ``$NOTIFY_SOCKET``; a name starting with ``@`` is in the abstract namespace (the ``@`` stands
for a NUL byte). Without ``$NOTIFY_SOCKET`` (not started by systemd) every call does nothing.

With ``WatchdogSec=`` in the unit (``$WATCHDOG_USEC``), ``watchdog()`` pings WATCHDOG=1 at half
that period from the event loop.

Contract: ``send`` never blocks (MSG_DONTWAIT) and never raises -- a service manager that went
away must not take the node down; a failure is logged once. The socket is opened per message, as
libsystemd does, so the notifier holds no descriptor between calls.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

import trio

log = logging.getLogger("respkv.node.systemd")


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings when the unit sets WatchdogSec= (half the timeout, as
    sd_watchdog_enabled(3) advises), or None. $WATCHDOG_PID, when set, must be this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (owner and owner != str(pid)):
        return None
    return int(usec) / 2e6


class SystemdNotifier:
    def __init__(self, address: str | None, watchdog_s: float | None = None) -> None:
        self.address = address or None
        self.watchdog_s = watchdog_s if self.address else None
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> SystemdNotifier:
        return cls(environ.get("NOTIFY_SOCKET"), watchdog_interval(environ, os.getpid()))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``fields`` ("READY=1", "STATUS=...") as one message; True if it was sent."""
        if self.address is None:
            return False
        addr = self.address
        target = "\0" + addr[1:] if addr.startswith("@") else addr
        payload = "\n".join(f.replace("\n", " ") for f in fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(payload, socket.MSG_DONTWAIT, target)
        except OSError as e:
            if not self._warned:
                self._warned = True
                log.warning("event=notify_failed socket=%r error=%r", addr, str(e))
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def stopping(self, status: str = "shutting down") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    async def watchdog(self) -> None:
        """Send WATCHDOG=1 every ``watchdog_s`` until cancelled (returns at once without a
        watchdog). It runs on the node's event loop, so a loop blocked longer than WatchdogSec=
        stops the pings and systemd restarts the node: that is the point."""
        if self.watchdog_s is None:
            return
        while True:
            self.send("WATCHDOG=1")
            await trio.sleep(self.watchdog_s)
