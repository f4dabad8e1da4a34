"""systemd/respkv.service and respkv@.service: `systemd-analyze verify` finds nothing to say about
them, and they carry the directives an operator relies on (Type=notify, hardening, limits).

systemd-analyze verify exits 0 on many problems (unknown keys, unparsable values are "ignoring"
warnings), so the test fails on any line it prints about our units. The units' ExecStart names
/usr/local/bin/respkv, which need not exist on a test machine: the verified copies point at the
`respkv` found on PATH instead, and a separate test checks that, on the original files, the
missing binary is the only complaint.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNITS = ("respkv.service", "respkv@.service")
INSTALLED = "/usr/local/bin/respkv"
ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def read_unit(name: str) -> str:
    with open(os.path.join(ROOT, "systemd", name)) as f:
        return f.read()


def directives(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            assert k not in out, f"{k} set twice"
            out[k] = v
    return out


def verify(path: str) -> list[str]:
    assert ANALYZE is not None
    r = subprocess.run([ANALYZE, "verify", path], capture_output=True, text=True, timeout=60)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    if r.returncode != 0:
        assert lines, f"systemd-analyze verify exited {r.returncode} silently"
    return lines


def verified_copy(tmp_path, name: str, instance: str | None = None) -> str:
    exe = shutil.which("respkv")
    if exe is None:
        pytest.skip("the respkv entry point is not installed (pip install -e .)")
    text = read_unit(name).replace(INSTALLED, exe)
    path = tmp_path / (name.replace("@.", f"@{instance}.") if instance else name)
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("name,instance", [("respkv.service", None), ("respkv@.service", None),
                                           ("respkv@.service", "node1")])
def test_verify_has_no_complaint(tmp_path, name: str, instance: str | None) -> None:
    assert verify(verified_copy(tmp_path, name, instance)) == []


def test_verify_would_catch_a_broken_unit(tmp_path) -> None:
    path = verified_copy(tmp_path, "respkv.service")
    with open(path) as f:
        text = f.read().replace("Type=notify", "Type=notfy").replace(
            "NoNewPrivileges=yes", "NoNewPrivileges=yes\nNoNewPrivilege=yes")
    with open(path, "w") as f:
        f.write(text)
    out = "\n".join(verify(path))
    assert "notfy" in out and "NoNewPrivilege" in out


@pytest.mark.parametrize("name", UNITS)
def test_on_the_original_only_the_binary_may_be_missing(name: str) -> None:
    lines = verify(os.path.join(ROOT, "systemd", name))
    if os.access(INSTALLED, os.X_OK):
        assert lines == []
    else:
        assert lines and all(f"Command {INSTALLED} is not executable" in ln for ln in lines), lines


@pytest.mark.parametrize("name", UNITS)
def test_directives(name: str) -> None:
    d = directives(read_unit(name))
    config = "/etc/respkv/%i.toml" if "@" in name else "/etc/respkv/respkv.toml"
    data = "/var/lib/respkv/%i" if "@" in name else "/var/lib/respkv"
    assert d["Type"] == "notify"
    assert d["ExecStart"] == f"{INSTALLED} server --config {config}"
    assert d["User"] == "respkv"
    assert d["NoNewPrivileges"] == "yes"
    assert d["ProtectSystem"] == "strict"
    assert d["ReadWritePaths"] == data
    assert d["PrivateTmp"] == "yes" and d["ProtectHome"] == "yes"
    assert d["LimitNOFILE"] == "65536"
    assert d["Restart"] == "on-failure"
    assert d["TimeoutStopSec"]
    assert d["WantedBy"] == "multi-user.target"


def test_the_two_units_differ_only_by_instance() -> None:
    plain = directives(read_unit("respkv.service"))
    inst = directives(read_unit("respkv@.service"))
    assert set(plain) == set(inst)
    for k in plain:
        if plain[k] != inst[k]:
            assert "%i" in inst[k], k
