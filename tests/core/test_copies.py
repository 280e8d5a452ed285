"""State holds copies: nothing a caller keeps can change what is stored."""

from __future__ import annotations

import math
from typing import Any

import pytest

import motia_state as ms


async def test_set_stores_a_copy(state: Any) -> None:
    value = {"a": [1, 2]}
    await state.set("g", "k", value)
    value["a"].append(3)
    assert await state.get("g", "k") == {"a": [1, 2]}


async def test_get_returns_a_copy(state: Any) -> None:
    await state.set("g", "k", {"a": [1]})
    got = await state.get("g", "k")
    got["a"].append(2)
    assert await state.get("g", "k") == {"a": [1]}
    group = await state.get_group("g")
    group[0]["a"].clear()
    assert await state.get("g", "k") == {"a": [1]}


async def test_push_result_and_items_are_copies(state: Any) -> None:
    item = {"n": 1}
    result = await state.push("g", "q", item)
    item["n"] = 2
    result[0]["n"] = 3
    assert await state.get("g", "q") == [{"n": 1}]


async def test_tuples_are_stored_as_arrays(state: Any) -> None:
    assert await state.set("g", "k", (1, (2, 3))) == [1, [2, 3]]


@pytest.mark.parametrize("bad", [object(), math.nan, math.inf, {1: "int key"}, {"a": {1, 2}}, b"bytes"])
async def test_non_json_values_are_invalid_and_store_nothing(state: Any, bad: Any) -> None:
    with pytest.raises(ms.InvalidArgumentError):
        await state.set("g", "k", bad)
    assert not await state.exists("g", "k")
