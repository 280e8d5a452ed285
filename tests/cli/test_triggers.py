"""``triggers ls|dead|retry|drop|reset``: the real CLI over stores written by a real TriggerRunner.

The runner runs in its own process (as ``dev`` runs it), on a file store or
a Redis: the commands read what it left in the store when it is gone, and
edit it safely while it runs (a retry asked from the CLI runs in the
runner, a drop and a reset are followed by it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import RedisServer, free_port
from ._cli import cli, env

#: A runtime running one trigger, ``scores`` (every key of the group ``users``), until ``WORK/stop`` exists.
#: Its handler fails while ``WORK/fail`` exists and logs each key it handled to ``WORK/handled``; it
#: writes its own view (status and dead letter ids) to ``WORK/status.json``. ``RETENTION`` is the
#: file store's feed retention (0: the default). Its lease is long: every runtime here stops by giving
#: its leases up, and a short one lapses when a loaded machine pauses the process for a second, after
#: which the runtime no longer saves the positions of what it handled.
RUNNER = """
import json, os, sys
from pathlib import Path
import anyio
import motia_state as ms
from motia_state.triggers import TriggerRunner

store, work, retention = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])

async def main():
    if store.startswith("file:") and retention:
        adapter = ms.FileStateAdapter(store[5:], feed_retention=retention)
    else:
        adapter = ms.create_state_adapter(store)
    async with ms.StateManager(adapter) as state:
        async def handler(change):
            if (work / "fail").exists():
                raise RuntimeError(f"refused {change.key}")
            with open(work / "handled", "a") as f:
                f.write(change.key + "\\n")
        async with TriggerRunner(state, None, attempts=2, backoff=0.01, lease=6) as runner:
            await runner.add("scores", {"type": "state", "key": "*", "group": "users"}, handler)
            while not (work / "stop").exists():
                view = {"status": runner.status(), "dead": [d.id for d in runner.dead_letters("scores")]}
                (work / "status.tmp").write_text(json.dumps(view))
                os.replace(work / "status.tmp", work / "status.json")
                await anyio.sleep(0.05)
        if retention:  # compact: the feed keeps only its window, so a reader of any retention sees the same
            await adapter.compact()

anyio.run(main)
"""


class Runtime:
    """A TriggerRunner in a child process over ``store``; ``work`` holds its flags and its view."""

    def __init__(self, store: str, work: Path, retention: int = 0) -> None:
        self.store, self.work = store, work
        work.mkdir(exist_ok=True)
        (work / "stop").unlink(missing_ok=True)
        (work / "status.json").unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, store, str(work), str(retention)],
            env=env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.wait(lambda view: view is not None, "the runner to start")

    def view(self) -> Any:
        path = self.work / "status.json"
        return json.loads(path.read_text()) if path.exists() else None

    def wait(self, condition: Callable[[Any], bool], what: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the runner exited with {self.proc.returncode}: {self.proc.stderr.read()}")
            view = self.view()
            if condition(view):
                return view
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; last view {self.view()}")

    def stop(self) -> str:
        (self.work / "stop").write_text("")
        _, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def runtimes() -> Iterator[list[Runtime]]:
    started: list[Runtime] = []
    yield started
    for runtime in started:
        runtime.kill()


def _handled(work: Path) -> list[str]:
    """The keys the runtime's handler logged; a line still being appended is left for the next read."""
    path = work / "handled"
    text = path.read_text() if path.exists() else ""
    return text[: text.rfind("\n") + 1].split()


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _set(store: str, key: str, value: int) -> None:
    assert cli("state", "set", "users", key, str(value), "--state", store).returncode == 0


def _dead_letters(store: str, runtimes: list[Runtime], work: Path, keys: list[str]) -> list[dict[str, Any]]:
    """Run a runtime whose handler fails on ``keys``, then stop it: the store keeps one dead letter each."""
    work.mkdir()
    (work / "fail").write_text("")
    runtime = Runtime(store, work)
    runtimes.append(runtime)
    for i, key in enumerate(keys):
        _set(store, key, i)
    runtime.wait(lambda view: len(view["dead"]) == len(keys), "the dead letters")
    runtime.stop()
    (work / "fail").unlink()
    return _json(cli("triggers", "dead", "scores", "--state", store))


def test_with_no_runtime_running_ls_dead_drop_and_a_retry_kept_for_the_next_runtime(
    tmp_path: Path, runtimes: list[Runtime]
) -> None:
    store, work = f"file:{tmp_path / 's'}", tmp_path / "work"
    dead = _dead_letters(store, runtimes, work, ["ada", "bob"])
    assert [(d["change"]["key"], d["trigger"], d["attempts"]) for d in dead] == [
        ("ada", "scores", 2),
        ("bob", "scores", 2),
    ]
    assert dead[0]["error"] == "RuntimeError('refused ada')" and dead[0]["retry"] is None

    [row] = _json(cli("triggers", "ls", "--state", store))
    assert row["name"] == "scores" and row["state"] == "idle" and row["runtimes"] == 0
    assert row["deadLetters"] == 2 and row["behind"] == 0 and row["oldestPendingAge"] is None
    assert row["trigger"] == {"type": "state", "key": "*", "group": "users"}

    # Changes committed while no runtime runs: behind, and pending since the oldest matching one.
    _set(store, "cy", 1)
    assert cli("state", "set", "other", "x", "1", "--state", store).returncode == 0
    [row] = _json(cli("triggers", "ls", "--state", store))
    assert row["behind"] == 2 and 0 <= row["oldestPendingAge"] < 60

    ada, bob = dead[0]["id"], dead[1]["id"]
    assert _json(cli("triggers", "drop", "scores", bob, "--state", store)) == {"dropped": bob, "trigger": "scores"}
    again = cli("triggers", "drop", "scores", bob, "--state", store)
    assert again.returncode == 2 and "[NOT_FOUND]" in again.stderr and "triggers dead scores" in again.stderr

    queued = cli("triggers", "retry", "scores", ada, "--state", store)
    assert _json(queued) == {"retried": False, "queued": True, "id": ada}
    assert "runs when one starts" in queued.stderr
    assert [d["retry"] for d in _json(cli("triggers", "dead", "--state", store))] == ["requested"]

    runtime = Runtime(store, work)  # the next runtime runs the kept retry (and the pending change)
    runtimes.append(runtime)
    # The retry and the pending change run side by side: wait for both.
    runtime.wait(lambda view: view["dead"] == [] and len(_handled(work)) >= 2, "the kept retry and cy to run")
    assert sorted(_handled(work)) == ["ada", "cy"]
    runtime.stop()
    assert _json(cli("triggers", "dead", "--state", store)) == []
    [row] = _json(cli("triggers", "ls", "--state", store))
    assert row["deadLetters"] == 0 and row["behind"] == 0 and row["state"] == "idle"


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_retry_and_drop_reach_a_running_runtime(
    kind: str, tmp_path: Path, runtimes: list[Runtime], request: pytest.FixtureRequest
) -> None:
    if kind == "redis":
        redis = pytest.importorskip("redis")
        server: RedisServer = request.getfixturevalue("redis_server")
        store = server.url.rsplit("/", 1)[0] + "/12"
        client = redis.Redis.from_url(store)
        client.flushdb()
        request.addfinalizer(client.flushdb)
    else:
        store = f"file:{tmp_path / 's'}"
    work = tmp_path / "work"
    work.mkdir()
    (work / "fail").write_text("")
    runtime = Runtime(store, work)
    runtimes.append(runtime)
    for i, key in enumerate(["ada", "bob", "cy"]):
        _set(store, key, i)
    runtime.wait(lambda view: len(view["dead"]) == 3, "three dead letters")
    ada, bob, cy = (d["id"] for d in _json(cli("triggers", "dead", "scores", "--state", store)))
    [row] = _json(cli("triggers", "ls", "--state", store))
    assert row["state"] == "running" and row["runtimes"] == 1 and row["deadLetters"] == 3

    # Still failing: the runtime runs it, it fails again and stays.
    failed = cli("triggers", "retry", "scores", ada, "--state", store)
    assert failed.returncode == 1, failed.stderr
    assert json.loads(failed.stdout) == {
        "retried": True,
        "succeeded": False,
        "id": ada,
        "error": "RuntimeError('refused ada')",
    }
    assert "[STEP_FAILED]" in failed.stderr and "failed again" in failed.stderr

    (work / "fail").unlink()
    assert _json(cli("triggers", "retry", "scores", ada, "--state", store)) == {
        "retried": True,
        "succeeded": True,
        "id": ada,
    }
    assert _handled(work) == ["ada"]  # run by the runtime's own handler, in its process
    runtime.wait(lambda view: ada not in view["dead"], "the runtime to drop the retried dead letter")

    assert _json(cli("triggers", "drop", "scores", bob, "--state", store))["dropped"] == bob
    runtime.wait(lambda view: view["dead"] == [cy], "the runtime to follow the drop")
    assert [d["id"] for d in _json(cli("triggers", "dead", "--state", store))] == [cy]
    assert "Traceback" not in runtime.stop()


def test_a_trigger_behind_the_retention_shows_cursor_expired_and_reset_restarts_it(
    tmp_path: Path, runtimes: list[Runtime]
) -> None:
    store, work = f"file:{tmp_path / 's'}", tmp_path / "work"
    runtime = Runtime(store, work, retention=5)
    runtimes.append(runtime)
    _set(store, "ada", 0)
    runtime.wait(lambda view: view["status"][0]["position"] is not None and _handled(work) == ["ada"], "ada")
    time.sleep(0.7)  # its position is saved
    runtime.stop()
    writer = (
        "import anyio, motia_state as ms\n"
        "async def main():\n"
        "    s = ms.FileStateAdapter(%r, feed_retention=5)\n"
        "    for i in range(30):\n"
        "        await s.set('other', 'n', i)\n"
        "    await s.compact()\n"
        "    await s.close()\n"
        "anyio.run(main)\n"
    )
    subprocess.run([sys.executable, "-c", writer % str(tmp_path / "s")], check=True, env=env())

    [row] = _json(cli("triggers", "ls", "--state", store))
    assert row["state"] == "CURSOR_EXPIRED" and row["behind"] is None

    # A runtime started now stops on it too; a reset from the CLI restarts it while it runs.
    runtime = Runtime(store, work, retention=5)
    runtimes.append(runtime)
    runtime.wait(lambda view: view["status"][0]["state"] == "CURSOR_EXPIRED", "the runtime to stop on it")
    _set(store, "bob", 1)
    time.sleep(0.5)
    assert _handled(work) == ["ada"]  # stopped: nothing handled, nothing silently skipped

    reset = cli("triggers", "reset", "scores", "--to", "now", "--state", store)
    report = _json(reset)
    assert report["reset"] == "scores" and report["to"] == "now" and report["runtimes"] == 1
    assert "1 running runtime(s) follow" in reset.stderr
    runtime.wait(lambda view: view["status"][0]["state"] == "running", "the runtime to follow the reset")
    _set(store, "cy", 2)
    runtime.wait(lambda view: _handled(work) == ["ada", "cy"], "cy to be handled after the reset")
    runtime.stop()
    [row] = _json(cli("triggers", "ls", "--state", store))
    assert row["state"] == "idle" and row["behind"] == 0


def test_reset_with_no_runtime_running_and_bad_input(tmp_path: Path, runtimes: list[Runtime]) -> None:
    store, work = f"file:{tmp_path / 's'}", tmp_path / "work"
    _dead_letters(store, runtimes, work, ["ada"])
    _set(store, "bob", 1)
    [row] = _json(cli("triggers", "ls", "--state", store))
    assert row["behind"] == 1
    assert _json(cli("triggers", "reset", "scores", "--to", "now", "--state", store))["runtimes"] == 0
    [row] = _json(cli("triggers", "ls", "--state", store))
    assert row["behind"] == 0 and row["oldestPendingAge"] is None  # bob is skipped, as asked

    assert _json(cli("triggers", "reset", "scores", "--to", "start", "--state", store))["cursor"] is None
    [row] = _json(cli("triggers", "ls", "--state", store))
    assert row["position"] is None and row["behind"] == 2  # everything retained is handled again

    missing = cli("triggers", "reset", "nope", "--to", "now", "--state", store)
    assert missing.returncode == 2 and "[NOT_FOUND]" in missing.stderr and "triggers ls" in missing.stderr
    no_to = cli("triggers", "reset", "scores", "--state", store)
    assert no_to.returncode == 2 and "--to" in no_to.stderr
    memory = cli("triggers", "ls", "--state", "memory:")
    assert memory.returncode == 2 and "refuses the memory: store" in memory.stderr
    assert cli("triggers", "ls", "--state", f"file:{tmp_path / 'empty'}").stdout.strip() == "[]"


def test_a_redis_that_is_down_is_unavailable_before_anything_is_read() -> None:
    pytest.importorskip("redis")
    proc = cli("triggers", "ls", "--state", f"redis://127.0.0.1:{free_port()}/0")
    assert proc.returncode == 3 and "[UNAVAILABLE]" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
