"""INFO persistence shows the LSM engine's figures (issue 4), read over a real connection."""

from __future__ import annotations

import redis

from respkv.testing.procs import start_respkv


def test_info_persistence_reports_engine_figures(tmp_path):
    srv = start_respkv("--memtable-bytes", "64kb", data_dir=str(tmp_path))
    try:
        r = redis.Redis(port=srv.port)
        for i in range(3000):
            r.set(f"key:{i}", "v" * 100)
        for i in range(0, 3000, 7):
            r.get(f"key:{i}")
            r.get(f"absent:{i}")
        info = r.info("persistence")
        for field in ("aof_enabled", "appendfsync", "aof_size", "memtable_bytes",
                      "pending_compactions", "bloom_false_positive_rate",
                      "write_amplification", "level0_tables"):
            assert field in info, field
        assert info["aof_enabled"] == 1 and info["appendfsync"] == "everysec"
        assert info["aof_size"] > 0
        # 300 KB of values through a 64 KB memtable: tables were flushed and read from.
        assert info["tables"] >= 1
        assert info["write_amplification"] > 0
        assert 0 <= info["bloom_false_positive_rate"] < 0.1
        r.close()
    finally:
        srv.stop()
