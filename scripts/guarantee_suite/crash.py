"""Section ``crash``: several processes write to one file store and are SIGKILLed, per fsync mode.

Each writer is the test suite's own crash child (``tests/scripts/state_writer.py``,
job ``crash``): forever, it increments ``n`` and then writes ``a = b = n``
in one transaction, and prints ``n`` once both are acknowledged. Several
writers share one store; each round starts them together and SIGKILLs each
at its own random moment. Then the store is opened afresh:

- every value a writer printed (acknowledged) must be at most the stored
  ``n`` (the increments are 1, 2, 3, ... across all writers, so a lost
  increment shows as an acknowledged value above ``n``);
- no value was acknowledged twice (two writers handed the same increment);
- ``a == b`` (no half of a transaction survives alone).

A process crash loses nothing in any mode; power loss is not simulated
(``always`` is the mode that promises to survive it).
"""

from __future__ import annotations

import random
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio

import motia_state as ms
from tests.helpers import go, rest_of_output, start_child

from .report import Row


@dataclass(frozen=True)
class Size:
    """Kill rounds per mode and writers per round."""

    rounds: int
    writers: int = 3


FULL = Size(rounds=10)
SHORT = Size(rounds=2)

MODES = [
    ("always", 4 << 20),
    ("batch", 4 << 20),
    ("never", 4 << 20),
    ("batch", 300),  # compacting all the time: kills land in compactions too
]


async def _read(path: Path) -> tuple[int, object, object]:
    adapter = ms.FileStateAdapter(path)
    try:
        return int(await adapter.get("g", "n") or 0), await adapter.get("g", "a"), await adapter.get("g", "b")
    finally:
        await adapter.close()


def run_mode(mode: str, compact_min: int, size: Size, seed: str) -> Row:
    """``size.rounds`` rounds of ``size.writers`` writers killed at random moments on one store."""
    rng = random.Random(f"{seed}-{mode}-{compact_min}")
    lost = duplicated = torn = acknowledged = 0
    with tempfile.TemporaryDirectory(prefix="motia-guarantees-crash-") as tmp:
        path = Path(tmp) / "store"
        config = {"adapter": "file", "path": str(path), "fsync": mode, "compact_min_bytes": compact_min}
        for _ in range(size.rounds):
            procs = [start_child(config, "crash", 0) for _ in range(size.writers)]
            go(*procs)
            for proc in procs:
                time.sleep(rng.uniform(0.01, 0.15))
                proc.send_signal(signal.SIGKILL)
            acked: list[int] = []
            for proc in procs:
                lines = rest_of_output(proc).split("\n")
                acked += [int(x) for x in lines[:-1] if x]  # the last piece may be half a line
            n, a, b = anyio.run(_read, path)
            acknowledged += len(acked)
            lost += sum(1 for v in acked if v > n)
            duplicated += len(acked) - len(set(acked))
            torn += a != b
    where = f"file, fsync {mode}" + (f", compacting every {compact_min} B" if compact_min < 4 << 20 else "")
    notes = f"{acknowledged:,} acknowledged"
    if duplicated:
        notes += f"; {duplicated} values acknowledged twice"
    if torn:
        notes += f"; {torn} torn transactions"
    if acknowledged == 0:
        return Row("crash", where, "no writes were acknowledged", None, notes)
    tried = f"{size.rounds * size.writers} SIGKILLs, {size.writers} writers x {size.rounds} rounds"
    return Row("crash", where, tried, lost + duplicated + torn, notes)


def run(size: Size, seed: str) -> list[Row]:
    """One row per fsync mode (and one compacting all the time)."""
    return [run_mode(mode, compact_min, size, seed) for mode, compact_min in MODES]
