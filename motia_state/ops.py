"""Pure semantics of every state operation.

Each ``apply_*`` function takes the current value of one entry (``MISSING``
when there is none) and the operation's already-validated arguments, and
returns ``(new, result)``: ``new`` is the value to store, ``MISSING`` to
remove the entry, or ``UNCHANGED`` when nothing is written. No I/O, no
locks, no async: every adapter calls these under its own atomicity (the
Redis adapter's scripts mirror them and the shared vectors prove it).

Stored values are never mutated: new containers are built, and whatever is
handed back to a caller is a deep copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from .errors import LimitExceededError, StateError, TypeMismatchError
from .records import BatchItemResult, StateOperation, TransactionResult
from .values import (
    DEFAULT_LIMITS,
    INT_BOUND,
    INT_LOW,
    MAX_INT_DIGITS,
    MISSING,
    Limits,
    copy_value,
    describe,
    encoded_size,
    import_value,
    json_equal,
)

__all__ = [
    "UNCHANGED",
    "Outcome",
    "apply_compare_and_swap",
    "apply_delete",
    "apply_delete_field",
    "apply_exists",
    "apply_get",
    "apply_increment",
    "apply_operation",
    "apply_pop",
    "apply_push",
    "apply_set",
    "apply_set_field",
    "apply_shift",
    "apply_unshift",
    "apply_update",
    "check_size",
    "run_transaction",
    "run_batch_operation",
]


class _Unchanged:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()

Outcome = tuple[Any, Any]
"""``(new value | MISSING | UNCHANGED, result)``."""


def apply_get(current: Any) -> Outcome:
    """``get``: the value, or null when missing."""
    return UNCHANGED, None if current is MISSING else copy_value(current)


def apply_exists(current: Any) -> Outcome:
    """``exists``: whether an entry is stored (a stored null counts)."""
    return UNCHANGED, current is not MISSING


def apply_set(current: Any, value: Any) -> Outcome:
    """``set``: store ``value`` (already imported) and return it."""
    return value, copy_value(value)


def apply_delete(current: Any) -> Outcome:
    """``delete``: remove the entry and return the old value (null if none)."""
    if current is MISSING:
        return UNCHANGED, None
    return MISSING, copy_value(current)


def apply_increment(current: Any, delta: int | float) -> Outcome:
    """``increment``: add ``delta`` (missing and null count as 0)."""
    t = type(current)
    if t is int or t is float:
        new = current + delta
    elif current is MISSING or current is None:
        new = delta
    else:
        raise TypeMismatchError(f"cannot increment: stored value is {describe(current)}, not a number")
    if type(new) is float:
        if not math.isfinite(new):
            raise LimitExceededError(f"increment result {new!r} is out of the range of a JSON number")
    elif not INT_LOW < new < INT_BOUND:
        raise LimitExceededError(f"increment result has more than {MAX_INT_DIGITS} digits")
    return new, new


def _current_array(current: Any, op: str) -> list[Any]:
    if type(current) is list:
        return current
    if current is MISSING or current is None:
        return []
    raise TypeMismatchError(f"cannot {op}: stored value is {describe(current)}, not an array")


def _current_object(current: Any, op: str) -> dict[str, Any] | None:
    if type(current) is dict:
        return current
    if current is MISSING or current is None:
        return None
    raise TypeMismatchError(f"cannot {op}: stored value is {describe(current)}, not an object")


def _push_generic(current: Any, items: list[Any], at_head: bool, op: str) -> Outcome:
    # One function for both ends, as Redis does for LPUSH/RPUSH.
    array = _current_array(current, op)
    if not items:
        return UNCHANGED, copy_value(array)
    new = [*items, *array] if at_head else [*array, *items]
    return new, copy_value(new)


def apply_push(current: Any, items: list[Any]) -> Outcome:
    """``push``: append items (already imported); returns the new array."""
    return _push_generic(current, items, False, "push")


def apply_unshift(current: Any, items: list[Any]) -> Outcome:
    """``unshift``: prepend items keeping their order; returns the new array."""
    return _push_generic(current, items, True, "unshift")


def _pop_generic(current: Any, from_head: bool, op: str) -> Outcome:
    array = _current_array(current, op)
    if not array:
        return UNCHANGED, None
    if from_head:
        return array[1:], copy_value(array[0])
    return array[:-1], copy_value(array[-1])


def apply_pop(current: Any) -> Outcome:
    """``pop``: remove and return the last element (null when empty)."""
    return _pop_generic(current, False, "pop")


def apply_shift(current: Any) -> Outcome:
    """``shift``: remove and return the first element (null when empty)."""
    return _pop_generic(current, True, "shift")


def apply_compare_and_swap(current: Any, expected: Any, new_value: Any) -> Outcome:
    """``compareAndSwap``: store ``new_value`` if the current value JSON-equals ``expected``."""
    if json_equal(None if current is MISSING else current, expected):
        return new_value, True
    return UNCHANGED, False


def apply_set_field(current: Any, field: str, value: Any) -> Outcome:
    """``setField``: set one field of an object (missing/null start as {})."""
    obj = _current_object(current, "setField")
    new = {field: value} if obj is None else {**obj, field: value}
    return new, copy_value(new)


def apply_delete_field(current: Any, field: str) -> Outcome:
    """``deleteField``: remove one field; an absent field or entry stores nothing."""
    obj = _current_object(current, "deleteField")
    if obj is None:
        return UNCHANGED, {}
    if field not in obj:
        return UNCHANGED, copy_value(obj)
    new = {k: v for k, v in obj.items() if k != field}
    return new, copy_value(new)


def apply_update(current: Any, fn: Callable[[Any], Any], limits: Limits = DEFAULT_LIMITS) -> Outcome:
    """``update``: store and return ``fn(current)``; fn sees a copy (null if missing)."""
    result = fn(None if current is MISSING else copy_value(current))
    new = import_value(result, limits)
    return new, copy_value(new)


def check_size(new: Any, limits: Limits) -> None:
    # Containers grow through push/unshift/setField: the stored result must
    # still fit. Scalars produced here are bounded by their inputs.
    t = type(new)
    if (t is list or t is dict) and encoded_size(new) > limits.max_value_bytes:
        raise LimitExceededError(f"the new value would be larger than {limits.max_value_bytes} bytes encoded")


def apply_operation(op: StateOperation, current: Any, limits: Limits = DEFAULT_LIMITS) -> Outcome:
    """Apply one validated record to the current value of its entry."""
    out: Outcome = _DISPATCH[op.type](op, current, limits)
    if op.type in _GROWING and out[0] is not UNCHANGED:
        check_size(out[0], limits)
    return out


_GROWING: Final = frozenset({"push", "unshift", "setField"})

_DISPATCH: Final[dict[str, Callable[[StateOperation, Any, Limits], Outcome]]] = {
    "get": lambda op, cur, lim: apply_get(cur),
    "exists": lambda op, cur, lim: apply_exists(cur),
    "delete": lambda op, cur, lim: apply_delete(cur),
    "pop": lambda op, cur, lim: apply_pop(cur),
    "shift": lambda op, cur, lim: apply_shift(cur),
    "set": lambda op, cur, lim: apply_set(cur, op.value),
    "increment": lambda op, cur, lim: apply_increment(cur, op.delta),
    "decrement": lambda op, cur, lim: apply_increment(cur, -op.delta),
    "compareAndSwap": lambda op, cur, lim: apply_compare_and_swap(cur, op.expected, op.value),
    "push": lambda op, cur, lim: apply_push(cur, op.items),
    "unshift": lambda op, cur, lim: apply_unshift(cur, op.items),
    "setField": lambda op, cur, lim: apply_set_field(cur, op.field, op.value),
    "deleteField": lambda op, cur, lim: apply_delete_field(cur, op.field),
    "update": lambda op, cur, lim: apply_update(cur, op.update_fn, lim),
}


def describe_op(index: int, op: StateOperation) -> str:
    """ "operation 2 (increment 'score')": how failures name an operation."""
    return f"operation {index} ({op.type} {op.key!r})"


def run_transaction(
    ops: Sequence[StateOperation],
    read: Callable[[str], Any],
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[TransactionResult, dict[str, tuple[str, Any]]]:
    """Run validated ops in order against a private overlay of the group.

    Returns the result and the writes to commit: ``{key: (op type, new value
    or MISSING)}``; on failure the writes are empty, so nothing is stored.
    ``read(key)`` gives the committed value (``MISSING`` when absent).
    """
    staged: dict[str, tuple[str, Any]] = {}
    results: list[Any] = []
    for i, op in enumerate(ops):
        key = op.key
        current = staged[key][1] if key in staged else read(key)
        try:
            new, result = apply_operation(op, current, limits)
        except StateError as e:
            return _failed(i, op, e.message, e.code), {}
        # Anything else (an update fn raising) propagates: nothing was stored.
        if op.type == "compareAndSwap" and result is False:
            return _failed(i, op, "expected value did not match", "CONFLICT"), {}
        if new is not UNCHANGED:
            staged[key] = (op.type, new)
        results.append(result)
    return TransactionResult(success=True, results=results), staged


def _failed(index: int, op: StateOperation, message: str, code: str) -> TransactionResult:
    return TransactionResult(
        success=False,
        results=[],
        error=f"{describe_op(index, op)}: {message}",
        failed_index=index,
        code=code,
    )


def run_batch_operation(
    op: StateOperation | StateError, current: Any, limits: Limits = DEFAULT_LIMITS
) -> tuple[Any, BatchItemResult]:
    """Apply one batch record on its own; a failure becomes its error item."""
    if isinstance(op, StateError):
        return UNCHANGED, BatchItemResult(id=op.details.get("id"), error=op.message, code=op.code)
    item_id = None if op.id is msgspec.UNSET else op.id
    try:
        new, value = apply_operation(op, current, limits)
    except StateError as e:
        return UNCHANGED, BatchItemResult(id=item_id, error=e.message, code=e.code)
    return new, BatchItemResult(id=item_id, value=value)
