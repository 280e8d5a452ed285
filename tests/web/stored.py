"""A store with state trigger dead letters, written by a real TriggerRunner in a child process.

The runtime is the CLI tests' (``tests/cli/test_triggers.py``): one trigger,
``scores``, on every key of the group ``users``; its handler fails while
``WORK/fail`` exists and logs each key it handled to ``WORK/handled``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import motia_state as ms

from ..cli.test_triggers import Runtime

__all__ = ["Runtime", "handled", "put", "start_failing"]


def put(store: Path, key: str, value: Any) -> None:
    """Write ``users/key`` from this process, as any writer of the store would."""

    async def go() -> None:
        async with ms.FileStateAdapter(str(store)) as adapter:
            await adapter.set("users", key, value)

    asyncio.run(go())


def handled(work: Path) -> list[str]:
    """The keys the runtime's handler logged; a line still being appended is left for the next read."""
    path = work / "handled"
    text = path.read_text() if path.exists() else ""
    return text[: text.rfind("\n") + 1].split()


def start_failing(store: Path, work: Path, runtimes: list[Runtime], keys: list[str]) -> Runtime:
    """A runtime whose handler fails, with one dead letter per key of ``keys``."""
    work.mkdir(exist_ok=True)
    (work / "fail").write_text("")
    runtime = Runtime(f"file:{store}", work)
    runtimes.append(runtime)
    for i, key in enumerate(keys):
        put(store, key, i)
    runtime.wait(lambda view: len(view["dead"]) >= len(keys), "the dead letters")
    return runtime
