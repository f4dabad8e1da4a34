"""Process-level durability of the node on the LSM engine: SIGKILL, restart, compare.

Under ``appendfsync always`` a reply is sent only after the fsync covering the write, so every
acknowledged write must be there after a SIGKILL. (SIGKILL does not drop the page cache, so this
checks the acknowledge-after-write ordering at the process level; the fault-injecting file
system in tests/storage checks what an OS crash would drop.)
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from respkv.testing.procs import start_respkv

pytestmark = pytest.mark.slow


def _writer(port: int, wid: int, acked: dict[bytes, bytes], stop: threading.Event) -> None:
    r = redis.Redis(port=port, socket_timeout=10)
    i = 0
    try:
        while not stop.is_set():
            key = b"w%d:%d" % (wid, i % 500)
            val = b"v%d-%d" % (wid, i)
            r.set(key, val)
            acked[key] = val  # only after the reply arrived
            i += 1
    except (redis.ConnectionError, redis.TimeoutError):
        pass  # the server was killed under us: writes in flight are not acknowledged
    finally:
        r.close()


@pytest.mark.parametrize("policy", ["always", "everysec"])
def test_sigkill_mid_load_loses_no_acknowledged_write(policy, tmp_path):
    srv = start_respkv("--appendfsync", policy, "--memtable-bytes", "256kb",
                       data_dir=str(tmp_path))
    stop = threading.Event()
    acked: list[dict[bytes, bytes]] = [{} for _ in range(6)]
    threads = [threading.Thread(target=_writer, args=(srv.port, i, acked[i], stop))
               for i in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while sum(len(a) for a in acked) < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.kill()  # SIGKILL mid-load
    stop.set()
    for t in threads:
        t.join(10)
    total = sum(len(a) for a in acked)
    assert total >= 2000, srv.log()
    srv2 = start_respkv("--appendfsync", policy, data_dir=str(tmp_path), port=srv.port)
    try:
        r = redis.Redis(port=srv2.port)
        lost = []
        for a in acked:
            keys = list(a)
            got = r.mget(keys)
            for k, v in zip(keys, got, strict=True):
                # The last acknowledged value, or a later one whose reply was in flight.
                if v is None or (v != a[k] and int(v.split(b"-")[1]) < int(a[k].split(b"-")[1])):
                    lost.append((k, a[k], v))
        assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:3]}"
        r.close()
    finally:
        srv2.stop()


def test_ttl_and_flushdb_survive_restart(tmp_path):
    srv = start_respkv(data_dir=str(tmp_path))
    r = redis.Redis(port=srv.port)
    r.set("forever", "1")
    r.set("short", "1", px=300)
    r.set("long", "1", ex=1000)
    r.select(1)
    r.set("db1key", "x")
    r.flushdb()
    r.set("db1after", "y")
    r.close()
    assert srv.stop() == 0
    time.sleep(0.4)  # let "short" expire while the server is down
    srv2 = start_respkv(data_dir=str(tmp_path), port=srv.port)
    try:
        r = redis.Redis(port=srv2.port)
        assert r.get("forever") == b"1"
        assert r.get("short") is None
        assert 990 <= r.ttl("long") <= 1000
        r.select(1)
        assert r.get("db1key") is None and r.get("db1after") == b"y"
        r.close()
    finally:
        srv2.stop()
