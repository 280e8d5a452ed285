"""Core behaviour beyond the vectors: concurrency, events, observability,
copies, update, deprecations, errors and the public surface."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import pickle
import threading
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.errors import CODES, error_for_code


@pytest.fixture(params=["bare", "managed"])
def state(request: pytest.FixtureRequest) -> Any:
    adapter = ms.MemoryStateAdapter()
    return adapter if request.param == "bare" else ms.StateManager(adapter)


# -- concurrency ---------------------------------------------------------------


async def test_concurrent_increments_return_each_value_once(state: Any) -> None:
    results = await asyncio.gather(*(state.increment("g", "n") for _ in range(100)))
    assert sorted(results) == list(range(1, 101))
    assert await state.get("g", "n") == 100


async def test_concurrent_pushes_keep_every_item(state: Any) -> None:
    await asyncio.gather(*(state.push("g", "q", i) for i in range(100)))
    assert sorted(await state.get("g", "q")) == list(range(100))


async def test_concurrent_cas_loops_count_exactly(state: Any) -> None:
    async def bump() -> None:
        while True:
            current = await state.get("g", "n")
            if await state.compare_and_swap("g", "n", current, (current or 0) + 1):
                return
            await asyncio.sleep(0)

    await asyncio.gather(*(bump() for _ in range(100)))
    assert await state.get("g", "n") == 100


def test_threads_with_their_own_event_loops_share_one_adapter() -> None:
    adapter = ms.MemoryStateAdapter()
    manager = ms.StateManager(adapter)
    got: list[list[int]] = []

    def worker() -> None:
        async def run() -> list[int]:
            out = []
            for _ in range(500):
                out.append(await manager.increment("g", "n"))
                await manager.push("g", "q", 1)
            return out

        got.append(asyncio.run(run()))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v for chunk in got for v in chunk) == list(range(1, 2001))
    assert len(asyncio.run(adapter.get("g", "q"))) == 2000


def test_transactions_from_threads_are_serializable() -> None:
    adapter = ms.MemoryStateAdapter()
    ops = [{"type": "increment", "key": "a"}, {"type": "decrement", "key": "b"}]

    def worker() -> None:
        async def run() -> None:
            for _ in range(300):
                result = await adapter.transaction("g", ops)
                assert result.success
                assert result.results[0] == -result.results[1]

        asyncio.run(run())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert asyncio.run(adapter.get_group("g")) == [900, -900]


def test_runs_under_trio() -> None:
    async def main() -> list[int]:
        manager = ms.StateManager()
        results: list[int] = []

        async def bump() -> None:
            results.append(await manager.increment("g", "n"))

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(bump)
        assert await manager.update("g", "n", lambda n: n * 2) == 100
        return results

    assert sorted(anyio.run(main, backend="trio")) == list(range(1, 51))


# -- copies ----------------------------------------------------------------------


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


# -- update ---------------------------------------------------------------------


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


# -- events ----------------------------------------------------------------------


async def test_sync_and_async_listeners_get_each_change_in_commit_order() -> None:
    manager = ms.StateManager()
    sync_seen: list[tuple[str, str, Any]] = []
    async_seen: list[Any] = []

    async def on_async(change: ms.StateChange) -> None:
        await asyncio.sleep(0)
        async_seen.append(change.new_value)

    manager.on_change(lambda c: sync_seen.append((c.op, c.event, c.new_value)))
    manager.on_change(on_async)
    await asyncio.gather(*(manager.increment("g", "n") for _ in range(50)))
    assert [v for _, _, v in sync_seen] == list(range(1, 51))
    assert async_seen == list(range(1, 51))
    assert sync_seen[0][:2] == ("increment", "created")
    assert {e for _, e, _ in sync_seen[1:]} == {"updated"}


async def test_unsubscribe_stops_events() -> None:
    manager = ms.StateManager()
    seen: list[ms.StateChange] = []
    unsubscribe = manager.on_change(seen.append)
    await manager.set("g", "k", 1)
    unsubscribe()
    await manager.set("g", "k", 2)
    assert [c.new_value for c in seen] == [1]


async def test_a_failing_listener_is_logged_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    manager = ms.StateManager()
    seen: list[Any] = []

    def broken(change: ms.StateChange) -> None:
        raise RuntimeError("listener bug")

    manager.on_change(broken)
    manager.on_change(lambda c: seen.append(c.new_value))
    with caplog.at_level(logging.ERROR, logger="motia_state"):
        assert await manager.set("g", "k", 1) == 1
    assert seen == [1]
    assert "listener bug" in caplog.text


async def test_listeners_cannot_change_stored_values() -> None:
    manager = ms.StateManager()
    manager.on_change(lambda c: c.new_value.append("evil"))
    await manager.set("g", "k", [1])
    assert await manager.get("g", "k") == [1]


async def test_listener_writing_state_does_not_deadlock() -> None:
    manager = ms.StateManager()

    async def mirror(change: ms.StateChange) -> None:
        if change.trace_id == "g":
            await manager.set("mirror", change.key, change.new_value)

    manager.on_change(mirror)
    await manager.set("g", "k", 1)
    assert await manager.get("mirror", "k") == 1


# -- observability -----------------------------------------------------------------


async def test_every_operation_yields_a_record() -> None:
    records: list[ms.OperationRecord] = []
    manager = ms.StateManager(observers=[records.append], metrics=True)
    await manager.set("g", "k", "x")
    with pytest.raises(ms.TypeMismatchError):
        await manager.increment("g", "k")
    await manager.transaction("g", [{"type": "compareAndSwap", "key": "k", "expected": 1, "value": 2}])
    await manager.batch("g", [{"type": "get", "key": "k"}, {"type": "get", "key": "k"}])
    await manager.groups()
    assert [(r.op, r.trace_id, r.key, r.key_count, r.code) for r in records] == [
        ("set", "g", "k", 1, "OK"),
        ("increment", "g", "k", 1, "TYPE_MISMATCH"),
        ("transaction", "g", None, 1, "CONFLICT"),
        ("batch", "g", None, 2, "OK"),
        ("groups", None, None, 0, "OK"),
    ]
    assert all(r.duration >= 0 for r in records)
    assert manager.metrics is not None
    summary = manager.metrics.snapshot()
    assert summary["increment"]["codes"] == {"TYPE_MISMATCH": 1}
    assert summary["set"]["count"] == 1 and summary["set"]["p99"] >= summary["set"]["p50"] > 0


async def test_a_failing_observer_does_not_fail_the_operation(caplog: pytest.LogCaptureFixture) -> None:
    def broken(record: ms.OperationRecord) -> None:
        raise RuntimeError("observer bug")

    manager = ms.StateManager()
    remove = manager.add_observer(broken)
    with caplog.at_level(logging.ERROR, logger="motia_state"):
        assert await manager.increment("g", "n") == 1
    assert "observer bug" in caplog.text
    remove()
    assert await manager.increment("g", "n") == 2


# -- errors and surface ---------------------------------------------------------------


def test_error_classes_match_codes_and_builtin_bases() -> None:
    assert issubclass(ms.TypeMismatchError, TypeError)
    assert issubclass(ms.InvalidArgumentError, ValueError)
    assert issubclass(ms.TimeoutStateError, TimeoutError)
    assert set(CODES) == {
        "INVALID_ARGUMENT", "TYPE_MISMATCH", "CONFLICT", "LIMIT_EXCEEDED", "UNAVAILABLE",
        "NOT_FOUND", "TIMEOUT", "STEP_FAILED", "UPDATE_FAILED", "CURSOR_EXPIRED", "CORRUPT", "INTERNAL",
    }  # fmt: skip
    for code in CODES:
        err = error_for_code(code, "m", extra=1)
        assert err.code == code and isinstance(err, ms.StateError)
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is type(err) and again.details == {"extra": 1}


async def test_error_messages_name_what_was_wrong(state: Any) -> None:
    with pytest.raises(ms.InvalidArgumentError, match="delta must be a finite number, got bool"):
        await state.increment("g", "k", True)
    result = await state.transaction(
        "g",
        [
            {"type": "set", "key": "a", "value": 1},
            {"type": "set", "key": "a", "value": 1},
            {"type": "setField", "key": "k", "field": 3, "value": 1},
        ],
    )
    assert result.failed_index == 2 and result.code == "INVALID_ARGUMENT"
    assert result.error is not None and "$.operations[2].field" in result.error


async def test_closed_adapter_refuses_operations() -> None:
    async with ms.StateManager() as manager:
        await manager.set("g", "k", 1)
    with pytest.raises(ms.UnavailableError):
        await manager.get("g", "k")


def test_public_all_matches_exports() -> None:
    exported = {
        name
        for name in dir(ms)
        if (not name.startswith("_") or name == "__version__") and not inspect.ismodule(getattr(ms, name))
    }
    assert set(ms.__all__) == exported


def test_camel_case_aliases_exist() -> None:
    for name in ("getGroup", "compareAndSwap", "setField", "deleteField", "atomicUpdate"):
        assert callable(getattr(ms.StateManager, name))
        assert callable(getattr(ms.StateAdapter, name))


async def test_adapter_camel_case_aliases_call_the_adapters_own_methods() -> None:
    adapter = ms.MemoryStateAdapter()
    assert await adapter.compareAndSwap("g", "k", None, {"a": 1}) is True
    assert await adapter.setField("g", "k", "b", 2) == {"a": 1, "b": 2}
    assert await adapter.deleteField("g", "k", "a") == {"b": 2}
    assert await adapter.getGroup("g") == [{"b": 2}]
    with pytest.warns(DeprecationWarning):
        assert await adapter.atomicUpdate("g", "n", lambda v: 1) == 1


# -- records, predicates, limits -----------------------------------------------------


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
    adapter = ms.MemoryStateAdapter(limits=ms.Limits(max_result_bytes=1000))
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

    step = Path(__file__).parent.parent / "examples" / "checkout.step.py"
    manager = ms.StateManager()
    outcomes = [
        await call_step_file(step, data={"sku": "book"}, trace_id="t", state=manager, timeout=60) for _ in range(4)
    ]
    assert [o["success"] for o in outcomes] == [True, True, True, False]
    assert (outcomes[3]["code"], outcomes[3]["failedIndex"]) == ("CONFLICT", 0)
    assert await manager.get("stock", "book") == 0
    assert await manager.get("stock", "orders") == ["book"] * 3
