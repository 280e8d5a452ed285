"""``motia-state state ...``: read and change entries of a store from the command line."""

from __future__ import annotations

import json
import select
import signal
import threading
import time
from pathlib import Path

import pytest

from ._cli import cli, start


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"file:{tmp_path / 'store'}"


def test_set_get_op_and_rm(store: str) -> None:
    assert json.loads(cli("state", "set", "shop", "stock", "5", "--state", store).stdout) == 5
    assert json.loads(cli("state", "op", "shop", "stock", "decrement", "2", "--state", store).stdout) == 3
    assert json.loads(cli("state", "get", "shop", "stock", "--state", store).stdout) == 3
    assert json.loads(cli("state", "op", "shop", "tags", "push", '"a"', "b", "--state", store).stdout) == ["a", "b"]
    assert json.loads(cli("state", "op", "shop", "cfg", "setField", "mode", '{"x": 1}', "--state", store).stdout) == {
        "mode": {"x": 1}
    }
    assert json.loads(cli("state", "rm", "shop", "stock", "--state", store).stdout) == 3
    missing = cli("state", "get", "shop", "stock", "--state", store)
    assert missing.returncode == 0 and json.loads(missing.stdout) is None


def test_set_reads_the_value_from_stdin(store: str) -> None:
    proc = cli("state", "set", "g", "k", "@-", "--state", store, input='{"a": [1, 2]}')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(cli("state", "get", "g", "k", "--state", store).stdout) == {"a": [1, 2]}


def test_ls_lists_groups_then_keys_with_type_and_size(store: str) -> None:
    cli("state", "set", "g", "n", "12", "--state", store)
    cli("state", "set", "g", "s", '"abc"', "--state", store)
    cli("state", "set", "h", "x", "[]", "--state", store)
    assert json.loads(cli("state", "ls", "--state", store).stdout) == [
        {"group": "g", "keys": 2},
        {"group": "h", "keys": 1},
    ]
    assert json.loads(cli("state", "ls", "g", "--state", store).stdout) == [
        {"key": "n", "type": "number", "size": 2},
        {"key": "s", "type": "string", "size": 5},
    ]


def test_rm_a_group_clears_it(store: str) -> None:
    cli("state", "set", "g", "a", "1", "--state", store)
    cli("state", "set", "g", "b", "2", "--state", store)
    assert cli("state", "rm", "g", "--state", store).returncode == 0
    assert json.loads(cli("state", "ls", "g", "--state", store).stdout) == []


def test_an_operation_that_fails_reports_its_code(store: str) -> None:
    cli("state", "set", "g", "s", '"text"', "--state", store)
    proc = cli("state", "op", "g", "s", "increment", "1", "--state", store)
    assert proc.returncode == 1
    assert "[TYPE_MISMATCH]" in proc.stderr
    unknown = cli("state", "op", "g", "s", "explode", "--state", store)
    assert unknown.returncode == 2 and "not an operation" in unknown.stderr


def test_bad_json_value_is_bad_input(store: str) -> None:
    proc = cli("state", "set", "g", "k", "{nope", "--state", store)
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr


@pytest.mark.parametrize("command", [["ls"], ["ls", "g"], ["get", "g", "k"], ["history", "g", "k"]])
def test_reading_a_file_store_that_is_not_there_is_bad_input_and_creates_nothing(
    command: list[str], tmp_path: Path
) -> None:
    # A mistyped path must not read as an empty store (null, no groups) and leave one behind.
    missing = tmp_path / "no-such-store"
    proc = cli("state", *command, "--state", f"file:{missing}")
    assert proc.returncode == 2 and "no store" in proc.stderr and proc.stdout == "", proc.stderr
    assert not missing.exists()


def test_json_nested_past_the_parsers_depth_is_bad_input_not_internal(store: str, tmp_path: Path) -> None:
    deep = "[" * 5000 + "]" * 5000
    proc = cli("state", "set", "g", "k", "@-", "--state", store, input=deep)
    assert proc.returncode == 2 and "[LIMIT_EXCEEDED]" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "INTERNAL" not in proc.stderr
    step = tmp_path / "noop.step.py"
    step.write_text("def handler(data, ctx):\n    return None\n")
    run = cli("run", str(step), "--data", "@-", input=deep)
    assert run.returncode == 2 and "[LIMIT_EXCEEDED]" in run.stderr, run.stderr
    op = cli("state", "op", "g", "k", "push", deep, "--state", store)
    assert op.returncode == 2 and "[LIMIT_EXCEEDED]" in op.stderr, op.stderr


def test_an_op_argument_that_is_not_json_is_a_string(store: str) -> None:
    # NaN and Infinity are not JSON: like any other text, they are strings.
    pushed = cli("state", "op", "g", "l", "push", "NaN", "Infinity", "x", "1", "--state", store)
    assert json.loads(pushed.stdout) == ["NaN", "Infinity", "x", 1], pushed.stderr


@pytest.mark.parametrize("command", [["state", "ls"], ["state", "get", "g", "k"], ["state", "set", "g", "k", "1"]])
def test_the_memory_store_is_refused(command: list[str]) -> None:
    proc = cli(*command, "--state", "memory:")
    assert proc.returncode == 2
    assert "memory:" in proc.stderr and "what to do:" in proc.stderr


def test_history_lists_an_entrys_changes_newest_first(store: str) -> None:
    cli("state", "set", "g", "k", "1", "--state", store)
    cli("state", "op", "g", "k", "increment", "4", "--state", store)
    records = json.loads(cli("state", "history", "g", "k", "--state", store).stdout)
    assert [(r["op"], r["oldValue"], r["newValue"]) for r in records] == [("increment", 1, 5), ("set", None, 1)]


def test_watch_prints_changes_live_and_stops_on_ctrl_c(store: str) -> None:
    cli("state", "set", "g", "before", "0", "--state", store)
    proc = start("state", "watch", "--group", "g", "--state", store)
    watchdog = threading.Timer(120, proc.kill)  # a watch that never prints must not hang the run
    watchdog.start()
    try:
        assert proc.stdout is not None
        # The watcher follows from "now", once it has started (however long
        # that takes): write until it prints a change. Each round writes
        # another group first, which the watch must not print.
        deadline = time.monotonic() + 60
        value, line = 0, ""
        while not line:
            assert time.monotonic() < deadline and proc.poll() is None, "watch printed no change"
            value += 1
            cli("state", "set", "other", "k", str(value), "--state", store)
            cli("state", "set", "g", "k", str(value), "--state", store)
            if select.select([proc.stdout], [], [], 1.0)[0]:
                line = proc.stdout.readline()
        # Watching now: the next round's change in g is printed, the one in "other" is not.
        cli("state", "set", "other", "k", str(value + 1), "--state", store)
        cli("state", "set", "g", "k", str(value + 1), "--state", store)
        changes = [json.loads(line)]
        while changes[-1]["newValue"] != value + 1:
            line = proc.stdout.readline()
            assert line, "watch ended before printing the change"
            changes.append(json.loads(line))
        assert all((c["group"], c["key"]) == ("g", "k") for c in changes), changes
        assert [c["newValue"] for c in changes] == list(range(changes[0]["newValue"], value + 2))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "Traceback" not in err


def test_a_damaged_store_is_corrupt_exit_1_not_unavailable(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    for i in range(4):
        cli("state", "set", "g", f"k{i}", str(i), "--state", f"file:{folder}")
    log = folder / "log"
    data = bytearray(log.read_bytes())
    data[30] ^= 0xFF  # inside the first record, with records after it
    log.write_bytes(bytes(data))
    proc = cli("state", "get", "g", "k1", "--state", f"file:{folder}")
    assert proc.returncode == 1, proc.stderr
    assert "[CORRUPT]" in proc.stderr and "motia-state validate" in proc.stderr


def test_a_reserved_group_is_reported_as_the_group(store: str) -> None:
    proc = cli("state", "set", "__motia/x", "k", "1", "--state", store)
    assert proc.returncode == 2 and "group '__motia/x' is reserved" in proc.stderr, proc.stderr
    assert "traceId" not in proc.stderr


def test_a_reader_that_goes_away_ends_watch_quietly(store: str) -> None:
    # `state watch | head -1`: once head has its line, watch ends without an error message.
    cli("state", "set", "g", "k", "0", "--state", store)
    proc = start("state", "watch", "--state", store)
    try:
        assert proc.stdout is not None
        # The watcher follows from "now", once it has started: write until it prints a change.
        deadline = time.monotonic() + 60
        value, line = 0, ""
        while not line:
            assert time.monotonic() < deadline and proc.poll() is None, "watch printed no change"
            value += 1
            cli("state", "set", "g", "k", str(value), "--state", store)
            if select.select([proc.stdout], [], [], 1.0)[0]:
                line = proc.stdout.readline()
        assert 1 <= json.loads(line)["newValue"] <= value
        proc.stdout.close()  # the reader is gone
        for later in range(value + 1, value + 4):
            cli("state", "set", "g", "k", str(later), "--state", store)
        assert proc.wait(30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    with proc.stderr:
        errors = proc.stderr.read()
    assert "error" not in errors and "Broken pipe" not in errors and "Traceback" not in errors, errors
