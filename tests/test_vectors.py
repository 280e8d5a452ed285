"""The shared conformance vectors on every in-process adapter, bare and managed."""

from __future__ import annotations

from typing import Any

import pytest

import motia_state as ms

from .conformance import adapter_call, limits_kwargs, load_cases, run_case

CASES = load_cases()


def test_there_are_enough_vectors() -> None:
    assert len(CASES) >= 150


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c[0] for c in CASES])
async def test_vector_on_bare_memory_adapter(name: str, case: dict[str, Any]) -> None:
    adapter = ms.MemoryStateAdapter(limits=ms.Limits(**limits_kwargs(case)))
    await run_case(case, adapter_call(adapter))


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c[0] for c in CASES])
async def test_vector_through_state_manager(name: str, case: dict[str, Any]) -> None:
    manager = ms.StateManager(ms.MemoryStateAdapter(limits=ms.Limits(**limits_kwargs(case))), metrics=True)
    events: list[dict[str, Any]] = []
    manager.on_change(lambda change: events.append(change.to_wire()))
    await run_case(case, adapter_call(manager), events)
