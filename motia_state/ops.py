"""Pure semantics of every state operation.

Each ``apply_*`` function takes the current value of one entry (``MISSING``
when there is none) and the operation's already-validated arguments, and
returns ``(new, result)``: ``new`` is the value to store, ``MISSING`` to
remove the entry, or ``UNCHANGED`` when nothing is written. No I/O, no
locks, no async: every adapter calls these under its own atomicity (the
Redis adapter's scripts mirror them and the shared vectors prove it).

Stored values are never mutated: new containers are built. A result may
share structure with what is stored, so whoever hands a result out copies
it first (:meth:`StateTable.apply` per operation, :func:`export_results`
once for a whole transaction or batch).

Internal module: adapters call it; users go through an adapter or the StateManager.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

import msgspec

from .errors import LimitExceededError, StateError, TypeMismatchError, UpdateFailedError
from .predicates import predicate_holds
from .records import BatchItemResult, BatchResult, StateOperation, TransactionResult, parse_operations, record_id
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
    "apply_check",
    "apply_update",
    "apply_update_record",
    "check_size",
    "describe_op",
    "export_results",
    "parse_transaction",
    "run_batch",
    "run_transaction",
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
    return UNCHANGED, None if current is MISSING else current


def apply_exists(current: Any) -> Outcome:
    """``exists``: whether an entry is stored (a stored null counts)."""
    return UNCHANGED, current is not MISSING


def apply_set(current: Any, value: Any) -> Outcome:
    """``set``: store ``value`` (already imported) and return it."""
    return value, value


def apply_delete(current: Any) -> Outcome:
    """``delete``: remove the entry and return the old value (null if none)."""
    if current is MISSING:
        return UNCHANGED, None
    return MISSING, current


def apply_increment(current: Any, delta: int | float) -> Outcome:
    """``increment``: add ``delta`` (missing and null count as 0)."""
    t = type(current)
    if t is int or t is float:
        try:
            new = current + delta
        except OverflowError:
            # A huge int plus a float: the sum is not a JSON number either way.
            raise LimitExceededError("increment result is out of the range of a JSON number") from None
    elif current is MISSING or current is None:
        new = delta
    else:
        raise TypeMismatchError(f"cannot increment: stored value is {describe(current)}, not a number")
    if type(new) is float:
        if not math.isfinite(new):
            raise LimitExceededError(f"increment result {new!r} is out of the range of a JSON number")
    elif not INT_LOW < new < INT_BOUND:
        raise LimitExceededError(f"increment result has more than {MAX_INT_DIGITS} characters of decimal text")
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
        return UNCHANGED, array
    new = [*items, *array] if at_head else [*array, *items]
    return new, new


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
        return array[1:], array[0]
    return array[:-1], array[-1]


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
    return new, new


def apply_delete_field(current: Any, field: str) -> Outcome:
    """``deleteField``: remove one field; an absent field or entry stores nothing."""
    obj = _current_object(current, "deleteField")
    if obj is None:
        return UNCHANGED, {}
    if field not in obj:
        return UNCHANGED, obj
    new = {k: v for k, v in obj.items() if k != field}
    return new, new


def apply_update(current: Any, fn: Callable[[Any], Any], limits: Limits = DEFAULT_LIMITS) -> Outcome:
    """``update``: store and return ``fn(current)``; fn sees a copy (null if missing)."""
    result = fn(None if current is MISSING else copy_value(current))
    new = import_value(result, limits)
    return new, new


def apply_update_record(current: Any, fn: Callable[[Any], Any], limits: Limits = DEFAULT_LIMITS) -> Outcome:
    """An ``update`` record of a transaction or batch: what fn raises is UPDATE_FAILED.

    The exception object travels in the error's ``details["exception"]``
    (and as its ``__cause__``), so a caller can re-raise it.
    """
    try:
        result = fn(None if current is MISSING else copy_value(current))
    except Exception as e:
        raise UpdateFailedError(f"update fn raised {type(e).__name__}: {e}", exception=e) from e
    new = import_value(result, limits)
    return new, new


def apply_check(current: Any, predicate: dict[str, Any]) -> Outcome:
    """``check``: whether the predicate holds for the entry; changes nothing."""
    return UNCHANGED, predicate_holds(predicate, current, current is not MISSING)


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

Number = int | float

# The parser guarantees each record type's fields are set (records.RECORD_FIELDS):
# the casts only tell the type checker so.
_DISPATCH: Final[dict[str, Callable[[StateOperation, Any, Limits], Outcome]]] = {
    "get": lambda op, cur, lim: apply_get(cur),
    "exists": lambda op, cur, lim: apply_exists(cur),
    "delete": lambda op, cur, lim: apply_delete(cur),
    "pop": lambda op, cur, lim: apply_pop(cur),
    "shift": lambda op, cur, lim: apply_shift(cur),
    "set": lambda op, cur, lim: apply_set(cur, op.value),
    "increment": lambda op, cur, lim: apply_increment(cur, cast(Number, op.delta)),
    "decrement": lambda op, cur, lim: apply_increment(cur, -cast(Number, op.delta)),
    "compareAndSwap": lambda op, cur, lim: apply_compare_and_swap(cur, op.expected, op.value),
    "push": lambda op, cur, lim: apply_push(cur, cast("list[Any]", op.items)),
    "unshift": lambda op, cur, lim: apply_unshift(cur, cast("list[Any]", op.items)),
    "setField": lambda op, cur, lim: apply_set_field(cur, cast(str, op.field), op.value),
    "deleteField": lambda op, cur, lim: apply_delete_field(cur, cast(str, op.field)),
    "update": lambda op, cur, lim: apply_update_record(cur, op.update_fn, lim),
    "check": lambda op, cur, lim: apply_check(cur, cast("dict[str, Any]", op.predicate)),
}


def describe_op(index: int, op: StateOperation) -> str:
    """ "operation 2 (increment 'score')": how failures name an operation."""
    return f"operation {index} ({op.type} {op.key!r})"


def export_results(results: list[Any], limits: Limits) -> list[Any]:
    """Copies of a transaction's or batch's results, refused past ``limits.max_result_bytes``.

    The results are encoded once: that gives their size, and decoding the
    text gives deep copies at C speed, so a long transaction pays for its
    results once rather than once per operation. LIMIT_EXCEEDED is raised
    before the caller commits anything.
    """
    try:
        encoded = _encoder.encode(results)
    except (TypeError, OverflowError, ValueError):
        # msgspec refuses some huge ints: measure and copy the slow way.
        if encoded_size(results) > limits.max_result_bytes:
            raise _results_too_large(limits) from None
        return [copy_value(r) for r in results]
    if len(encoded) > limits.max_result_bytes:
        raise _results_too_large(limits)
    copied: list[Any] = _decoder.decode(encoded)
    return copied


def least_encoded_size(result: Any) -> int:
    """A lower bound of a result's encoded size, in O(1).

    Summed over a transaction's results it lets a run stop as soon as its
    results cannot fit, before building (and paying for) the rest: a long
    run of records that each return a growing container has results that
    grow with the square of its length.
    """
    t = type(result)
    if t is list:
        return 2 * len(result) + 1
    if t is dict:
        return 5 * len(result) + 1
    if t is str:
        return len(result) + 2
    return 1


def _results_too_large(limits: Limits) -> LimitExceededError:
    return LimitExceededError(
        f"the results would be larger than {limits.max_result_bytes} bytes encoded; nothing was stored"
    )


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder()


def parse_transaction(
    raw_ops: Any, limits: Limits = DEFAULT_LIMITS, *, allow_update: bool = True
) -> list[StateOperation] | TransactionResult:
    """Validate a transaction's records: the parsed ops, or the failed result naming the bad one.

    A malformed list itself (not a list, too many records) raises.
    """
    try:
        ops = parse_operations(raw_ops, limits=limits, allow_update=allow_update)
    except StateError as e:
        index = e.details.get("failed_index")
        if index is None:
            raise
        return TransactionResult.from_error(e, index)
    return ops  # type: ignore[return-value]  # without collect=True every item is an op


def run_transaction(
    ops: Sequence[StateOperation],
    read: Callable[[str], Any],
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[TransactionResult, dict[str, tuple[str, Any]]]:
    """Run validated ops in order against a private overlay of the group.

    Returns the result and the writes to commit: ``{key: (op type, new value
    or MISSING)}``; on failure the writes are empty, so nothing is stored.
    ``read(key)`` gives the committed value (``MISSING`` when absent).
    A growing op fails when the value it makes is over the size limit, as
    it would on its own, even if a later op shrinks it again: the size is
    kept up to date from what each op adds (see :func:`_grown_size`), so a
    long run of pushes costs no re-encoding of the whole value per op. The
    results are encoded once (LIMIT_EXCEEDED past ``max_result_bytes``,
    raised before anything is committed).
    """
    staged: dict[str, tuple[str, Any]] = {}
    sizes: dict[str, int] = {}  # key -> encoded size of its staged value, kept while growing ops write it
    max_bytes = limits.max_value_bytes
    results: list[Any] = []
    least = 0
    for i, op in enumerate(ops):
        key = op.key
        current = staged[key][1] if key in staged else read(key)
        try:
            new, result = _DISPATCH[op.type](op, current, limits)
        except StateError as e:
            return TransactionResult.from_error(e, i, describe_op(i, op)), {}
        if result is False and op.type in _GUARDS:
            return _failed(i, op, _GUARDS[op.type], "CONFLICT"), {}
        if new is not UNCHANGED:
            staged[key] = (op.type, new)
            if op.type in _GROWING:
                size = _grown_size(op, current, sizes.get(key, -1))
                if size > max_bytes:
                    return _failed(i, op, f"the new value would be larger than {max_bytes} bytes encoded", LIMIT), {}
                sizes[key] = size
            else:
                sizes.pop(key, None)
        results.append(result)
        least += least_encoded_size(result)
        if least > limits.max_result_bytes:
            raise _results_too_large(limits)
    return TransactionResult(success=True, results=export_results(results, limits)), staged


LIMIT: Final = "LIMIT_EXCEEDED"


def _grown_size(op: StateOperation, current: Any, size: int) -> int:
    """The encoded size of what a push, unshift or setField made of ``current``.

    ``size`` is the encoded size of ``current`` when known (-1: it is
    measured here, once per run of growing ops on a key). Compact JSON
    adds up: an array's size is its brackets, its elements and the commas
    between them; an object's is its braces and its ``"name":value`` pairs
    with their commas. So only what the op adds (or replaces) is encoded.
    """
    if size < 0:
        t = type(current)
        size = encoded_size(current) if t is list or t is dict else 2
    if op.type == "setField":
        obj = current if type(current) is dict else {}
        field = cast(str, op.field)
        if field in obj:
            return size - encoded_size(obj[field]) + encoded_size(op.value)
        # A new pair: "name":value, and a comma when others precede it.
        return size + encoded_size(field) + 1 + encoded_size(op.value) + (1 if obj else 0)
    items = cast("list[Any]", op.items)
    # The items' own array text, less its brackets, is the items and the commas between them.
    added = encoded_size(items) - 2
    return size + added + (1 if type(current) is list and current else 0)


#: Records whose false result fails a transaction, and why.
_GUARDS: Final = {"compareAndSwap": "expected value did not match", "check": "the check did not hold"}


def _failed(index: int, op: StateOperation, message: str, code: str) -> TransactionResult:
    return TransactionResult.failed(index, f"{describe_op(index, op)}: {message}", code)


def run_batch(
    ops: Sequence[StateOperation | StateError],
    read: Callable[[str], Any],
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[BatchResult, list[tuple[str, str, Any]]]:
    """Run a batch's records in order, each on its own, against a private overlay.

    Returns the result and the writes to commit in order, one per record
    that wrote: ``(key, op type, new value or MISSING)``. A record that
    fails (an update fn that raises included) becomes its error item and
    the others still run. The results are encoded once (LIMIT_EXCEEDED past
    ``max_result_bytes``, raised before anything is committed).
    """
    overlay: dict[str, Any] = {}
    writes: list[tuple[str, str, Any]] = []
    items: list[BatchItemResult] = []
    values: list[Any] = []
    least = 0
    for op in ops:
        if isinstance(op, StateError):
            items.append(BatchItemResult.from_error(op, record_id(op)))
            continue
        key = op.key
        current = overlay[key] if key in overlay else read(key)
        try:
            new, value = apply_operation(op, current, limits)
        except StateError as e:
            items.append(BatchItemResult.from_error(e, record_id(op)))
            continue
        if new is not UNCHANGED:
            overlay[key] = new
            writes.append((key, op.type, new))
        items.append(BatchItemResult(id=record_id(op), value=len(values)))
        values.append(value)
        least += least_encoded_size(value)
        if least > limits.max_result_bytes:
            raise _results_too_large(limits)
    exported = export_results(values, limits)
    for item in items:
        if item.code is None:
            item.value = exported[item.value]
    return BatchResult(results=items), writes
