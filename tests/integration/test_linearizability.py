"""The linearizability checker of the guarantees suite, and the suite's short run end to end.

The checker is pinned three ways: hand-written histories whose verdict is
known (the classic anomalies: a lost update, a stale read, an increment
applied twice, a compareAndSwap that succeeds twice), random histories that
are linearizable by construction, and perturbed ones whose verdict a
brute-force checker decides.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

import motia_state as ms
from scripts.guarantee_suite.linearizability import (
    MISSING,
    Operation,
    apply_operation,
    check_history,
    freeze,
    json_equal,
    partitions,
)
from scripts.guarantee_suite.linearizable import Size, record_history

from ..helpers import ON_CI, ROOT


def op(
    process: int,
    name: str,
    key: str | None,
    args: Sequence[Any],
    invoke: int,
    response: int | None,
    result: Any = None,
    error: str | None = None,
    group: str = "g",
) -> Operation:
    return Operation(process, name, group, key, tuple(args), invoke, response, result, error)


def brute_force(history: Sequence[Operation]) -> bool:
    """Linearizable by trying every order that respects real time (and every subset of unknown outcomes)."""
    known = [o for o in history if not o.unknown]
    unknown = [o for o in history if o.unknown]
    for size in range(len(unknown) + 1):
        for taken in itertools.combinations(unknown, size):
            chosen = known + list(taken)
            for order in itertools.permutations(chosen):
                if _respects_real_time(order) and _model_agrees(order):
                    return True
    return False


def _respects_real_time(order: Sequence[Operation]) -> bool:
    # a before b whenever a responded before b was invoked
    for i, later in enumerate(order):
        for earlier in order[i + 1 :]:
            if earlier.response is not None and earlier.response < later.invoke:
                return False
    return True


def _model_agrees(order: Sequence[Operation]) -> bool:
    groups: dict[str, dict[str, Any]] = {}
    for o in order:
        result, error = apply_operation(groups.setdefault(o.group, {}), o)
        if o.unknown:
            continue
        if o.error is not None or error is not None:
            if o.error != error:
                return False
        elif o.name == "transaction":
            if not json_equal(o.result, result):
                return False
        elif not json_equal(o.result, result):
            return False
    return True


# -- the model ---------------------------------------------------------------------


def test_json_equality_and_freezing_follow_the_contract() -> None:
    assert json_equal(1, 1.0) and freeze(1) == freeze(1.0)
    assert not json_equal(True, 1) and freeze(True) != freeze(1)
    assert not json_equal("1", 1) and not json_equal(None, MISSING)
    assert json_equal({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert not json_equal([1, 2], [2, 1]) and not json_equal({"a": 1}, {"a": 1, "b": 2})


@pytest.mark.parametrize(
    ("start", "name", "args", "result", "error", "after"),
    [
        ({}, "get", (), None, None, {}),
        ({"k": None}, "exists", (), True, None, {"k": None}),
        ({}, "increment", (2,), 2, None, {"k": 2}),
        ({"k": None}, "decrement", (3,), -3, None, {"k": -3}),
        ({"k": "x"}, "increment", (1,), None, "TYPE_MISMATCH", {"k": "x"}),
        ({}, "compareAndSwap", (None, 5), True, None, {"k": 5}),
        ({"k": 1}, "compareAndSwap", (1.0, 2), True, None, {"k": 2}),
        ({"k": 1}, "compareAndSwap", (True, 2), False, None, {"k": 1}),
        ({"k": [1]}, "push", (2, 3), [1, 2, 3], None, {"k": [1, 2, 3]}),
        ({"k": [3]}, "unshift", (1, 2), [1, 2, 3], None, {"k": [1, 2, 3]}),
        ({"k": [1, 2]}, "pop", (), 2, None, {"k": [1]}),
        ({"k": [1, 2]}, "shift", (), 1, None, {"k": [2]}),
        ({"k": []}, "pop", (), None, None, {"k": []}),
        ({"k": 7}, "pop", (), None, "TYPE_MISMATCH", {"k": 7}),
        ({"k": 7}, "delete", (), 7, None, {}),
    ],
)
def test_the_sequential_model_follows_the_contract(
    start: dict[str, Any], name: str, args: tuple[Any, ...], result: Any, error: str | None, after: dict[str, Any]
) -> None:
    entries = dict(start)
    assert apply_operation(entries, op(0, name, "k", args, 0, 1)) == (result, error)
    assert entries == after


def test_a_failed_transaction_changes_nothing_and_names_its_index() -> None:
    entries: dict[str, Any] = {"a": 1}
    records = [{"type": "increment", "key": "a"}, {"type": "compareAndSwap", "key": "b", "expected": 9, "value": 1}]
    result, error = apply_operation(entries, op(0, "transaction", None, [records], 0, 1))
    assert error is None and result == {"success": False, "failedIndex": 1, "code": "CONFLICT"}
    assert entries == {"a": 1}
    result, _ = apply_operation(entries, op(0, "transaction", None, [records[:1]], 0, 1))
    assert result == {"success": True, "results": [2]} and entries == {"a": 2}


def test_groups_with_transactions_are_checked_whole_and_others_key_by_key() -> None:
    history = [
        op(0, "increment", "a", [1], 0, 1, 1),
        op(0, "increment", "b", [1], 0, 1, 1),
        op(0, "transaction", None, [[{"type": "increment", "key": "x"}]], 0, 1, group="t"),
        op(0, "get", "y", [], 0, 1, group="t"),
    ]
    assert sorted(partitions(history), key=str) == [("g", "a"), ("g", "b"), ("t", None)]


# -- hand-written histories ----------------------------------------------------------


def test_concurrent_increments_may_return_in_either_order() -> None:
    history = [
        op(1, "increment", "n", [1], 0, 10, 2),
        op(2, "increment", "n", [1], 1, 9, 1),
        op(3, "get", "n", [], 11, 12, 2),
    ]
    assert check_history(history).ok is True


def test_a_lost_update_is_not_linearizable() -> None:
    # Two increments both return 1: one of them was applied to a stale value.
    history = [op(1, "increment", "n", [1], 0, 10, 1), op(2, "increment", "n", [1], 1, 9, 1)]
    verdict = check_history(history)
    assert verdict.ok is False and "key 'n'" in verdict.failures[0]


def test_a_stale_read_is_not_linearizable() -> None:
    history = [
        op(1, "set", "k", ["new"], 0, 5, "new"),
        op(2, "get", "k", [], 6, 8, None),  # the write completed before the read began
    ]
    assert check_history(history, lambda g, k: {}).ok is False
    # overlapping, the same read is fine
    assert check_history([history[0], op(2, "get", "k", [], 4, 8, None)]).ok is True


def test_a_double_applied_increment_is_not_linearizable() -> None:
    history = [
        op(1, "increment", "n", [1], 0, 2, 1),
        op(2, "get", "n", [], 3, 4, 2),  # one increment, read back as two
    ]
    assert check_history(history).ok is False


def test_a_compare_and_swap_cannot_succeed_twice() -> None:
    history = [
        op(1, "compareAndSwap", "c", [None, "p1"], 0, 10, True),
        op(2, "compareAndSwap", "c", [None, "p2"], 0, 10, True),
    ]
    assert check_history(history).ok is False
    assert check_history([history[0], op(2, "compareAndSwap", "c", [None, "p2"], 0, 10, False)]).ok is True


def test_an_item_popped_twice_is_not_linearizable() -> None:
    history = [
        op(0, "push", "q", ["x"], 0, 1, ["x"]),
        op(1, "pop", "q", [], 2, 5, "x"),
        op(2, "shift", "q", [], 2, 5, "x"),
    ]
    assert check_history(history).ok is False


def test_an_unknown_outcome_may_or_may_not_have_taken_effect() -> None:
    crashed = op(1, "increment", "n", [5], 0, None)
    assert check_history([crashed, op(2, "get", "n", [], 10, 11, 5)]).ok is True
    assert check_history([crashed, op(2, "get", "n", [], 10, 11, None)]).ok is True
    assert check_history([crashed, op(2, "get", "n", [], 10, 11, 3)]).ok is False
    # once invoked it may take effect any time later, but never before
    assert check_history([op(2, "get", "n", [], 0, 1, 5), op(1, "increment", "n", [5], 2, None)]).ok is False


def test_a_torn_transaction_is_not_linearizable() -> None:
    move = [{"type": "decrement", "key": "a"}, {"type": "increment", "key": "b"}]
    history = [
        op(1, "transaction", None, [move], 0, 10, {"success": True, "results": [-1, 1]}),
        op(2, "get", "a", [], 2, 3, -1),
        op(3, "get", "b", [], 4, 5, None),  # read after a's change was seen: b must be 1 too
    ]
    assert check_history(history).ok is False
    history[2] = op(3, "get", "b", [], 4, 5, 1)
    assert check_history(history).ok is True


def test_an_error_must_be_the_one_the_model_raises() -> None:
    history = [op(0, "set", "k", ["text"], 0, 1, "text"), op(1, "increment", "k", [1], 2, 3, error="TYPE_MISMATCH")]
    assert check_history(history).ok is True
    history[1] = op(1, "increment", "k", [1], 2, 3, error="CONFLICT")
    assert check_history(history).ok is False


def test_a_search_past_its_budget_is_undecided_not_guessed() -> None:
    # Many overlapping increments all returning the same value: the search must explore before it can refute.
    history = [op(p, "increment", "n", [1], 0, 100, 1) for p in range(12)]
    verdict = check_history(history, budget=5)
    assert verdict.ok is None and "undecided" in verdict.failures[0]


# -- random histories ------------------------------------------------------------------


def random_sequential(
    rng: random.Random, count: int, keys: Sequence[str], transactions: bool, overlap: bool = True
) -> list[Operation]:
    """A history built from a sequential run: each operation's interval holds its linearization point.

    With ``overlap`` the intervals stretch around their points at random and
    some responses are lost (unknown outcomes); without it the history is
    the sequential run itself.
    """
    entries: dict[str, Any] = {}
    history = []
    for i in range(count):
        key = rng.choice(keys)
        choice = rng.randrange(9 if transactions else 8)
        if choice == 0:
            name, args = "get", ()
        elif choice == 1:
            name, args = "set", (rng.randrange(4),)
        elif choice == 2:
            name, args = "increment", (rng.randrange(1, 3),)
        elif choice == 3:
            name, args = "compareAndSwap", (rng.choice([None, 0, 1, 2, 3]), rng.randrange(4))
        elif choice == 4:
            name, args = "delete", ()
        elif choice == 5:
            name, args = "push", (rng.randrange(10),)
        elif choice == 6:
            name, args = rng.choice(["pop", "shift"]), ()
        elif choice == 7:
            name, args = "decrement", (1,)
        else:
            name, args = (
                "transaction",
                (
                    [
                        {"type": "increment", "key": rng.choice(keys)},
                        {"type": "compareAndSwap", "key": rng.choice(keys), "expected": rng.randrange(3), "value": 0},
                    ],
                ),
            )
        point = i * 10
        probe = op(0, name, None if name == "transaction" else key, args, 0, 0)
        result, error = apply_operation(entries, probe)
        spread = rng.choice([0, 5, 15, 40]) if overlap else 0
        invoke = point - rng.randint(0, spread)
        response = point + rng.randint(0, spread) if not overlap or rng.random() > 0.05 else None
        history.append(Operation(i % 4, name, "g", probe.key, args, invoke, response, None if error else result, error))
    return history


def perturb(rng: random.Random, history: list[Operation]) -> list[Operation]:
    """The same history with one known result changed."""
    candidates = [i for i, o in enumerate(history) if not o.unknown and o.error is None]
    i = rng.choice(candidates)
    o = history[i]
    if o.name == "transaction":
        new: Any = {"success": not o.result["success"], "results": [], "failedIndex": 0, "code": "CONFLICT"}
    elif isinstance(o.result, bool):
        new = not o.result
    elif isinstance(o.result, int) and not isinstance(o.result, bool):
        new = o.result + rng.choice([-1, 1])
    elif isinstance(o.result, list):
        new = [*o.result, 99]
    else:
        new = rng.choice([0, 1, 2, 3, 9]) if o.result is None else None
    changed = list(history)
    changed[i] = Operation(o.process, o.name, o.group, o.key, o.args, o.invoke, o.response, new, None)
    return changed


@pytest.mark.parametrize("transactions", [False, True], ids=["single-ops", "with-transactions"])
def test_histories_of_a_sequential_run_with_overlap_are_linearizable(transactions: bool) -> None:
    rng = random.Random(f"linear-{transactions}")
    start = time.monotonic()
    for _ in range(60):
        history = random_sequential(rng, rng.randrange(20, 200), ["a", "b", "c"], transactions)
        verdict = check_history(history)
        assert verdict.ok is True, verdict.failures
    # CPU-bound, so a loaded machine slows it several times; a search that
    # went exponential would still take far longer than this bound.
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("transactions", [False, True], ids=["single-ops", "with-transactions"])
def test_perturbed_histories_get_the_brute_force_verdict(transactions: bool) -> None:
    rng = random.Random(f"perturbed-{transactions}")
    refuted = 0
    for _ in range(150):
        history = perturb(rng, random_sequential(rng, rng.randrange(3, 7), ["a", "b"], transactions))
        expected = brute_force(history)
        assert check_history(history).ok is expected, history
        refuted += not expected
    assert refuted > 50, "the perturbations should mostly break linearizability"


@pytest.mark.parametrize("transactions", [False, True], ids=["single-ops", "with-transactions"])
def test_any_changed_result_of_a_long_sequential_history_is_caught(transactions: bool) -> None:
    # Without overlap the order is fixed, so a result that differs from the model's is always wrong.
    rng = random.Random(f"long-{transactions}")
    for _ in range(20):
        history = random_sequential(rng, 300, ["a", "b"], transactions, overlap=False)
        assert check_history(history).ok is True
        verdict = check_history(perturb(rng, history))
        assert verdict.ok is False, "a changed result went unnoticed"


# -- the guarantees suite, short run, end to end ------------------------------------------


@pytest.fixture(scope="module")
def short_run() -> tuple[int, str, list[dict[str, str]]]:
    """``python -m scripts.guarantee_suite --short``: exit code, output, and the table's rows."""
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.guarantee_suite", "--short"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[1:]]
    return proc.returncode, proc.stdout + proc.stderr, rows


@pytest.mark.slow
def test_the_short_guarantees_run_loses_nothing(short_run: tuple[int, str, list[dict[str, str]]]) -> None:
    code, output, rows = short_run
    where = {(r["section"], r["where"]) for r in rows}
    for adapter in ("memory", "file", "redis"):
        assert ("linearizable", adapter) in where, output
    assert sum(r["section"] == "crash" for r in rows) == 4, output
    assert ("redis", "appendfsync always") in where, output
    assert {("change feed", "file"), ("change feed", "redis")} <= where, output
    for row in rows:
        if row["section"] == "fuzz" or row["tried"] == "TODO":
            continue
        if row["lost"] == "skipped":
            assert not ON_CI, f"CI=true: a missing tool is a failure, not a skip: {row}"
            continue
        assert row["lost"] == "0", f"{row}\n{output}"
    if ON_CI:
        assert all("python, node, ruby" in r["tried"] for r in rows if r["section"] == "linearizable"), output
    assert code == (1 if any(r["lost"] not in ("0", "-", "skipped") for r in rows) else 0), output


@pytest.mark.slow
def test_the_short_fuzz_run_reports_every_damaged_record(short_run: tuple[int, str, list[dict[str, str]]]) -> None:
    _, output, rows = short_run
    fuzz = [r for r in rows if r["section"] == "fuzz"]
    assert len(fuzz) == 2, output
    for row in fuzz:
        assert row["lost"] == "0", f"{row}\n{output}"


class RacyStateManager(ms.StateManager):
    """A broken store: increment as a read, a pause, then a write (updates can be lost)."""

    async def increment(self, trace_id: str, key: str, delta: int | float = 1) -> int | float:
        current = await self.get(trace_id, key)
        await anyio.sleep(0.002)
        return await self.set(trace_id, key, (current or 0) + delta)  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize(("manager", "linearizable"), [(ms.StateManager, True), (RacyStateManager, False)])
def test_histories_recorded_from_workers_expose_a_racy_store(
    manager: type[ms.StateManager], linearizable: bool
) -> None:
    async def record() -> list[Operation]:
        history, outside = await record_history(manager(), ["python"], Size(2, 40, lanes_per_language=3), "t", "racy")
        assert outside == 0, "the workers' clock is not the parent's"
        return history

    history = anyio.run(record)
    assert len(history) == 240
    assert check_history(history).ok is linearizable
