"""Run by tests/test_compiled.py inside a copy of the tree built with mypyc (RESPKV_COMPILE=1):
this process and a three-node cluster started from it run the hot path compiled, and the
cluster serves replicated writes and reads. Skipped in the ordinary (uncompiled) suite."""

from __future__ import annotations

import os

import pytest

from respkv.compiled import MODULES, compiled_modules
from respkv.testing.cluster import LocalCluster

pytestmark = pytest.mark.skipif(not os.environ.get("RESPKV_COMPILE"),
                                reason="tests/test_compiled.py runs it in a compiled copy")


def test_a_compiled_cluster_serves_replicated_writes() -> None:
    assert compiled_modules() == list(MODULES)
    cluster = LocalCluster(3)
    try:
        for i in range(3):
            server = cluster.client(i).info("server")
            assert server["respkv_compiled"] == f"{len(MODULES)}/{len(MODULES)}"
        c0, c1 = cluster.client(0), cluster.client(1)
        for k in range(50):
            assert c0.set(f"k{k}", f"v{k}") is True
        for k in range(50):
            assert c1.get(f"k{k}") == f"v{k}".encode()
        assert c1.execute_command("GET", "k7", "R", "ALL") == b"v7"
        assert c0.delete("k7") == 1 and c1.get("k7") is None
    finally:
        cluster.stop()
