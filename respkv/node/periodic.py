"""A node's periodic background work, at a jittered interval."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import trio


async def every(interval_ms: int, rng: random.Random, step: Callable[[], Awaitable[None]],
                task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Start at once (``task_status.started()``), then run ``step`` after each wait of
    ``interval_ms`` x 0.5-1.5 (jitter from the node's random source, so that nodes started
    together do not work in step); never returns unless ``interval_ms`` is 0 or less (off).
    ``step`` handles its own failures: an exception out of it ends the task."""
    task_status.started()
    interval_s = interval_ms / 1000
    if interval_s <= 0:
        return
    while True:
        await trio.sleep(interval_s * (0.5 + rng.random()))
        await step()
