"""The shared conformance vectors on every in-process adapter, bare and managed.

The file adapter runs them a third time, reopening the store between steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import motia_state as ms

from .conformance import adapter_call, limits_kwargs, load_cases, run_case
from .helpers import RedisServer

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


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c[0] for c in CASES])
async def test_vector_on_bare_file_adapter(name: str, case: dict[str, Any], tmp_path: Path) -> None:
    adapter = ms.FileStateAdapter(tmp_path / "s", fsync="never", limits=ms.Limits(**limits_kwargs(case)))
    try:
        await run_case(case, adapter_call(adapter))
    finally:
        await adapter.close()


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c[0] for c in CASES])
async def test_vector_on_file_adapter_through_state_manager(name: str, case: dict[str, Any], tmp_path: Path) -> None:
    adapter = ms.FileStateAdapter(tmp_path / "s", fsync="always", limits=ms.Limits(**limits_kwargs(case)))
    manager = ms.StateManager(adapter, metrics=True)
    events: list[dict[str, Any]] = []
    manager.on_change(lambda change: events.append(change.to_wire()))
    try:
        await run_case(case, adapter_call(manager), events)
    finally:
        await manager.close()


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c[0] for c in CASES])
async def test_vector_on_file_adapter_reopened_between_steps(name: str, case: dict[str, Any], tmp_path: Path) -> None:
    """Every step runs on a freshly opened store: what each op wrote is on disk."""
    limits = ms.Limits(**limits_kwargs(case))

    async def call(op: str, args: dict[str, Any]) -> Any:
        adapter = ms.FileStateAdapter(tmp_path / "s", fsync="never", limits=limits)
        try:
            return await adapter_call(adapter)(op, args)
        finally:
            await adapter.close()

    await run_case(case, call)


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c[0] for c in CASES])
async def test_vector_on_bare_redis_adapter(
    name: str, case: dict[str, Any], redis_server: RedisServer, redis_prefix: str
) -> None:
    adapter = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, limits=ms.Limits(**limits_kwargs(case)))
    try:
        await run_case(case, adapter_call(adapter))
    finally:
        await adapter.close()


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c[0] for c in CASES])
async def test_vector_on_redis_through_state_manager(
    name: str, case: dict[str, Any], redis_server: RedisServer, redis_prefix: str
) -> None:
    adapter = ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, limits=ms.Limits(**limits_kwargs(case)))
    manager = ms.StateManager(adapter, metrics=True)
    events: list[dict[str, Any]] = []
    manager.on_change(lambda change: events.append(change.to_wire()))
    try:
        await run_case(case, adapter_call(manager), events)
    finally:
        await manager.close()
