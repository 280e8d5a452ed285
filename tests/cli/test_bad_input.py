"""Bad input to the command line: a clear error with its code and the documented exit code, nothing lost.

Each case runs the command as a user does (a subprocess) and checks that
it answers with one message naming what is wrong (never a traceback or an
INTERNAL error), and that the store and the files it was given are as they
were.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ._cli import cli, dump_store, env


def _bad_input(proc: subprocess.CompletedProcess[str], *needles: str, code: str = "INVALID_ARGUMENT") -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "INTERNAL" not in proc.stderr, proc.stderr
    assert f"[{code}]" in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def _export(path: Path, entries: list[dict[str, object]]) -> None:
    """An export file holding ``entries`` (with a footer that matches them)."""
    lines = [(json.dumps(entry) + "\n").encode() for entry in entries]
    header = {"format": "motia-state-export", "version": 1, "source": "file:x", "createdAt": "2026-01-01T00:00:00Z"}
    footer = {"count": len(lines), "sha256": hashlib.sha256(b"".join(lines)).hexdigest()}
    path.write_bytes((json.dumps(header) + "\n").encode() + b"".join(lines) + (json.dumps(footer) + "\n").encode())


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"file:{tmp_path / 'store'}"
    assert cli("state", "set", "g", "k", "1", "--state", url).returncode == 0
    return url


def test_a_json_file_that_is_not_utf8_names_the_byte(tmp_path: Path, store: str) -> None:
    data = tmp_path / "data.json"
    data.write_bytes(b'{"a":\n "\xff"}')
    step = tmp_path / "echo.step.py"
    step.write_text("async def handler(data, ctx):\n    return data\n")
    _bad_input(cli("run", str(step), "--data", f"@{data}"), "--data:", "byte offset 8 (line 2)")
    _bad_input(cli("state", "set", "g", "k", f"@{data}", "--state", store), "byte offset 8 (line 2)")
    proc = subprocess.run(
        [sys.executable, "-m", "motia_state", "state", "set", "g", "k", "@-", "--state", store],
        input=b"\xfe",
        capture_output=True,
        env=env(),
        timeout=120,
    )
    assert proc.returncode == 2 and b"standard input is not UTF-8 text" in proc.stderr, proc.stderr
    assert dump_store(store) == {"g": {"k": 1}}


def test_a_closed_standard_input_is_named(store: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "motia_state", "state", "set", "g", "k", "@-", "--state", store],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env(),
        timeout=120,
        preexec_fn=lambda: os.close(0),
    )
    _bad_input(proc, "standard input, which is closed")


def test_a_closed_standard_output_is_output_cut_short_without_a_traceback(store: str) -> None:
    def closed() -> None:
        os.close(1)

    for args in (["state", "ls", "--state", store], ["state", "set", "g", "n", "2", "--state", store], ["bindings"]):
        proc = subprocess.run(
            [sys.executable, "-m", "motia_state", *args],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
            timeout=120,
            preexec_fn=closed,
        )
        assert proc.returncode == 1 and proc.stderr == "", (args, proc.stderr)
    assert dump_store(store) == {"g": {"k": 1, "n": 2}}  # the write itself was done


def test_import_refuses_an_entry_the_store_would_refuse_before_writing_anything(tmp_path: Path, store: str) -> None:
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    cases = {
        "deep.ndjson": (
            [{"groupId": "g", "key": "new", "value": 1}, {"groupId": "g", "key": "d", "value": deep}],
            "LIMIT_EXCEEDED",
            "deep.ndjson:3",
        ),
        "empty-key.ndjson": (
            [{"groupId": "g", "key": "new", "value": 1}, {"groupId": "g", "key": "", "value": 1}],
            "INVALID_ARGUMENT",
            "empty-key.ndjson:3",
        ),
    }
    for name, (entries, code, where) in cases.items():
        _export(tmp_path / name, entries)
        for mode in ("merge", "replace"):
            _bad_input(cli("import", str(tmp_path / name), "--mode", mode, "--state", store), where, code=code)
    assert dump_store(store) == {"g": {"k": 1}}


def test_import_of_a_file_nested_too_deep_to_read_is_bad_input(tmp_path: Path, store: str) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    _bad_input(cli("import", str(path), "--state", store), "not a motia-state export")
    header = json.dumps({"format": "motia-state-export", "version": 1, "source": "x", "createdAt": "now"})
    path.write_text(header + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    _bad_input(cli("import", str(path), "--state", store), ":2: nests too deep", code="LIMIT_EXCEEDED")
    assert dump_store(store) == {"g": {"k": 1}}


def test_export_to_a_folder_or_into_a_missing_folder_is_bad_input(tmp_path: Path, store: str) -> None:
    (tmp_path / "out").mkdir()
    _bad_input(cli("export", "--state", store, "-o", str(tmp_path / "out")), "is a folder")
    _bad_input(cli("export", "--state", store, "-o", str(tmp_path / "nope" / "x.ndjson")), "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "store"]  # no temporary file left
    assert list((tmp_path / "out").iterdir()) == []


def test_migrate_from_a_file_store_that_is_not_there_creates_nothing(tmp_path: Path) -> None:
    source, target = tmp_path / "typo", tmp_path / "target"
    _bad_input(cli("migrate", "--from", f"file:{source}", "--to", f"file:{target}"), f"--from file:{source}")
    assert not source.exists() and not target.exists()


def test_migrate_dry_run_creates_no_target(tmp_path: Path, store: str) -> None:
    target = tmp_path / "target"
    proc = cli("migrate", "--from", store, "--to", f"file:{target}", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"copied": 1, "dryRun": True}
    verify = cli("migrate", "--from", store, "--to", f"file:{target}", "--dry-run", "--verify")
    assert verify.returncode == 1, verify.stderr
    assert json.loads(verify.stdout)["differences"] == [{"group": "g", "key": "k", "side": "only in --from"}]
    assert not target.exists()


def test_migrate_never_overwrites_a_checkpoint_file_that_is_not_one(tmp_path: Path, store: str) -> None:
    target, notes = tmp_path / "target", tmp_path / "notes.json"
    notes.write_text('{"mine": true}\n')
    _bad_input(
        cli("migrate", "--from", store, "--to", f"file:{target}", "--checkpoint", str(notes)),
        "not a migrate checkpoint",
    )
    assert notes.read_text() == '{"mine": true}\n' and not target.exists()


def test_create_with_an_empty_name_is_bad_input(tmp_path: Path) -> None:
    _bad_input(cli("create", "", cwd=tmp_path), "name is empty")
    assert list(tmp_path.iterdir()) == []


def test_values_and_names_over_the_limits_are_bad_input(tmp_path: Path, store: str) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps("x" * (9 * 1024 * 1024)))
    _bad_input(cli("state", "set", "g", "k", f"@{big}", "--state", store), "larger than", code="LIMIT_EXCEEDED")
    deep = "[" * 300 + "]" * 300
    _bad_input(cli("state", "op", "g", "q", "push", deep, "--state", store), "nested deeper", code="LIMIT_EXCEEDED")
    _bad_input(cli("state", "get", "g", "k" * 2000, "--state", store), "key is longer", code="LIMIT_EXCEEDED")
    assert dump_store(store) == {"g": {"k": 1}}


def test_run_data_over_the_frame_limit_is_bad_input(tmp_path: Path) -> None:
    step = tmp_path / "echo.step.py"
    step.write_text("async def handler(data, ctx):\n    return data\n")
    data = tmp_path / "data.json"
    data.write_text(json.dumps("x" * (17 * 1024 * 1024)))
    _bad_input(cli("run", str(step), "--data", f"@{data}"), "--data:", "frame limit", code="LIMIT_EXCEEDED")


@pytest.mark.parametrize("port", ["65536", "99999", "-1"])
def test_a_server_port_out_of_range_is_bad_input(port: str) -> None:
    # 99999 would otherwise be served as 99999 - 65536: a server on a port nobody asked for.
    proc = cli("workbench", "--port", port, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert f"--port {port}: expected 0..65535" in proc.stderr and proc.stdout == ""


def test_an_unreachable_store_is_reported_without_its_credentials() -> None:
    url = "redis://ada:top@secret@127.0.0.1:1/0"  # nothing listens on port 1: refused at once
    for extra in ([], ["--debug"], ["--json"]):
        proc = cli("state", "ls", "--state", url, *extra)
        assert proc.returncode == 3, proc.stderr
        assert "[UNAVAILABLE]" in proc.stderr or '"UNAVAILABLE"' in proc.stderr, proc.stderr
        assert "top@secret" not in proc.stderr and "secret" not in proc.stderr, proc.stderr
        assert "redis://***@127.0.0.1:1/0" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:1/0?password=s3cret",
        "unix:///nonexistent/motia-state.sock?db=0&password=s3cret",
        "rediss://127.0.0.1:1/0?ssl_cert_reqs=none&password=s3cret",
    ],
)
def test_a_password_in_the_query_is_not_shown_either(url: str) -> None:
    # redis-py takes a password from the query too (the usual form for a unix socket).
    for extra in ([], ["--debug"], ["--json"]):
        proc = cli("state", "ls", "--state", url, *extra)
        assert proc.returncode == 3, proc.stderr
        assert "s3cret" not in proc.stderr and "s3cret" not in proc.stdout, proc.stderr
        assert "password=***" in proc.stderr, proc.stderr


def test_the_workbench_names_a_bad_store_without_its_password() -> None:
    proc = cli("workbench", "--state", "redisx://ada:s3cret@127.0.0.1:1/0", timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "redisx://***@127.0.0.1:1/0" in proc.stderr and "s3cret" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "url", ["redis://ada:top/s3cret@127.0.0.1:1/0", "unix://ada:top/s3cret@/nonexistent/motia-state.sock"]
)
def test_a_slash_left_unencoded_in_a_password_is_bad_input_without_the_password(url: str) -> None:
    # The / ends the URL's host part, so the rest of the password reads as the path: it must not show there either.
    for command in (["state", "ls"], ["workbench", "--port", "0"]):
        proc = cli(*command, "--state", url, timeout=60)
        assert proc.returncode == 2, (proc.returncode, proc.stderr)
        assert "s3cret" not in proc.stderr and "s3cret" not in proc.stdout, proc.stderr
        assert "%2F" in proc.stderr, proc.stderr


def test_a_unix_socket_path_holding_an_at_sign_is_shown_whole() -> None:
    proc = cli("state", "ls", "--state", "unix:///nonexistent/a@b.sock")
    assert proc.returncode == 3, proc.stderr
    assert "unix:///nonexistent/a@b.sock" in proc.stderr and "***" not in proc.stderr, proc.stderr


# -- a sweep of every command with wrong, missing and hostile arguments -----------------------------


@pytest.mark.parametrize("url", ["redis://[::1", "redis://h:99999/0", "redis://h:port/0"])
def test_a_redis_url_that_cannot_be_read_is_bad_input(url: str) -> None:
    _bad_input(cli("state", "ls", "--state", url), "not a URL that can be read")


def test_an_integer_longer_than_a_value_holds_is_over_the_limit_not_a_python_message(store: str) -> None:
    proc = cli("state", "set", "g", "k", "9" * 5000, "--state", store)
    _bad_input(proc, "an integer of 5000 characters", "at most 4300", code="LIMIT_EXCEEDED")
    assert "sys.set_int_max_str_digits" not in proc.stderr
    assert dump_store(store) == {"g": {"k": 1}}


def test_empty_standard_input_is_named_as_empty(tmp_path: Path, store: str) -> None:
    step = tmp_path / "echo.step.py"
    step.write_text("async def handler(data, ctx):\n    return data\n")
    _bad_input(cli("state", "set", "g", "k", "@-", "--state", store, input=""), "value: standard input is empty")
    _bad_input(cli("run", str(step), "--data", "@-", input=" \n"), "--data: standard input is empty")
    _bad_input(cli("import", "-", "--state", store, input=""), "standard input: is empty")
    (tmp_path / "empty.json").write_text("")
    _bad_input(cli("state", "set", "g", "k", f"@{tmp_path / 'empty.json'}", "--state", store), "empty.json is empty")
    assert dump_store(store) == {"g": {"k": 1}}


def test_import_of_a_folder_or_an_empty_file_says_which(tmp_path: Path, store: str) -> None:
    _bad_input(cli("import", str(tmp_path), "--state", store), "is a folder, not an export file")
    (tmp_path / "empty.ndjson").write_text("")
    _bad_input(cli("import", str(tmp_path / "empty.ndjson"), "--state", store), "is empty, not a motia-state export")


@pytest.mark.parametrize("groups", ["", ",,,"])
def test_export_groups_that_name_no_group_is_bad_input(store: str, groups: str) -> None:
    proc = cli("export", "--groups", groups, "--state", store)
    _bad_input(proc, "names no group")
    assert proc.stdout == ""


def test_migrate_with_a_checkpoint_in_a_missing_folder_copies_nothing(tmp_path: Path, store: str) -> None:
    target = tmp_path / "target"
    checkpoint = tmp_path / "missing" / "cp.json"
    proc = cli("migrate", "--from", store, "--to", f"file:{target}", "--checkpoint", str(checkpoint))
    _bad_input(proc, f"--checkpoint {checkpoint}: the folder", "does not exist")
    assert not target.exists()


@pytest.mark.parametrize(("trace_id", "says"), [("", "non-empty"), ("__motia/x", "reserved"), ("t" * 2000, "1024")])
def test_run_with_a_trace_id_that_is_not_a_group_is_refused_before_the_step_runs(
    tmp_path: Path, trace_id: str, says: str
) -> None:
    step = tmp_path / "mark.step.py"
    marker = tmp_path / "ran"
    step.write_text(f"async def handler(data, ctx):\n    open({str(marker)!r}, 'w').close()\n")
    proc = cli("run", str(step), "--trace-id", trace_id)
    assert proc.returncode == 2 and "--trace-id:" in proc.stderr and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("option", ["--group", "--key"])
def test_watch_filtering_on_a_name_no_entry_can_have_is_bad_input(store: str, option: str) -> None:
    _bad_input(cli("state", "watch", option, "", "--no-follow", "--state", store), f"{option} must be a non-empty")


def test_create_where_no_folder_can_be_made_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    _bad_input(cli("create", "a" * 300, cwd=tmp_path), "cannot create the app there: File name too long")
    _bad_input(cli("create", str(tmp_path / "notes.txt" / "app")), "cannot create the app there: Not a directory")
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
