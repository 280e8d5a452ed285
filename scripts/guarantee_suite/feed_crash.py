"""Section ``change feed``: the trigger runtime SIGKILLed again and again while writers commit.

Writers in child processes commit changes to key ``k`` of 16 groups (and
as many to key ``other``, which the trigger does not match) on one store,
until they are told to stop. The trigger runtime is the test suite's own
runtime child (``tests/triggers/runtime_child.py``): one state trigger on
key ``k`` whose handler appends each change's cursor to a file, in a
process of its own. It is SIGKILLed at random moments (while handlers run,
between a handling and the save of its position, while it waits for a
lease) and started again each time, ``kills`` times. Then the writers
stop, one last runtime catches up and stops cleanly, and every record of
key ``k`` in the store's feed must have been handled at least once: the
row counts the matching changes never handled. Handling a change again
after a kill is allowed (at least once): those are counted in the notes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from motia_state.adapters.factory import create_state_adapter

from .report import Row
from .servers import redis_server

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "tests" / "triggers" / "runtime_child.py"

# A writer: changes to k (and to other) in 16 groups until its stdin
# closes; prints "ready" once its store is open and the number it
# committed when it stops.
WRITER = """
import json, sys
import anyio
from motia_state.adapters.factory import create_state_adapter

async def main():
    state = create_state_adapter(json.loads(sys.argv[1]))
    number = int(sys.argv[2])
    print("ready", flush=True)
    count = 0
    async with anyio.create_task_group() as tg:
        async def write():
            nonlocal count
            while True:
                group = f"g{count % 16}"
                await state.set(group, "k", [number, count])
                await state.set(group, "other", count)
                count += 1
                await anyio.sleep(0.002)
        tg.start_soon(write)
        await anyio.to_thread.run_sync(sys.stdin.read)
        tg.cancel_scope.cancel()
    await state.close()
    print(count, flush=True)

anyio.run(main)
"""


@dataclass(frozen=True)
class Size:
    """SIGKILLs of the trigger runtime per store, and writers."""

    kills: int
    writers: int = 2


FULL = Size(kills=20)
SHORT = Size(kills=3)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _start_runtime(store: dict[str, Any], out: Path, log: Path) -> subprocess.Popen[str]:
    config = {"store": store, "out": str(out), "lease": 0.5, "partitions": 4}
    with log.open("a") as err:
        proc = subprocess.Popen(
            [sys.executable, str(RUNTIME), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=_env(),
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "ready\n":
        proc.kill()
        raise RuntimeError(f"the trigger runtime did not start: {line!r} (see {log})")
    return proc


def _close(proc: subprocess.Popen[str]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None and not pipe.closed:
            pipe.close()


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    _close(proc)


def _handled(out: Path) -> list[str]:
    if not out.exists():
        return []
    # The last line may be half written by a killed runtime: it is not counted as handled.
    return [json.loads(line)["cursor"] for line in out.read_text().split("\n")[:-1]]


async def _matching(store: dict[str, Any]) -> list[str]:
    adapter = create_state_adapter(store)
    try:
        return [c.cursor async for c in adapter.changes(None, keys=["k"], follow=False)]
    finally:
        await adapter.close()


def run_store(name: str, store: dict[str, Any], size: Size, seed: str, tmp: Path) -> Row:
    """Writers on ``store``, the trigger runtime SIGKILLed ``size.kills`` times; the row of what was never handled."""
    rng = random.Random(f"{seed}-feed-{name}")
    out, log = tmp / f"{name}.handled", tmp / f"{name}.log"
    runtime = _start_runtime(store, out, log)  # registers the trigger ("from now") before anything is written
    writers = []
    for number in range(size.writers):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, json.dumps(store), str(number)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        writers.append(writer)
    for _ in range(size.kills):
        time.sleep(rng.uniform(0.05, 1.5))
        _kill(runtime)
        runtime = _start_runtime(store, out, log)
    committed = 0
    for writer in writers:
        assert writer.stdin is not None and writer.stdout is not None
        writer.stdin.close()
        committed += int(writer.stdout.read().strip() or 0)
        writer.wait(timeout=60)
        _close(writer)
    matching = anyio.run(_matching, store)
    # The last runtime catches up, then stops cleanly (it saves its positions).
    deadline = time.monotonic() + 120
    while not set(matching) <= set(_handled(out)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runtime.stdin is not None
    runtime.stdin.close()
    runtime.wait(timeout=60)
    _close(runtime)
    handled = _handled(out)
    never = len(set(matching) - set(handled))
    again = len(handled) - len(set(handled))
    notes = f"{again:,} handled more than once (at least once allows it)"
    if len(matching) != committed:
        notes += f"; the feed holds {len(matching):,} matching records, the writers counted {committed:,}"
    tried = (
        f"{size.kills} SIGKILLs of the trigger runtime, {len(matching):,} matching changes from {size.writers} writers"
    )
    return Row("change feed", name, tried, never if len(matching) >= committed else None, notes)


def run(size: Size, seed: str) -> list[Row]:
    """The file store, then a local Redis when redis-server is installed."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="motia-guarantees-feed-") as directory:
        tmp = Path(directory)
        rows.append(
            run_store("file", {"adapter": "file", "path": str(tmp / "store"), "fsync": "batch"}, size, seed, tmp)
        )
        with redis_server(tmp / "redis") as server:
            if server is None:
                rows.append(Row("change feed", "redis", "-", 0, "redis-server is not installed", skipped=True))
            else:
                store = {"adapter": "redis", "url": server.url, "key_prefix": "feed:"}
                rows.append(run_store("redis", store, size, seed, tmp))
    return rows
