"""``motia-state validate``: a store checked without changing it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ._cli import cli


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "lock"}


def test_a_sound_store_validates(tmp_path: Path) -> None:
    store = f"file:{tmp_path / 's'}"
    cli("state", "set", "g", "k", '{"a": 1}', "--state", store)
    proc = cli("validate", "--state", store)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"ok": True, "entries": 1, "problems": []}


@pytest.mark.parametrize("where", ["last", "middle"])
def test_a_damaged_log_is_reported_and_left_as_it_was(where: str, tmp_path: Path) -> None:
    folder = tmp_path / "s"
    store = f"file:{folder}"
    for i in range(5):
        cli("state", "set", "g", f"k{i}", str(i), "--state", store)
    log = folder / "log"
    data = bytearray(log.read_bytes())
    # Flip a byte inside the last record (a torn tail) or the first one (damage with records after it).
    end = len(data.rstrip(b"\0"))
    data[end - 10 if where == "last" else 30] ^= 0xFF
    log.write_bytes(bytes(data))
    before = _files(folder)
    proc = cli("validate", "--state", store)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert not report["ok"] and report["problems"]
    assert str(log) in report["problems"][0]["where"]
    assert _files(folder) == before, "validate changed the store's files"


def test_a_damaged_snapshot_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "snapshot").write_bytes(b"MOTIASNP" + b"\x02\x00" + b"garbage")
    proc = cli("validate", "--state", f"file:{folder}")
    assert proc.returncode == 1
    assert "snapshot" in json.loads(proc.stdout)["problems"][0]["where"]


def test_validate_refuses_memory() -> None:
    proc = cli("validate", "--state", "memory:")
    assert proc.returncode == 2
