"""The shared conformance vectors (tests/vectors/*.json) and how to run them.

A case is a sequence of steps on fresh state. Each step names an operation
(the RPC method without ``state.``), its arguments in the wire shape, and
either the expected ``result`` or the expected error ``code``; optionally
the change ``events`` it must fire. ``final`` is the whole state afterwards.
Cases may set ``limits`` (camelCase names) and ``exactIntegers`` (needs
integers past 2^53: runtimes without exact integers skip those cases).

This module is used by every runner: the Python adapters directly, and the
Python, Node and Ruby workers through the RPC parent.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).parent / "vectors"

LIMIT_NAMES = {
    "maxNameBytes": "max_name_bytes",
    "maxValueBytes": "max_value_bytes",
    "maxOperations": "max_operations",
    "maxDepth": "max_depth",
    "maxResultBytes": "max_result_bytes",
    "maxRecordsBytes": "max_records_bytes",
}


def load_cases() -> list[tuple[str, dict[str, Any]]]:
    """Every case as ``(file:name, case)``."""
    cases = []
    for path in sorted(VECTORS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for case in data["cases"]:
            cases.append((f"{path.stem}:{case['name']}", case))
    return cases


#: Vectors the Redis adapter does not hold yet, expected to fail on Redis
#: only (none at present): file stem -> why, and "stem:case name" -> why.
#: Remove an entry once Redis holds the rule (the marks are not strict, so
#: one that starts passing fails nothing).
REDIS_PENDING_FILES: dict[str, str] = {}
REDIS_PENDING: dict[str, str] = {}


def redis_params(cases: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """``cases`` as pytest params for a Redis runner, the pending ones marked expected-to-fail."""
    import pytest

    params = []
    for name, case in cases:
        reason = REDIS_PENDING.get(name) or REDIS_PENDING_FILES.get(name.partition(":")[0])
        marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
        params.append(pytest.param(name, case, id=name, marks=marks))
    return params


def limits_kwargs(case: dict[str, Any]) -> dict[str, int]:
    """The case's limits as ``motia_state.Limits`` keyword arguments."""
    return {LIMIT_NAMES[k]: v for k, v in case.get("limits", {}).items()}


#: JavaScript has one number type: 1.0 travels as 1. Through a Node worker
#: numbers are compared by value (booleans stay apart from numbers); cases
#: marked ``exactIntegers`` (past 2^53) are not run there at all.
JS_NUMBERS: ContextVar[bool] = ContextVar("JS_NUMBERS", default=False)


def same(a: Any, b: Any) -> bool:
    """Strict JSON sameness: bool, int and float are told apart."""
    if type(a) is not type(b):
        numbers = (int, float)
        if (
            JS_NUMBERS.get()
            and isinstance(a, numbers)
            and isinstance(b, numbers)
            and not isinstance(a, bool)
            and not isinstance(b, bool)
        ):
            return bool(a == b)
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    return bool(a == b)


def check_result(op: str, expected: Any, actual: Any) -> None:
    """Compare a result; error messages are free text and only checked to exist."""
    if op == "transaction" and isinstance(expected, dict) and expected.get("success") is False:
        assert isinstance(actual, dict) and actual.get("success") is False, actual
        assert isinstance(actual.get("error"), str) and actual["error"], actual
        rest = {k: v for k, v in actual.items() if k != "error"}
        assert same(expected, rest), f"expected {expected!r}, got {actual!r}"
        return
    if op == "batch" and isinstance(expected, dict):
        assert isinstance(actual, dict) and len(actual["results"]) == len(expected["results"]), actual
        for want, got in zip(expected["results"], actual["results"]):
            if "code" in want:
                assert isinstance(got.get("error"), str) and got["error"], got
                got = {k: v for k, v in got.items() if k != "error"}
            assert same(want, got), f"expected {want!r}, got {got!r}"
        return
    assert same(expected, actual), f"{op}: expected {expected!r}, got {actual!r}"


Call = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""``call(op, args) -> result``; raises an error carrying ``.code``."""


async def run_case(
    case: dict[str, Any],
    call: Call,
    events: list[dict[str, Any]] | None = None,
    *,
    check: bool = True,
) -> None:
    """Run one case through ``call``; check events too when a list is given.

    ``events`` is filled by the runner's change listener (wire shape);
    it is compared and emptied after every step that names its events.
    """
    for i, step in enumerate(case["steps"]):
        op, args = step["op"], step["args"]
        where = f"step {i} ({op} {json.dumps(args)[:120]})"
        if "error" in step:
            try:
                result = await call(op, args)
            except Exception as e:  # every runtime raises its own error type
                code = getattr(e, "code", None)
                assert code == step["error"], f"{where}: expected {step['error']}, got {code}: {e}"
            else:
                raise AssertionError(f"{where}: expected {step['error']}, got result {result!r}")
        else:
            try:
                result = await call(op, args)
            except Exception as e:
                raise AssertionError(f"{where}: unexpected {getattr(e, 'code', type(e).__name__)}: {e}") from e
            try:
                check_result(op, step["result"], result)
            except AssertionError as e:
                raise AssertionError(f"{where}: {e}") from None
        if events is not None:
            if "events" in step:
                assert same(step["events"], events), f"{where}: expected events {step['events']!r}, got {events!r}"
            events.clear()
    if check:
        await check_final(case["final"], call)


async def check_final(final: dict[str, dict[str, Any]], call: Call) -> None:
    """The whole state equals ``final``: groups, keys and values."""
    groups = await call("groups", {})
    assert groups == sorted(final), f"final groups: expected {sorted(final)!r}, got {groups!r}"
    for group, entries in final.items():
        keys = await call("keys", {"traceId": group})
        assert keys == sorted(entries), f"final keys of {group!r}: expected {sorted(entries)!r}, got {keys!r}"
        for key, value in entries.items():
            got = await call("get", {"traceId": group, "key": key})
            assert same(value, got), f"final {group!r}/{key!r}: expected {value!r}, got {got!r}"


def adapter_call(target: Any) -> Call:
    """A ``call`` over a Python adapter or StateManager (snake_case methods)."""

    async def call(op: str, a: dict[str, Any]) -> Any:
        t, k = a.get("traceId"), a.get("key")
        if op in ("get", "delete", "exists", "pop", "shift"):
            return await getattr(target, op)(t, k)
        if op == "set":
            return await target.set(t, k, a["value"])
        if op in ("increment", "decrement"):
            if "delta" in a:
                return await getattr(target, op)(t, k, a["delta"])
            return await getattr(target, op)(t, k)
        if op == "compareAndSwap":
            return await target.compare_and_swap(t, k, a["expected"], a["newValue"])
        if op in ("push", "unshift"):
            return await getattr(target, op)(t, k, *a["items"])
        if op == "setField":
            return await target.set_field(t, k, a["field"], a["value"])
        if op == "deleteField":
            return await target.delete_field(t, k, a["field"])
        if op == "getGroup":
            return await target.get_group(a["groupId"])
        if op in ("keys", "clear"):
            return await getattr(target, op)(t)
        if op == "groups":
            return await target.groups()
        if op in ("transaction", "batch"):
            return (await getattr(target, op)(t, a["operations"])).to_wire()
        raise AssertionError(f"unknown vector op {op!r}")

    return call


class RecordedError(Exception):
    """An error code recorded by a worker, replayed as an exception."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def check_recorded(case: dict[str, Any], recorded: dict[str, Any], *, js_numbers: bool = False) -> None:
    """Check what a worker recorded for ``case`` (see tests/steps/vectors.step.*).

    ``recorded`` holds ``steps`` (each ``{result}`` or ``{error, message}``)
    and the state read back at the end (``groups`` and ``final``).
    ``js_numbers`` compares numbers by value (see :data:`JS_NUMBERS`).
    """
    token = JS_NUMBERS.set(js_numbers)
    try:
        await _check_recorded(case, recorded)
    finally:
        JS_NUMBERS.reset(token)


async def _check_recorded(case: dict[str, Any], recorded: dict[str, Any]) -> None:
    outcomes = iter(recorded["steps"])

    async def replay(op: str, args: dict[str, Any]) -> Any:
        outcome = next(outcomes)
        if "error" in outcome:
            raise RecordedError(outcome["error"], outcome.get("message", ""))
        return outcome["result"]

    values: dict[tuple[str, str], Any] = {}
    for group, entries in recorded["final"].items():
        for key, value in zip(entries["keys"], entries["values"]):
            values[(group, key)] = value

    async def final_call(op: str, args: dict[str, Any]) -> Any:
        if op == "groups":
            return recorded["groups"]
        if op == "keys":
            return recorded["final"].get(args["traceId"], {"keys": []})["keys"]
        return values.get((args["traceId"], args["key"]))

    await run_case({**case, "final": {}}, replay, None, check=False)
    await check_final(case["final"], final_call)
