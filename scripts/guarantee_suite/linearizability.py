"""A linearizability checker for histories of state operations.

A history is a list of :class:`Operation`: who called what with which
arguments, when it was invoked and when its response came back (``None`` when
the caller crashed or timed out before the response: its outcome is unknown,
so it may have taken effect or not), and what it returned or which error code
it raised.

The check is Wing & Gong's search in Lowe's just-in-time form: from the
operations not yet linearized, only those invoked before the earliest pending
response may go next; each candidate is applied to a sequential model of the
operations and kept only when the model returns what the history recorded.
Pairs (set of operations linearized, model state) already explored are
remembered, which keeps the search polynomial on the histories real systems
produce.

Linearizability is local (P-compositional): a history is linearizable when
the history of every object is. Single operations touch one entry, so each
(group, key) is checked alone; a transaction touches several entries of one
group, so a group whose history holds a transaction is checked as one object.

The sequential model is written here from the contract, independently of the
package's own operations, so that a bug in the package cannot hide itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MISSING",
    "CheckResult",
    "Operation",
    "apply_operation",
    "check_history",
    "freeze",
    "json_equal",
    "partitions",
]


class _Missing:
    """The value of an entry that is not stored (distinct from a stored null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Operation:
    """One operation of a history.

    ``name`` is the operation's wire name (``get``, ``set``, ``delete``,
    ``increment``, ``decrement``, ``compareAndSwap``, ``push``, ``unshift``,
    ``pop``, ``shift``, ``exists`` or ``transaction``); ``args`` are the
    arguments after the group and key (for a transaction: one argument, the
    list of operation records). ``response`` is None when the outcome is
    unknown. ``error`` is the error code when the operation raised one; then
    ``result`` is ignored. A transaction's ``result`` is its wire form
    ``{success, results}`` or ``{success: false, failedIndex, code}``.
    """

    process: Hashable
    name: str
    group: str
    key: str | None
    args: tuple[Any, ...]
    invoke: int
    response: int | None
    result: Any = None
    error: str | None = None

    @property
    def unknown(self) -> bool:
        """Whether the outcome is unknown (no response was seen)."""
        return self.response is None


@dataclass
class CheckResult:
    """The verdict on a history: ``ok`` is True, False, or None when the search ran out of its budget."""

    ok: bool | None
    operations: int = 0
    partitions: int = 0
    explored: int = 0
    failures: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok is True


# -- JSON values ---------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (1 == 1.0), booleans are not numbers, objects by their pairs."""
    if a is MISSING or b is MISSING:
        return a is b
    if _is_number(a) or _is_number(b):
        return _is_number(a) and _is_number(b) and a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return False
    return bool(a == b) and type(a) is type(b)


def freeze(v: Any) -> Hashable:
    """A hashable form of a JSON value (or a group's dict of values) that two equal values share."""
    if v is MISSING:
        return ("missing",)
    if isinstance(v, bool):
        return ("b", v)
    if _is_number(v):
        if isinstance(v, float) and v.is_integer():
            return ("n", int(v))
        return ("n", v)
    if isinstance(v, list):
        return ("a", tuple(freeze(x) for x in v))
    if isinstance(v, dict):
        return ("o", tuple(sorted((k, freeze(x)) for k, x in v.items())))
    return ("s", v)


# -- the sequential model --------------------------------------------------------

_Entries = dict[str, Any]  # key -> value of one object (one key, or a whole group)


class _OpError(Exception):
    def __init__(self, code: str) -> None:
        self.code = code


def _number(v: Any) -> int | float:
    if v is MISSING or v is None:
        return 0
    if not _is_number(v):
        raise _OpError("TYPE_MISMATCH")
    return v  # type: ignore[no-any-return]


def _array(v: Any) -> list[Any]:
    if v is MISSING or v is None:
        return []
    if not isinstance(v, list):
        raise _OpError("TYPE_MISMATCH")
    return v


def _step(entries: _Entries, name: str, key: str, args: Sequence[Any]) -> Any:
    """Apply one single-entry operation to ``entries`` in place; return its result."""
    current = entries.get(key, MISSING)
    if name == "get":
        return None if current is MISSING else current
    if name == "exists":
        return current is not MISSING
    if name == "set":
        entries[key] = args[0]
        return args[0]
    if name == "delete":
        entries.pop(key, None)
        return None if current is MISSING else current
    if name in ("increment", "decrement"):
        delta = args[0] if args else 1
        new = _number(current) + (delta if name == "increment" else -delta)
        entries[key] = new
        return new
    if name == "compareAndSwap":
        expected, new_value = args
        if json_equal(None if current is MISSING else current, expected):
            entries[key] = new_value
            return True
        return False
    if name in ("push", "unshift"):
        array = _array(current)
        if not args:
            return list(array)
        array = [*array, *args] if name == "push" else [*args, *array]
        entries[key] = array
        return array
    if name in ("pop", "shift"):
        array = _array(current)
        if not array:
            return None
        entries[key] = array[:-1] if name == "pop" else array[1:]
        return array[-1] if name == "pop" else array[0]
    raise ValueError(f"the model has no operation {name!r}")


def _record_args(record: dict[str, Any]) -> tuple[str, str, tuple[Any, ...]]:
    name, key = record["type"], record["key"]
    if name in ("increment", "decrement"):
        return name, key, (record.get("delta", 1),)
    if name == "set":
        return name, key, (record["value"],)
    if name == "compareAndSwap":
        return name, key, (record["expected"], record.get("value", record.get("newValue")))
    if name in ("push", "unshift"):
        return name, key, tuple(record["items"])
    return name, key, ()


def _transaction(entries: _Entries, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    work = dict(entries)
    results = []
    for index, record in enumerate(records):
        name, key, args = _record_args(record)
        try:
            result = _step(work, name, key, args)
        except _OpError as e:
            return {"success": False, "failedIndex": index, "code": e.code}
        if name == "compareAndSwap" and result is False:
            return {"success": False, "failedIndex": index, "code": "CONFLICT"}
        results.append(result)
    entries.clear()
    entries.update(work)
    return {"success": True, "results": results}


def apply_operation(entries: _Entries, op: Operation) -> tuple[Any, str | None]:
    """Apply ``op`` to ``entries`` (key -> value) in place: ``(result, None)`` or ``(None, error code)``.

    A failed operation changes nothing.
    """
    try:
        if op.name == "transaction":
            return _transaction(entries, op.args[0]), None
        assert op.key is not None
        return _step(entries, op.name, op.key, op.args), None
    except _OpError as e:
        return None, e.code


def _matches(op: Operation, result: Any, error: str | None) -> bool:
    if op.unknown:
        return True
    if op.error is not None or error is not None:
        return op.error == error
    if op.name == "transaction":
        want, got = op.result, result
        if bool(want.get("success")) != got["success"]:
            return False
        if got["success"]:
            return json_equal(want.get("results"), got["results"])
        return want.get("failedIndex") == got["failedIndex"] and want.get("code") == got["code"]
    return json_equal(op.result, result)


# -- partitions and the search ---------------------------------------------------


def partitions(history: Iterable[Operation]) -> dict[tuple[str, str | None], list[Operation]]:
    """Split a history into independent objects: (group, key), or (group, None) for a group with transactions."""
    ops = list(history)
    whole = {op.group for op in ops if op.name == "transaction"}
    parts: dict[tuple[str, str | None], list[Operation]] = {}
    for op in ops:
        part = (op.group, None) if op.group in whole else (op.group, op.key)
        parts.setdefault(part, []).append(op)
    return parts


def _freeze_entries(entries: _Entries) -> Hashable:
    return tuple(sorted((k, freeze(v)) for k, v in entries.items()))


def _check_object(ops: Sequence[Operation], initial: _Entries, budget: int) -> tuple[bool | None, int, int]:
    """Search one object's history: (verdict, states explored, most operations linearized)."""
    n = len(ops)
    inf = math.inf
    inv = [op.invoke for op in ops]
    resp: list[float] = [inf if op.response is None else op.response for op in ops]
    by_inv = sorted(range(n), key=lambda i: inv[i])
    by_resp = sorted(range(n), key=lambda i: resp[i])
    known = sum(1 for op in ops if not op.unknown)
    seen: set[tuple[int, Hashable]] = set()
    stack: list[tuple[int, _Entries, int, int, int]] = [(0, dict(initial), 0, 0, 0)]
    deepest = 0
    explored = 0
    while stack:
        mask, entries, lo_inv, lo_resp, depth = stack.pop()
        explored += 1
        if explored > budget:
            return None, explored, deepest
        deepest = max(deepest, depth)
        while lo_resp < known and mask >> by_resp[lo_resp] & 1:
            lo_resp += 1
        if lo_resp == known:
            return True, explored, n
        # Only operations invoked before the earliest pending response may
        # go next: that response's operation precedes anything invoked later.
        horizon = resp[by_resp[lo_resp]]
        while mask >> by_inv[lo_inv] & 1:
            lo_inv += 1
        j = lo_inv
        while j < n and inv[by_inv[j]] <= horizon:
            i = by_inv[j]
            j += 1
            if mask >> i & 1:
                continue
            after = dict(entries)
            result, error = apply_operation(after, ops[i])
            if not _matches(ops[i], result, error):
                continue
            state = (mask | 1 << i, _freeze_entries(after))
            if state not in seen:
                seen.add(state)
                stack.append((mask | 1 << i, after, lo_inv, lo_resp, depth + 1))
    return False, explored, deepest


def check_history(
    history: Iterable[Operation],
    initial: Callable[[str, str | None], _Entries] | None = None,
    *,
    budget: int = 2_000_000,
) -> CheckResult:
    """Whether ``history`` is linearizable against the sequential model, object by object.

    ``initial(group, key)`` gives an object's starting entries (default:
    empty). ``budget`` bounds the states explored per object; past it the
    verdict is None (unknown) rather than a guess.
    """
    ops = list(history)
    parts = partitions(ops)
    verdict = CheckResult(ok=True, operations=len(ops), partitions=len(parts))
    for (group, key), part in sorted(parts.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        start = initial(group, key) if initial is not None else {}
        ok, explored, deepest = _check_object(part, start, budget)
        verdict.explored += explored
        where = f"group {group!r}" + (f" key {key!r}" if key is not None else " (transactions: the whole group)")
        if ok is False:
            verdict.ok = False
            verdict.failures.append(
                f"{where}: not linearizable ({len(part)} operations, at most {deepest} linearize in order)"
            )
        elif ok is None:
            if verdict.ok:
                verdict.ok = None
            verdict.failures.append(f"{where}: undecided after {explored} states")
    return verdict
