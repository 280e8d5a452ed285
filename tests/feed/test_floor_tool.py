"""The feed's floor tool (``python -m scripts.benchmarks.feed --floor``) still builds its stand-ins.

The stand-ins are cut out of the shipped record code by markers in its
source: a change to that code must fail here, not only when somebody next
runs the benchmark. The figures themselves belong to docs/performance.md.
"""

from __future__ import annotations

import re

import pytest

import motia_state as ms
from motia_state.adapters.table import StateTable
from scripts.benchmarks import feed as feed_bench


def test_floor_prints_every_stand_in_and_restores_the_shipped_code(capsys: pytest.CaptureFixture[str]) -> None:
    increment, write = ms.MemoryStateAdapter.increment, StateTable.write
    feed_bench.floor(n=400, rounds=1)
    out = capsys.readouterr().out
    assert ms.MemoryStateAdapter.increment is increment
    assert StateTable.write is write
    for label in ["feed off", *feed_bench._INCREMENT_STAND_INS, *feed_bench._SET_STAND_INS]:
        assert re.search(rf"^  {re.escape(label)}\s+\d+\.\d{{3}} us\s+\d+\.\d{{2}}x$", out, re.MULTILINE), label


@pytest.mark.asyncio
async def test_each_increment_stand_in_still_counts() -> None:
    # A stand-in replaces only the record: the write itself must stay the
    # shipped one, or the floor would compare different work.
    from motia_state.adapters import memory as memory_module

    built = feed_bench._variants(
        ms.MemoryStateAdapter.increment,
        memory_module,
        ("slots = ring.slots\n", "ring.settle()\n"),
        feed_bench._INCREMENT_STAND_INS,
    )
    shipped = ms.MemoryStateAdapter.increment
    try:
        for label, fn in built.items():
            ms.MemoryStateAdapter.increment = fn  # type: ignore[method-assign]
            adapter = ms.MemoryStateAdapter()
            for _ in range(50):
                await adapter.increment("g", "n")
            assert await adapter.get("g", "n") == 50, label
            await adapter.close()
    finally:
        ms.MemoryStateAdapter.increment = shipped  # type: ignore[method-assign]
