"""The shared conformance vectors on every in-process adapter, bare and managed.

The file adapter runs them a third time, reopening the store between steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import motia_state as ms

from ..conformance import adapter_call, limits_kwargs, load_cases, redis_params, run_case
from ..helpers import RedisClusterServers, RedisServer

CASES = load_cases()


async def run_bare(adapter: ms.StateAdapter, case: dict[str, Any]) -> None:
    """The case straight on the adapter, then close it."""
    try:
        await run_case(case, adapter_call(adapter))
    finally:
        await adapter.close()


async def run_managed(adapter: ms.StateAdapter, case: dict[str, Any]) -> None:
    """The case through a StateManager over the adapter, checking its change events."""
    manager = ms.StateManager(adapter, metrics=True)
    events: list[dict[str, Any]] = []
    manager.on_change(lambda change: events.append(change.to_wire()))
    try:
        await run_case(case, adapter_call(manager), events)
    finally:
        await manager.close()


def limits(case: dict[str, Any]) -> ms.Limits:
    return ms.Limits(**limits_kwargs(case))


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c[0] for c in CASES])
async def test_vector_on_bare_memory_adapter(name: str, case: dict[str, Any]) -> None:
    await run_bare(ms.MemoryStateAdapter(limits=limits(case)), case)


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c[0] for c in CASES])
async def test_vector_through_state_manager(name: str, case: dict[str, Any]) -> None:
    await run_managed(ms.MemoryStateAdapter(limits=limits(case)), case)


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c[0] for c in CASES])
async def test_vector_on_bare_file_adapter(name: str, case: dict[str, Any], tmp_path: Path) -> None:
    await run_bare(ms.FileStateAdapter(tmp_path / "s", fsync="never", limits=limits(case)), case)


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c[0] for c in CASES])
async def test_vector_on_file_adapter_through_state_manager(name: str, case: dict[str, Any], tmp_path: Path) -> None:
    await run_managed(ms.FileStateAdapter(tmp_path / "s", fsync="always", limits=limits(case)), case)


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c[0] for c in CASES])
async def test_vector_on_file_adapter_reopened_between_steps(name: str, case: dict[str, Any], tmp_path: Path) -> None:
    """Every step runs on a freshly opened store: what each op wrote is on disk."""

    async def call(op: str, args: dict[str, Any]) -> Any:
        adapter = ms.FileStateAdapter(tmp_path / "s", fsync="never", limits=limits(case))
        try:
            return await adapter_call(adapter)(op, args)
        finally:
            await adapter.close()

    await run_case(case, call)


@pytest.mark.parametrize(("name", "case"), redis_params(CASES))
async def test_vector_on_bare_redis_adapter(
    name: str, case: dict[str, Any], redis_server: RedisServer, redis_prefix: str
) -> None:
    await run_bare(ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, limits=limits(case)), case)


@pytest.mark.parametrize(("name", "case"), redis_params(CASES))
async def test_vector_on_redis_through_state_manager(
    name: str, case: dict[str, Any], redis_server: RedisServer, redis_prefix: str
) -> None:
    await run_managed(ms.RedisStateAdapter(redis_server.url, key_prefix=redis_prefix, limits=limits(case)), case)


@pytest.mark.parametrize(("name", "case"), redis_params(CASES))
async def test_vector_on_redis_cluster_through_state_manager(
    name: str, case: dict[str, Any], redis_cluster: RedisClusterServers, redis_prefix: str
) -> None:
    from redis.asyncio import RedisCluster

    client = RedisCluster(host="127.0.0.1", port=redis_cluster.port)
    await run_managed(ms.RedisStateAdapter(client=client, key_prefix=redis_prefix, limits=limits(case)), case)
