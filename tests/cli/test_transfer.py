"""``export``, ``import`` and ``migrate``: moving entries between stores, checked."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..helpers import RedisServer
from ._cli import cli, dump_store, env, start


def _fill(store: str, entries: dict[tuple[str, str], object]) -> None:
    """Write entries straight through the library (faster than one CLI call each)."""
    script = (
        "import anyio, json, sys, motia_state as ms\n"
        "async def main():\n"
        "    async with ms.StateManager(ms.create_state_adapter(sys.argv[1])) as m:\n"
        "        for g, k, v in json.loads(sys.stdin.read()):\n"
        "            await m.set(g, k, v)\n"
        "anyio.run(main)\n"
    )
    rows = [[g, k, v] for (g, k), v in entries.items()]
    subprocess.run([sys.executable, "-c", script, store], input=json.dumps(rows), text=True, check=True, env=env())


ENTRIES: dict[tuple[str, str], object] = {
    ("orders", "a"): {"total": 3, "items": ["x"]},
    ("orders", "b"): 0,
    ("users", "ü"): "",
    ("users", "z"): False,
    ("empty-ish", "n"): None,
}


def test_export_writes_header_entries_and_a_footer_over_their_bytes(tmp_path: Path) -> None:
    store = f"file:{tmp_path / 's'}"
    _fill(store, ENTRIES)
    proc = cli("export", "--state", store)
    assert proc.returncode == 0, proc.stderr
    raw = proc.stdout.encode()
    lines = raw.splitlines(keepends=True)
    header, body, footer = json.loads(lines[0]), lines[1:-1], json.loads(lines[-1])
    assert header["format"] == "motia-state-export" and header["version"] == 1 and header["source"] == store
    assert "createdAt" in header
    assert footer == {"count": len(ENTRIES), "sha256": hashlib.sha256(b"".join(body)).hexdigest()}
    assert {(d["groupId"], d["key"]): d["value"] for d in map(json.loads, body)} == ENTRIES


def test_export_of_some_groups_to_a_file(tmp_path: Path) -> None:
    store = f"file:{tmp_path / 's'}"
    _fill(store, ENTRIES)
    target = tmp_path / "out.ndjson"
    assert cli("export", "--groups", "users", "-o", str(target), "--state", store).returncode == 0
    groups = {json.loads(line)["groupId"] for line in target.read_text().splitlines()[1:-1]}
    assert groups == {"users"}


def test_import_round_trip_and_from_stdin(tmp_path: Path) -> None:
    source, target = f"file:{tmp_path / 'a'}", f"file:{tmp_path / 'b'}"
    _fill(source, ENTRIES)
    dump = cli("export", "--state", source).stdout
    proc = cli("import", "-", "--state", target, input=dump)
    assert proc.returncode == 0, proc.stderr
    assert dump_store(target) == dump_store(source)


def test_import_modes(tmp_path: Path) -> None:
    source = f"file:{tmp_path / 'a'}"
    _fill(source, {("g", "a"): 1, ("g", "b"): 2})
    export = tmp_path / "e.ndjson"
    cli("export", "-o", str(export), "--state", source)
    for mode, expected in (
        ("merge", {"g": {"a": 1, "b": 2, "extra": 9}, "h": {"x": 0}}),
        ("skip-existing", {"g": {"a": 100, "b": 2, "extra": 9}, "h": {"x": 0}}),
        ("replace", {"g": {"a": 1, "b": 2}, "h": {"x": 0}}),
    ):
        target = f"file:{tmp_path / mode}"
        _fill(target, {("g", "a"): 100, ("g", "extra"): 9, ("h", "x"): 0})
        proc = cli("import", str(export), "--mode", mode, "--state", target)
        assert proc.returncode == 0, proc.stderr
        assert dump_store(target) == expected, mode


@pytest.mark.parametrize("damage", ["value", "footer", "truncated", "no-header"])
def test_import_refuses_a_damaged_file_before_writing_anything(damage: str, tmp_path: Path) -> None:
    source, target = f"file:{tmp_path / 'a'}", f"file:{tmp_path / 'b'}"
    _fill(source, ENTRIES)
    lines = cli("export", "--state", source).stdout.splitlines(keepends=True)
    if damage == "value":
        lines[2] = lines[2].replace('"value": ', '"value": 7, "was": ')
    elif damage == "footer":
        lines[-1] = json.dumps({"count": len(ENTRIES), "sha256": "0" * 64}) + "\n"
    elif damage == "truncated":
        lines = lines[:-2]
    else:
        lines = lines[1:]
    path = tmp_path / "bad.ndjson"
    path.write_text("".join(lines))
    _fill(target, {("keep", "me"): 1})
    for arg, stdin in ((str(path), None), ("-", "".join(lines))):
        proc = cli("import", arg, "--state", target, input=stdin)
        assert proc.returncode == 2, proc.stderr
        assert "[INVALID_ARGUMENT]" in proc.stderr
    assert dump_store(target) == {"keep": {"me": 1}}, "nothing was written"


def test_import_refuses_memory(tmp_path: Path) -> None:
    proc = cli("import", "-", "--state", "memory:", input="")
    assert proc.returncode == 2 and "memory:" in proc.stderr


def test_migrate_copies_and_verifies(tmp_path: Path) -> None:
    source, target = f"file:{tmp_path / 'a'}", f"file:{tmp_path / 'b'}"
    _fill(source, ENTRIES)
    proc = cli("migrate", "--from", source, "--to", target, "--verify", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"copied": len(ENTRIES), "differences": []}
    assert dump_store(target) == dump_store(source)
    assert not list(tmp_path.glob(".motia-migrate-*")), "the checkpoint is removed once the copy is complete"


def test_verify_lists_every_differing_key_with_its_side(tmp_path: Path) -> None:
    source, target = f"file:{tmp_path / 'a'}", f"file:{tmp_path / 'b'}"
    _fill(source, {("g", "same"): 1, ("g", "changed"): 1, ("g", "left"): 1})
    _fill(target, {("g", "same"): 1, ("g", "changed"): 2, ("g", "right"): 1, ("h", "x"): 1})
    proc = cli("migrate", "--from", source, "--to", target, "--verify", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["differences"] == [
        {"group": "g", "key": "changed", "side": "different values"},
        {"group": "g", "key": "left", "side": "only in --from"},
        {"group": "g", "key": "right", "side": "only in --to"},
        {"group": "h", "key": "x", "side": "only in --to"},
    ]
    assert dump_store(target)["g"]["changed"] == 2, "--dry-run wrote nothing"


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    source, target = f"file:{tmp_path / 'a'}", f"file:{tmp_path / 'b'}"
    _fill(source, ENTRIES)
    proc = cli("migrate", "--from", source, "--to", target, "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"copied": len(ENTRIES), "dryRun": True}
    assert not (tmp_path / "b").exists(), "not even an empty store was created"


def test_migrate_resumes_after_its_checkpoint(tmp_path: Path) -> None:
    source, target = f"file:{tmp_path / 'a'}", f"file:{tmp_path / 'b'}"
    _fill(source, {("g", "a"): 1, ("g", "b"): 2, ("g", "c"): 3, ("h", "d"): 4})
    checkpoint = tmp_path / "cp.json"
    checkpoint.write_text(json.dumps({"from": source, "to": target, "group": "g", "key": "b"}))
    proc = cli("migrate", "--from", source, "--to", target, "--checkpoint", str(checkpoint))
    assert proc.returncode == 0, proc.stderr
    assert "resuming after g/b" in proc.stderr
    assert dump_store(target) == {"g": {"c": 3}, "h": {"d": 4}}, "what the checkpoint covers is not copied again"
    assert not checkpoint.exists()


def test_migrate_refuses_memory(tmp_path: Path) -> None:
    proc = cli("migrate", "--from", "memory:", "--to", f"file:{tmp_path / 'b'}")
    assert proc.returncode == 2


WRITER = """
import anyio, os, sys, motia_state as ms
store, name, acked = sys.argv[1], sys.argv[2], sys.argv[3]
async def main():
    async with ms.StateManager(ms.create_state_adapter(store)) as m:
        i = 0
        while True:
            i += 1
            await m.set("live", f"{name}-{i}", i)
            await m.increment("live", f"{name}-count", 1)
            if i % 3 == 0:
                await m.delete("live", f"{name}-{i - 1}")
            with open(acked + ".tmp", "w") as f:
                f.write(str(i))
            os.replace(acked + ".tmp", acked)  # a kill never leaves it half-written
            await anyio.sleep(0.005)
anyio.run(main)
"""


def _wait_for(proc: subprocess.Popen[str], text: str, timeout: float) -> str:
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"{text!r} not seen in time:\n{seen}")


def _acked(tmp_path: Path, n: int) -> int:
    path = tmp_path / f"acked-{n}"
    return int(path.read_text()) if path.exists() else 0  # replaced whole, never half-written


@pytest.mark.slow
def test_migrate_follow_loses_no_acknowledged_write_during_a_live_switch(tmp_path: Path) -> None:
    source, target = f"file:{tmp_path / 'a'}", f"file:{tmp_path / 'b'}"
    _fill(source, {("live", f"old-{i}"): i for i in range(200)})
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, source, f"w{n}", str(tmp_path / f"acked-{n}")], env=env())
        for n in range(2)
    ]
    migrate = start("migrate", "--from", source, "--to", target, "--follow", "--progress", cwd=tmp_path)
    try:
        time.sleep(3)  # the writers write during the copy and after it
        # A loaded machine may start them late: wait until each has written a few rounds.
        deadline = time.monotonic() + 60
        while not all(_acked(tmp_path, n) > 10 for n in range(2)):
            assert time.monotonic() < deadline and all(w.poll() is None for w in writers), "the writers did not write"
            time.sleep(0.05)
        for w in writers:
            w.send_signal(signal.SIGKILL)
            w.wait()
        _wait_for(migrate, "lag 0", 30)
        migrate.send_signal(signal.SIGINT)
        migrate.communicate(timeout=30)
    finally:
        for p in (*writers, migrate):
            if p.poll() is None:
                p.kill()
    assert migrate.returncode == 130
    compared = cli("migrate", "--from", source, "--to", target, "--verify", "--dry-run", cwd=tmp_path)
    assert compared.returncode == 0, compared.stdout
    copy = dump_store(target)["live"]
    for n in range(2):
        acked = _acked(tmp_path, n)
        assert acked > 10, "the writers wrote during the migration"
        # The writer may have run its next round (whose delete removes key i
        # when i + 1 is a multiple of 3) before the kill, but not yet noted it.
        if (acked + 1) % 3 == 0 and f"w{n}-{acked}" not in copy:
            assert copy[f"w{n}-count"] >= acked + 1
        else:
            assert copy[f"w{n}-{acked}"] == acked
        assert copy[f"w{n}-count"] >= acked


def test_migrate_moves_values_too_large_for_one_page(tmp_path: Path) -> None:
    source, target = f"file:{tmp_path / 'a'}", f"file:{tmp_path / 'b'}"
    big = "x" * (200 * 1024)  # 100 of them are over one batch's result limit
    _fill(source, {("g", f"k{i:03d}"): big for i in range(100)})
    proc = cli("migrate", "--from", source, "--to", target, "--verify", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"copied": 100, "differences": []}


def test_export_shows_progress_only_when_asked_in_a_pipe(tmp_path: Path) -> None:
    store = f"file:{tmp_path / 's'}"
    _fill(store, ENTRIES)
    quiet = cli("export", "--state", store)
    assert "exporting" not in quiet.stderr
    shown = cli("export", "--state", store, "--progress")
    assert shown.returncode == 0 and "exporting" in shown.stderr
    assert shown.stdout == quiet.stdout.replace(
        json.loads(quiet.stdout.splitlines()[0])["createdAt"], json.loads(shown.stdout.splitlines()[0])["createdAt"]
    )


def test_migrate_between_a_file_store_and_redis_and_validate_both(tmp_path: Path, redis_server: RedisServer) -> None:
    pytest.importorskip("redis")
    source, target = f"file:{tmp_path / 'a'}", redis_server.url.rsplit("/", 1)[0] + "/9"
    _fill(source, ENTRIES)
    proc = cli("migrate", "--from", source, "--to", target, "--verify", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert dump_store(target) == dump_store(source)
    for store in (source, target):
        checked = cli("validate", "--state", store)
        assert checked.returncode == 0, checked.stdout
        assert json.loads(checked.stdout)["entries"] == len(ENTRIES)
    for group in {g for g, _ in ENTRIES}:
        cli("state", "rm", group, "--state", target)


def test_two_redis_databases_are_never_taken_for_one_store() -> None:
    from motia_state.cli.transfer import _same_store

    assert not _same_store("redis://h:6379/?db=3", "redis://h:6379/?db=4")
    assert not _same_store("redis://h/1", "redis://h/2")
    assert _same_store("redis://h/3", "redis://h:6379/?db=3")
    assert _same_store("redis://h", "redis://h:6379/0")
