"""conf/respkv.toml and `respkv config check`: one table (respkv.config.SETTINGS) documents,
validates and defaults every setting; a bad file stops start-up with the message check prints."""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import subprocess
import sys
import tomllib

import pytest

from respkv.cli import build_config
from respkv.config import SAMPLE_VALUES, SETTINGS, Config, load_toml, sample_toml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(ROOT, "conf", "respkv.toml")


def respkv(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "respkv.cli", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_committed_sample_is_the_generated_one() -> None:
    with open(SAMPLE) as f:
        committed = f.read()
    assert committed == sample_toml(), (
        "conf/respkv.toml is stale: run `respkv config sample > conf/respkv.toml`")
    assert respkv("config", "sample").stdout == committed


def test_sample_loads_and_documents_every_setting() -> None:
    config = load_toml(SAMPLE)
    with open(SAMPLE, "rb") as f:
        data = tomllib.load(f)
    assert set(data) == {s.key for s in SETTINGS}
    text = sample_toml()
    for s in SETTINGS:
        assert getattr(config, s.key) == SAMPLE_VALUES.get(s.key, s.default), s.key
        block = text.split(f"\n{s.key} = ")[0].rsplit("\n\n", 1)[1]
        assert "default: " in block, s.key
        assert s.doc.split()[0] in block, s.key
        if s.unit:
            assert f"unit: {s.unit}" in block, s.key


def test_config_dataclass_defaults_are_the_table_defaults() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(Config) if f.name != "extra"}
    assert defaults == {s.key: s.default for s in SETTINGS}


def test_check_ok() -> None:
    r = respkv("config", "check", SAMPLE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{SAMPLE}: OK"


BAD = [
    ("prot = 7000\n", "unknown setting 'prot'"),
    ('port = "many"\n', "'port' must be an integer, got 'many'"),
    ("port = 70000\n", "'port' must be <= 65535, got 70000"),
    ("databases = 0\n", "'databases' must be >= 1, got 0"),
    ('appendfsync = "sometimes"\n', "'appendfsync' must be one of always, everysec, no, got 'sometimes'"),
    ("protected_mode = 3\n", "'protected_mode' must be a boolean (yes/no), got 3"),
    ("bind = 127\n", "'bind' must be a string, got 127"),
    ('memtable_bytes = "1kb"\n', "'memtable_bytes' must be >= 65536, got 1024"),
    ("port = \n", "invalid TOML"),
]


@pytest.mark.parametrize("text,why", BAD, ids=[b[1][:30] for b in BAD])
def test_check_names_the_key_and_why(tmp_path, text: str, why: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    r = respkv("config", "check", str(path))
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith(f"respkv: configuration error: {path}: ")
    assert why in r.stderr


def test_check_missing_file(tmp_path) -> None:
    r = respkv("config", "check", str(tmp_path / "nope.toml"))
    assert r.returncode == 2
    assert "cannot read config file" in r.stderr


def test_server_with_a_bad_config_stops_with_the_check_message(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('port = 6390\nappendfsync = "sometimes"\n')
    check = respkv("config", "check", str(path))
    r = respkv("server", "--config", str(path), "--dir", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr == check.stderr
    assert "'appendfsync' must be one of" in r.stderr


def test_a_bad_flag_names_the_flag(tmp_path) -> None:
    r = respkv("server", "--port", "99999", "--dir", str(tmp_path))
    assert r.returncode == 2
    assert "--port: 'port' must be <= 65535, got 99999" in r.stderr


def test_flags_override_the_file(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('port = 7000\nloglevel = "warning"\n')
    ns = argparse.Namespace(config=str(path), set_port="7001")
    config = build_config(ns)
    assert (config.port, config.loglevel) == (7001, "warning")


def test_a_port_in_use_stops_start_up_with_one_line(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = respkv("server", "--port", str(port), "--engine", "memory", "--dir", str(tmp_path))
    assert r.returncode == 1
    assert "respkv: cannot start: [Errno 98] Address already in use" in r.stderr
    assert "Traceback" not in r.stderr


def test_tables(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[n_replica_by_prefix]\n"a:" = 2\n')
    r = respkv("config", "check", str(bad))
    assert r.returncode == 2
    assert f"{bad}: unknown table [n_replica_by_prefix] (known: n_replicas_by_prefix)" in r.stderr
    good = tmp_path / "good.toml"
    good.write_text('[n_replicas_by_prefix]\n"a:" = 2\n')
    assert respkv("config", "check", str(good)).returncode == 0
    assert load_toml(str(good)).extra == {"n_replicas_by_prefix": {"a:": 2}}


def test_check_runs_the_cluster_checks_start_up_runs(tmp_path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text('node_id = "n1"\n')  # cluster mode without its secret
    check = respkv("config", "check", str(path))
    start = respkv("server", "--config", str(path), "--engine", "memory", "--dir", str(tmp_path))
    assert check.returncode == start.returncode == 2
    assert check.stderr == start.stderr
    assert "'cluster_secret_file' is required in cluster mode" in check.stderr
    secret = tmp_path / "secret"
    secret.write_text("x" * 32)
    path.write_text(f'node_id = "n1"\ncluster_secret_file = "{secret}"\nread_consistency = "most"\n')
    check = respkv("config", "check", str(path))
    assert check.returncode == 2 and "'read_consistency'" in check.stderr
