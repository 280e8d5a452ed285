"""Operation records, check guards, predicates and limits beyond the vectors."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import motia_state as ms


async def test_a_stray_record_field_is_refused_naming_it(state: Any) -> None:
    result = await state.transaction("g", [{"type": "set", "key": "k", "value": 1, "delat": 2}])
    assert result.code == "INVALID_ARGUMENT" and result.failed_index == 0
    assert "delat" in (result.error or "")
    batch = await state.batch("g", [{"type": "increment", "key": "n", "by": 2}])
    assert batch.results[0].code == "INVALID_ARGUMENT" and "by" in (batch.results[0].error or "")
    assert await state.keys("g") == []


async def test_result_wire_shapes(state: Any) -> None:
    batch = await state.batch("g", [{"type": "get", "key": "none", "id": 1}, {"type": "pop", "key": "none"}])
    items = [{"type": "set", "key": "s", "value": "x"}, {"type": "push", "key": "s", "items": [1]}]
    wrong = await state.batch("g", items)
    assert batch.to_wire() == {"results": [{"id": 1, "value": None}, {"value": None}]}
    assert wrong.to_wire()["results"][1] == {"error": wrong.results[1].error, "code": "TYPE_MISMATCH"}
    assert wrong.results[1].value is None
    ok = await state.transaction("g", [{"type": "get", "key": "s"}])
    assert ok.to_wire() == {"success": True, "results": ["x"]} and ok.exception is None


async def test_operation_structs_are_strict_too(state: Any) -> None:
    result = await state.transaction("g", [ms.StateOperation(type="get", key="k", value=1)])
    assert result.code == "INVALID_ARGUMENT" and "value" in (result.error or "")
    ok = await state.transaction(
        "g",
        [
            ms.StateOperation(type="increment", key="n", value=7),
            ms.StateOperation(type="check", key="n", predicate={"op": "eq", "value": 7}),
        ],
    )
    assert ok.code == "INVALID_ARGUMENT" and "predicate" in (ok.error or "")


async def test_a_check_guards_a_transaction_with_conflict(state: Any) -> None:
    await state.set("shop", "stock", 1)
    sell = [
        {"type": "check", "key": "stock", "op": "gte", "value": 1},
        {"type": "decrement", "key": "stock"},
        {"type": "push", "key": "orders", "items": ["o"]},
    ]
    assert (await state.transaction("shop", sell)).results == [True, 0, ["o"]]
    refused = await state.transaction("shop", sell)
    assert (refused.success, refused.code, refused.failed_index) == (False, "CONFLICT", 0)
    assert "check" in (refused.error or "")
    assert await state.get("shop", "stock") == 0 and await state.get("shop", "orders") == ["o"]


def test_predicates_parse_to_one_normal_form() -> None:
    from motia_state.predicates import parse_predicate, predicate_holds

    assert parse_predicate({"op": "isNull", "value": 5}) == {"op": "isNull", "path": ""}
    assert parse_predicate({"not": {"op": "eq", "value": 1, "path": "/a"}}) == {
        "not": {"op": "eq", "value": 1, "path": "/a"}
    }
    filt = parse_predicate({"op": "eq", "value": 1, "valueKey": "a/b"}, filter_fields=True)
    assert filt == {"op": "eq", "value": 1, "path": "/a~1b"}
    assert predicate_holds(filt, {"a/b": 1.0}) is True
    assert predicate_holds({"op": "missing", "path": ""}, None, present=False) is True
    with pytest.raises(ms.InvalidArgumentError, match="valueKey"):
        parse_predicate({"op": "eq", "value": 1, "valueKey": "a"})
    deep: dict[str, Any] = {"op": "exists"}
    for _ in range(300):
        deep = {"not": deep}
    with pytest.raises(ms.LimitExceededError):
        parse_predicate(deep)


async def test_deep_and_cyclic_values_are_refused_without_recursion(state: Any) -> None:
    deep: Any = 0
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ms.LimitExceededError, match="256 levels"):
        await state.set("g", "k", deep)
    cyclic: dict[str, Any] = {"a": [1]}
    cyclic["a"].append(cyclic)
    with pytest.raises(ms.InvalidArgumentError, match="contains itself"):
        await state.set("g", "k", cyclic)
    shared = [1, 2]
    assert await state.set("g", "k", [shared, {"again": shared}]) == [[1, 2], {"again": [1, 2]}]
    assert await state.compare_and_swap("g", "k", [[1, 2], {"again": [1, 2]}], 1) is True


async def test_a_huge_int_plus_a_float_is_limit_exceeded_and_a_batch_goes_on(state: Any) -> None:
    await state.set("g", "h", 10**400)
    with pytest.raises(ms.LimitExceededError):
        await state.increment("g", "h", 0.5)
    with pytest.raises(ms.LimitExceededError):
        await state.decrement("g", "h", 0.5)
    result = await state.batch(
        "g", [{"type": "increment", "key": "h", "delta": 0.5}, {"type": "set", "key": "after", "value": 1}]
    )
    assert [r.code for r in result.results] == ["LIMIT_EXCEEDED", None]
    assert await state.get("g", "h") == 10**400 and await state.get("g", "after") == 1


async def test_results_over_the_limit_are_refused_before_anything_is_stored() -> None:
    adapter = ms.MemoryStateAdapter(limits=ms.Limits(max_value_bytes=900, max_result_bytes=1000))
    manager = ms.StateManager(adapter)
    seen: list[str] = []
    manager.on_change(lambda c: seen.append(c.key))
    await manager.set("g", "big", "x" * 600)
    seen.clear()
    reads = [{"type": "set", "key": "n", "value": 1}, {"type": "get", "key": "big"}, {"type": "get", "key": "big"}]
    with pytest.raises(ms.LimitExceededError, match="1000 bytes"):
        await manager.transaction("g", reads)
    with pytest.raises(ms.LimitExceededError, match="1000 bytes"):
        await manager.batch("g", reads)
    assert await manager.keys("g") == ["big"] and seen == []
    assert (await manager.transaction("g", reads[:2])).success


def test_reserved_groups_are_hidden_from_groups() -> None:
    from motia_state.adapters.table import StateTable

    table = StateTable(ms.Limits())
    table.write("__motia/triggers", "position", "ops", 1)
    table.write("g", "k", "set", 1)
    assert table.groups() == ["g"]


async def test_a_long_transaction_costs_linear_time(state: Any) -> None:
    """10,000 setFields on one object: each record's result is checked and copied once at the end.

    A version that copies and re-encodes the growing value per record takes
    seconds here (quadratic); the bound leaves a wide margin on a slow machine.
    """
    records = [{"type": "setField", "key": "o", "field": f"f{i}", "value": i} for i in range(10_000)]
    start = anyio.current_time()
    result = await state.transaction("g", [{"type": "setField", "key": "o", "field": "x", "value": 0}])
    assert result.success
    with pytest.raises(ms.LimitExceededError):
        await state.transaction("g", records)  # 10,000 growing objects as results: far over 15 MiB
    assert anyio.current_time() - start < 3.0
    pushes = [{"type": "push", "key": "l", "items": [i]} for i in range(2_000)]
    start = anyio.current_time()
    assert (await state.transaction("g", pushes)).results[-1] == list(range(2_000))
    assert anyio.current_time() - start < 3.0


async def test_a_slow_listener_holds_an_operation_only_for_the_events_committed_before_it() -> None:
    """Events committed after an operation are never delivered on its time.

    Writes through the bare adapter keep queueing events (one a millisecond)
    for a listener that takes 20 ms each: an increment waits for the backlog
    ahead of it and returns, instead of serving the growing queue forever.
    """
    manager = ms.StateManager()

    async def slow(change: ms.StateChange) -> None:
        await anyio.sleep(0.02)

    manager.on_change(slow)
    done = anyio.Event()

    async def writer() -> None:
        while not done.is_set():
            await manager.adapter.set("g", "w", 1)
            await anyio.sleep(0.001)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await anyio.sleep(0.01)
            start = anyio.current_time()
            await manager.increment("g", "n")
            elapsed = anyio.current_time() - start
            done.set()
    assert elapsed < 2.0


async def test_the_checkout_example_refuses_to_oversell() -> None:
    from pathlib import Path

    from motia_state.runtime import call_step_file

    step = Path(__file__).resolve().parents[2] / "examples" / "checkout.step.py"
    manager = ms.StateManager()
    outcomes = [
        await call_step_file(step, data={"sku": "book"}, trace_id="t", state=manager, timeout=60) for _ in range(4)
    ]
    assert [o["success"] for o in outcomes] == [True, True, True, False]
    assert (outcomes[3]["code"], outcomes[3]["failedIndex"]) == ("CONFLICT", 0)
    assert await manager.get("stock", "book") == 0
    assert await manager.get("stock", "orders") == ["book"] * 3
