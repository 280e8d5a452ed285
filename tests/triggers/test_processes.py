"""Triggers across processes on one store: a SIGKILLed runtime, two runtimes sharing the work, long handlers.

Each runtime is tests/triggers/runtime_child.py in its own process; its
handler appends one line per handled change to a file, so the test counts
exactly what ran, duplicates included.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

import motia_state as ms
from motia_state.adapters.factory import create_state_adapter

from ..helpers import ROOT, RedisServer

CHILD = Path(__file__).parent / "runtime_child.py"


class Runtime:
    """One runtime process, started and waited for until it says "ready"."""

    started: ClassVar[list[Runtime]] = []  # killed after each test, so a failing one leaves no process behind

    def __init__(self, config: dict[str, Any]) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.log = Path(config["out"]).with_name(f"runtime{len(list(Path(config['out']).parent.glob('*.log')))}.log")
        with self.log.open("w") as log:  # its warnings (a lease taken over, ...) for a failing test to show
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD), json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=env,
            )
        Runtime.started.append(self)
        line = self.readline()
        assert line == "ready\n", line

    def readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._close()

    def _close(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()

    def stop(self) -> None:
        """Close its stdin: it stops taking work, finishes, saves its positions and exits 0."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=60)
        self._close()
        assert code == 0


@pytest.fixture(autouse=True)
def _no_runtime_left() -> Iterator[None]:
    yield
    for runtime in Runtime.started:
        if runtime.proc.poll() is None:
            runtime.kill()
        runtime._close()
    Runtime.started.clear()


@pytest.fixture(params=["file", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "file":
        yield f"file:{tmp_path / 'state'}"
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    config = {"adapter": "redis", "url": server.url, "key_prefix": request.getfixturevalue("redis_prefix")}
    if type(create_state_adapter(config)).changes is ms.StateAdapter.changes:
        pytest.skip("this Redis adapter has no change feed yet")
    yield config


def handled(out: Path) -> list[dict[str, Any]]:
    """The lines the runtimes appended; a line still being written is left for the next read.

    Each line is one O_APPEND write, but a read that races the write can
    still see only its first bytes.
    """
    if not out.exists():
        return []
    text = out.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


async def wait_handled(out: Path, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    with anyio.fail_after(timeout):
        while len({r["cursor"] for r in handled(out)}) < count:
            await anyio.sleep(0.05)
    return handled(out)


async def balanced(store: Any, runtimes: int, partitions: int = 8) -> None:
    """Wait until the trigger's partitions are all leased, split between ``runtimes`` runtimes."""
    adapter = create_state_adapter(store)
    try:
        with anyio.fail_after(30):
            while True:
                owners = [
                    (await adapter.internal.get("__motia/triggers/t", f"lease.{p}") or {}).get("owner")
                    for p in range(partitions)
                ]
                if None not in owners and len(set(owners)) == runtimes:
                    return
                await anyio.sleep(0.1)
    finally:
        await adapter.close()


def logs(*runtimes: Runtime) -> str:
    return "\n".join(r.log.read_text() for r in runtimes)


async def write(store: Any, count: int, entries: int = 50) -> list[str]:
    """``count`` changes of key k over ``entries`` groups, plus as many of another key; their cursors."""
    state = ms.StateManager(create_state_adapter(store))
    async with state:
        last = (await state.feed_info())["last"]
        for i in range(count):
            await state.set(f"g{i % entries}", "k", i)
            await state.set(f"g{i % entries}", "other", i)
        return [c.cursor async for c in state.changes(after=last, keys=["k"], follow=False)]


async def test_a_change_whose_runtime_was_killed_before_handling_it_is_handled_after_a_restart(
    store: Any, tmp_path: Path
) -> None:
    out = tmp_path / "handled.jsonl"
    config = {"store": store, "out": str(out), "lease": 1.0}
    first = Runtime({**config, "mode": "hang"})
    [cursor] = await write(store, 1)
    assert first.readline().split() == ["started", cursor]  # its handler began, never finished
    first.kill()
    assert handled(out) == []
    second = Runtime(config)
    [record] = await wait_handled(out, 1)
    second.stop()
    assert record["cursor"] == cursor and record["value"] == 0
    assert len(handled(out)) == 1


async def test_two_runtimes_handle_each_of_1000_changes_exactly_once(store: Any, tmp_path: Path) -> None:
    out = tmp_path / "handled.jsonl"
    # A lease long enough that a busy machine does not let one lapse: this
    # test is about runtimes that never lose their leases.
    config = {"store": store, "out": str(out), "lease": 5.0}
    a = Runtime(config)
    b = Runtime(config)
    await balanced(store, 2)  # a gave half its partitions to b
    cursors = await write(store, 1000)
    records = await wait_handled(out, 1000)
    a.stop()
    b.stop()
    records = handled(out)
    counts = Counter(r["cursor"] for r in records)
    assert set(counts) == set(cursors)
    assert max(counts.values()) == 1, ([c for c, n in counts.items() if n > 1][:5], logs(a, b))
    by_pid = Counter(r["pid"] for r in records)
    assert set(by_pid) == {a.proc.pid, b.proc.pid}  # both did part of the work


async def test_when_one_runtime_is_killed_mid_run_every_change_is_still_handled(store: Any, tmp_path: Path) -> None:
    out = tmp_path / "handled.jsonl"
    config = {"store": store, "out": str(out), "lease": 1.0, "sleep": 0.002}
    a = Runtime(config)
    b = Runtime(config)
    await balanced(store, 2)
    cursors = await write(store, 1000)
    with anyio.fail_after(60):
        while len(handled(out)) < 200:
            await anyio.sleep(0.01)
    a.kill()
    await wait_handled(out, 1000)
    b.stop()
    counts = Counter(r["cursor"] for r in handled(out))
    assert set(counts) == set(cursors)  # at least once


async def test_a_handler_running_longer_than_the_lease_is_not_taken_over(store: Any, tmp_path: Path) -> None:
    out = tmp_path / "handled.jsonl"
    # Leases renewed every lease/3: a 2 s lease outlasts a loaded machine's
    # pauses, and the handler still runs well past it.
    config = {"store": store, "out": str(out), "lease": 2.0, "sleep": 5.0}
    a = Runtime(config)
    b = Runtime(config)
    await balanced(store, 2)
    start = time.monotonic()
    cursors = await write(store, 8, entries=8)
    await wait_handled(out, 8)
    await anyio.sleep(1.0)  # a takeover would run some again by now
    a.stop()
    b.stop()
    assert time.monotonic() - start >= 5.0
    counts = Counter(r["cursor"] for r in handled(out))
    assert set(counts) == set(cursors) and max(counts.values()) == 1, logs(a, b)
