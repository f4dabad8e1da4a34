"""Fixtures: real multi-process clusters on loopback (respkv/testing/cluster.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from respkv.testing.cluster import LocalCluster


@pytest.fixture
def make_cluster() -> Iterator[Callable[..., LocalCluster]]:
    made: list[LocalCluster] = []

    def make(n: int, *extra: str, **kw: Any) -> LocalCluster:
        c = LocalCluster(n, *extra, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def cluster3(make_cluster: Callable[..., LocalCluster]) -> LocalCluster:
    return make_cluster(3)
