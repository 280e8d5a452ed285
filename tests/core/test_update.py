"""``update``: the read-modify-write operation, sync and async fns, and its deprecated alias."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import motia_state as ms


async def test_update_stores_the_function_result(state: Any) -> None:
    assert await state.update("g", "k", lambda v: (v or 0) + 1) == 1
    assert await state.update("g", "k", lambda v: {"was": v}) == {"was": 1}


async def test_update_with_an_async_function(state: Any) -> None:
    async def add(v: Any) -> int:
        await asyncio.sleep(0)
        return (v or 0) + 1

    results = await asyncio.gather(*(state.update("g", "k", add) for _ in range(20)))
    assert sorted(results) == list(range(1, 21))


async def test_update_that_raises_stores_nothing(state: Any) -> None:
    await state.set("g", "k", 1)

    def boom(v: Any) -> Any:
        raise RuntimeError("nope")

    with pytest.raises(RuntimeError):
        await state.update("g", "k", boom)
    assert await state.get("g", "k") == 1


async def test_update_returning_non_json_is_invalid(state: Any) -> None:
    with pytest.raises(ms.InvalidArgumentError):
        await state.update("g", "k", lambda v: object())
    assert not await state.exists("g", "k")


async def test_update_function_sees_a_copy(state: Any) -> None:
    await state.set("g", "k", [1])

    def mutate(v: list[int]) -> list[int]:
        v.append(2)
        raise ValueError("changed my mind")

    with pytest.raises(ValueError):
        await state.update("g", "k", mutate)
    assert await state.get("g", "k") == [1]


async def test_update_records_in_a_transaction() -> None:
    adapter = ms.MemoryStateAdapter()
    result = await adapter.transaction(
        "g",
        [
            {"type": "set", "key": "k", "value": 2},
            {"type": "update", "key": "k", "updateFn": lambda v: v * 10},
            ms.StateOperation(type="increment", key="k", delta=1),
        ],
    )
    assert result.success and result.results == [2, 20, 21]


async def test_transaction_accepts_operation_structs() -> None:
    adapter = ms.MemoryStateAdapter()
    result = await adapter.transaction(
        "g",
        [
            ms.StateOperation(type="compareAndSwap", key="k", expected=None, new_value=1),
            ms.BatchOperation(type="push", key="q", items=[1, 2]),
        ],
    )
    assert result.success and result.results == [True, [1, 2]]


async def test_atomic_update_is_deprecated(state: Any) -> None:
    with pytest.warns(DeprecationWarning, match="use update"):
        assert await state.atomic_update("g", "k", lambda v: 5) == 5
    with pytest.warns(DeprecationWarning):
        await ms.StateManager().atomicUpdate("g", "k", lambda v: 1)
