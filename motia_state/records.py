"""Operation records for transactions and batches, and their results.

Records arrive as plain dicts (from Python callers or straight off the wire)
or as :class:`StateOperation` structs; either way :func:`parse_operations`
validates every record before anything is applied, so a malformed record
never leaves half a transaction behind. Records are strict: a field that
the record's type does not take is INVALID_ARGUMENT naming it.

The result types encode to the contract's JSON shape through msgspec
itself (camelCase names, absent fields omitted).

Internal module: the public types are re-exported by ``motia_state``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec

from .errors import InvalidArgumentError, LimitExceededError, StateError
from .predicates import parse_predicate
from .values import (
    DEFAULT_LIMITS,
    MISSING,
    Limits,
    check_delta,
    check_field,
    check_name,
    describe,
    encoded_size,
    import_counted,
    import_value,
)

__all__ = [
    "OPERATION_TYPES",
    "RECORD_FIELDS",
    "BatchItemResult",
    "BatchOperation",
    "BatchResult",
    "Change",
    "StateChange",
    "StateOperation",
    "TransactionResult",
    "check_delta",
    "check_field",
    "parse_operations",
    "record_id",
]

UNSET = msgspec.UNSET

#: The fields each record type takes besides ``type``, ``key`` and ``id``.
#: Anything else in a record is INVALID_ARGUMENT naming it: a typo must never
#: be ignored. ``value`` is also accepted as the alias of ``delta``
#: (increment, decrement) and ``newValue`` as that of ``value``
#: (compareAndSwap), the shapes Motia's own records use.
RECORD_FIELDS: Final[dict[str, frozenset[str]]] = {
    "get": frozenset(),
    "exists": frozenset(),
    "delete": frozenset(),
    "pop": frozenset(),
    "shift": frozenset(),
    "set": frozenset({"value"}),
    "increment": frozenset({"delta", "value"}),
    "decrement": frozenset({"delta", "value"}),
    "compareAndSwap": frozenset({"expected", "value", "newValue"}),
    "push": frozenset({"items", "value"}),
    "unshift": frozenset({"items", "value"}),
    "setField": frozenset({"field", "value"}),
    "deleteField": frozenset({"field"}),
    "update": frozenset({"updateFn"}),
    "check": frozenset({"op", "value", "path", "all", "any", "not"}),
}

#: Every record type, in the contract's spelling.
OPERATION_TYPES: Final = frozenset(RECORD_FIELDS)

_COMMON_FIELDS: Final = frozenset({"type", "key", "id"})


class StateOperation(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """One operation of a transaction or batch.

    ``value`` is the stored value for ``set``/``setField`` and the new value
    for ``compareAndSwap`` (``new_value`` is accepted as its alias); ``items``
    the items of ``push``/``unshift``; ``predicate`` the normal form of a
    ``check`` record's predicate (see :mod:`motia_state.predicates`). Unset
    fields are ``msgspec.UNSET``; a parsed increment always has its delta.
    """

    type: str
    key: str
    value: Any = UNSET
    new_value: Any = UNSET
    delta: int | float | msgspec.UnsetType = UNSET
    expected: Any = UNSET
    items: list[Any] | msgspec.UnsetType = UNSET
    field: str | msgspec.UnsetType = UNSET
    # Any: a callable is no wire type, and the adapters call it as parsed.
    update_fn: Any = UNSET
    predicate: dict[str, Any] | msgspec.UnsetType = UNSET
    id: Any = UNSET  # any JSON value; a batch echoes it


class BatchOperation(StateOperation, kw_only=True):
    """A batch operation; ``id`` (optional) is echoed in its result."""


class _Wire(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """A result whose wire form is msgspec's own encoding (camelCase, unset fields omitted)."""

    def to_wire(self) -> Any:
        """The contract's JSON shape, as plain builtins."""
        return msgspec.to_builtins(self)


class TransactionResult(_Wire, kw_only=True, dict=True):
    """Outcome of a transaction: all results, or why nothing was stored.

    On failure ``results`` is empty and ``error``, ``failed_index`` and
    ``code`` say which operation failed and why; :attr:`exception` holds the
    exception an ``update`` fn raised (code UPDATE_FAILED), to re-raise.
    """

    success: bool
    results: list[Any]
    error: str | None = None
    failed_index: int | None = None
    code: str | None = None

    @property
    def exception(self) -> BaseException | None:
        """The exception an ``update`` fn raised, when that failed the transaction."""
        found: BaseException | None = self.__dict__.get("exception")
        return found

    @classmethod
    def failed(cls, index: int, error: str, code: str, exception: BaseException | None = None) -> TransactionResult:
        """A failed result: nothing stored, operation ``index`` failed with ``code``."""
        result = cls(success=False, results=[], error=error, failed_index=index, code=code)
        if exception is not None:
            # Kept beside the struct's fields: it is not part of the wire form.
            result.__dict__["exception"] = exception
        return result

    @classmethod
    def from_error(cls, error: StateError, index: int, operation: str = "") -> TransactionResult:
        """The failed result for a record's error, its message led by ``operation`` when given.

        The exception an ``update`` fn raised (UPDATE_FAILED) is kept.
        """
        exception = error.details.get("exception")
        message = f"{operation}: {error.message}" if operation else error.message
        return cls.failed(index, message, error.code, exception if isinstance(exception, BaseException) else None)


class BatchItemResult(_Wire, kw_only=True):
    """One batch result: ``value`` on success, ``error`` and ``code`` otherwise."""

    id: Any = None
    value: Any = None
    error: str | None = None
    code: str | None = None

    def to_wire(self) -> Any:
        """``{id, value}`` or ``{id, error, code}`` (``id`` only when given; a null value kept)."""
        wire = msgspec.to_builtins(self)
        if self.code is None:
            wire.setdefault("value", None)
        return wire

    @classmethod
    def from_error(cls, error: StateError, item_id: Any = None) -> BatchItemResult:
        """The item for a record that failed with ``error``."""
        return cls(id=item_id, error=error.message, code=error.code)


class BatchResult(_Wire, kw_only=True):
    """Outcome of a batch: one item per operation, in order."""

    results: list[BatchItemResult]

    def to_wire(self) -> Any:
        """The contract's JSON shape (each item as :meth:`BatchItemResult.to_wire` gives it)."""
        return {"results": [item.to_wire() for item in self.results]}


def record_id(op: StateOperation | StateError) -> Any:
    """The ``id`` a batch echoes for a parsed record or a record's error (None when absent)."""
    if isinstance(op, StateError):
        return op.details.get("id")
    return None if op.id is UNSET else op.id


def _fields(raw: Any, path: str) -> dict[str, Any]:
    """A record's fields by their wire names (a struct's unset fields left out)."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, StateOperation):
        return {
            f.encode_name: getattr(raw, f.name)
            for f in msgspec.structs.fields(raw)
            if getattr(raw, f.name) is not UNSET
        }
    raise InvalidArgumentError(f"operation: expected an object, got {describe(raw)} at {path}")


def _required(raw: dict[str, Any], name: str, path: str) -> Any:
    if name not in raw:
        raise InvalidArgumentError(f"{name}: required at {path}.{name}")
    return raw[name]


def _one_of(raw: dict[str, Any], name: str, alias: str, path: str) -> str | None:
    """Which of a field and its alias the record gives (None: neither); both is an error."""
    if name in raw:
        if alias in raw:
            raise InvalidArgumentError(f"{alias}: an alias of {name!r}, give only one of them at {path}.{alias}")
        return name
    return alias if alias in raw else None


def _text_size(name: str) -> int:
    """Bytes of a (valid Unicode) name's UTF-8."""
    return len(name) if name.isascii() else len(name.encode("utf-8"))


def _predicate_size(predicate: Any) -> int:
    """What a check's predicate counts: the encoded values and the paths of its leaves."""
    if "op" in predicate:
        size = _text_size(predicate["path"])
        return size + encoded_size(predicate["value"]) if "value" in predicate else size
    if "not" in predicate:
        return _predicate_size(predicate["not"])
    return sum(_predicate_size(p) for p in next(iter(predicate.values())))


def _parse_one(raw: Any, path: str, limits: Limits, allow_update: bool) -> tuple[StateOperation, int]:
    """One parsed record and the bytes it counts against ``limits.max_records_bytes``."""
    raw = _fields(raw, path)
    op_type = raw.get("type")
    if type(op_type) is not str or op_type not in OPERATION_TYPES:
        raise InvalidArgumentError(f"type: unknown operation type {op_type!r} at {path}.type")
    takes = RECORD_FIELDS[op_type]
    for name in raw:
        if name not in takes and name not in _COMMON_FIELDS:
            raise InvalidArgumentError(f"{name}: a {op_type!r} record does not take this field at {path}.{name}")
    key = _required(raw, "key", path)
    try:
        key = check_name(key, "key", limits)
    except StateError as e:
        raise type(e)(f"key: {e.message} at {path}.key") from None
    op = StateOperation(type=op_type, key=key)
    size = _text_size(key)
    if "id" in raw:
        op.id, id_size = import_counted(raw["id"], limits, f"{path}.id")
        size += id_size
    return op, size + _PARSERS[op_type](op, raw, path, limits, allow_update)


# Each parser fills in its record's own fields and returns the bytes they
# count against ``limits.max_records_bytes`` (see parse_operations).


def _parse_nothing(op: StateOperation, raw: dict[str, Any], path: str, limits: Limits, allow_update: bool) -> int:
    """get, exists, delete, pop, shift: nothing beyond the key."""
    return 0


def _parse_set(op: StateOperation, raw: dict[str, Any], path: str, limits: Limits, allow_update: bool) -> int:
    op.value, size = import_counted(_required(raw, "value", path), limits, f"{path}.value")
    return size


def _parse_delta(op: StateOperation, raw: dict[str, Any], path: str, limits: Limits, allow_update: bool) -> int:
    name = _one_of(raw, "delta", "value", path)
    if name is None:
        op.delta = 1
        return 0
    op.delta = delta = check_delta(raw[name], f"{name} at {path}.{name}")
    return encoded_size(delta)


def _parse_compare_and_swap(
    op: StateOperation, raw: dict[str, Any], path: str, limits: Limits, allow_update: bool
) -> int:
    op.expected, expected_size = import_counted(_required(raw, "expected", path), limits, f"{path}.expected")
    name = _one_of(raw, "value", "newValue", path) or "value"
    op.value, size = import_counted(_required(raw, name, path), limits, f"{path}.{name}")
    return expected_size + size


def _parse_items(op: StateOperation, raw: dict[str, Any], path: str, limits: Limits, allow_update: bool) -> int:
    if _one_of(raw, "items", "value", path) == "value":
        # The items list is the array it will be stored in, one level up: checking it counts that level.
        op.items, size = import_counted([raw["value"]], limits, f"{path}.value")
        return size
    items = _required(raw, "items", path)
    if not isinstance(items, (list, tuple)):
        raise InvalidArgumentError(f"items: expected an array, got {describe(items)} at {path}.items")
    op.items, size = import_counted(list(items), limits, f"{path}.items")
    return size


def _parse_set_field(op: StateOperation, raw: dict[str, Any], path: str, limits: Limits, allow_update: bool) -> int:
    op.field = field = check_field(_required(raw, "field", path), f"field at {path}.field")
    op.value, size = import_counted(_required(raw, "value", path), limits, f"{path}.value", nested=1)
    return _text_size(field) + size


def _parse_delete_field(op: StateOperation, raw: dict[str, Any], path: str, limits: Limits, allow_update: bool) -> int:
    op.field = field = check_field(_required(raw, "field", path), f"field at {path}.field")
    return _text_size(field)


def _parse_update(op: StateOperation, raw: dict[str, Any], path: str, limits: Limits, allow_update: bool) -> int:
    if not allow_update:
        raise InvalidArgumentError(f"type: 'update' records carry code and are refused here at {path}.type")
    fn = _required(raw, "updateFn", path)
    if not callable(fn):
        raise InvalidArgumentError(f"updateFn: expected a function at {path}.updateFn")
    op.update_fn = fn
    return 0


def _parse_check(op: StateOperation, raw: dict[str, Any], path: str, limits: Limits, allow_update: bool) -> int:
    op.predicate = predicate = parse_predicate(raw, path, limits=limits, extra=_COMMON_FIELDS)
    return _predicate_size(predicate)


_Parser = Callable[[StateOperation, dict[str, Any], str, Limits, bool], int]
_PARSERS: Final[dict[str, _Parser]] = {
    "get": _parse_nothing,
    "exists": _parse_nothing,
    "delete": _parse_nothing,
    "pop": _parse_nothing,
    "shift": _parse_nothing,
    "set": _parse_set,
    "increment": _parse_delta,
    "decrement": _parse_delta,
    "compareAndSwap": _parse_compare_and_swap,
    "push": _parse_items,
    "unshift": _parse_items,
    "setField": _parse_set_field,
    "deleteField": _parse_delete_field,
    "update": _parse_update,
    "check": _parse_check,
}


def _echoed_id(raw: Any, limits: Limits) -> Any:
    """The id a batch echoes for a record that failed: its JSON copy, or None when it has no usable one.

    The failure may be the id itself (NaN, a set, a lone surrogate): a
    result must never carry what JSON cannot, so such an id is not echoed.
    """
    item_id = raw.get("id") if isinstance(raw, dict) else getattr(raw, "id", None)
    if item_id is None or item_id is UNSET:
        return None
    try:
        return import_value(item_id, limits, "id")
    except StateError:
        return None


def parse_operations(
    raw_ops: Any,
    *,
    limits: Limits = DEFAULT_LIMITS,
    allow_update: bool = True,
    path: str = "$.operations",
    collect: bool = False,
) -> list[StateOperation | StateError]:
    """Validate a list of records; return the parsed operations in order.

    With ``collect=False`` (transactions) the first bad record raises its
    error with ``details['failed_index']``; with ``collect=True`` (batches)
    a bad record is returned in place as its error so the others still run.

    The list as a whole is LIMIT_EXCEEDED past ``limits.max_operations``
    records, or when its records' size is over ``limits.max_records_bytes``.
    A record's size is the UTF-8 bytes of its key and field name, plus the
    compact JSON bytes of each value it carries: ``value`` (``newValue``),
    ``expected``, ``items`` (the array; a one-item ``value`` counts as that
    array), a given ``delta``, ``id``, and a check's values (with the
    UTF-8 bytes of its paths). The record's type, its field names and JSON
    punctuation are not counted, nor is a batch record that fails its own
    validation. The sizes come from the checks against ``max_value_bytes``,
    so the records are not encoded again.
    """
    if not isinstance(raw_ops, (list, tuple)):
        raise InvalidArgumentError(f"operations: expected an array, got {describe(raw_ops)} at {path}")
    if len(raw_ops) > limits.max_operations:
        raise LimitExceededError(f"operations: {len(raw_ops)} operations, the limit is {limits.max_operations}")
    out: list[StateOperation | StateError] = []
    total = 0
    max_bytes = limits.max_records_bytes
    for i, raw in enumerate(raw_ops):
        try:
            op, size = _parse_one(raw, f"{path}[{i}]", limits, allow_update)
        except StateError as e:
            if not collect:
                e.details["failed_index"] = i
                raise
            item_id = _echoed_id(raw, limits)
            if item_id is not None:
                e.details["id"] = item_id
            out.append(e)
            continue
        total += size
        if total > max_bytes:
            raise LimitExceededError(
                f"operations: the records are larger than {max_bytes} bytes encoded"
                f" (at {path}[{i}]); nothing was stored"
            )
        out.append(op)
    return out


class StateChange(msgspec.Struct, frozen=True, rename="camel"):
    """One written entry, as change listeners see it.

    ``event`` is "created", "updated" or "deleted"; a missing side is None.
    """

    trace_id: str
    key: str
    op: str
    event: str
    old_value: Any
    new_value: Any

    @classmethod
    def of(cls, group: str, key: str, op: str, old: Any, new: Any) -> StateChange:
        """The change for one written entry; ``MISSING`` on a side means no entry there."""
        event = "created" if old is MISSING else "deleted" if new is MISSING else "updated"
        return cls(group, key, op, event, None if old is MISSING else old, None if new is MISSING else new)

    def to_wire(self) -> dict[str, Any]:
        """The contract's JSON shape (camelCase)."""
        wire: dict[str, Any] = msgspec.to_builtins(self)
        return wire


class Change(msgspec.Struct, frozen=True, rename="camel"):
    """One record of the change feed: a committed change, where it sits and who made it.

    ``cursor`` is opaque: reading the feed after it yields exactly the
    records that follow this one. ``group``, ``key``, ``op``, ``event``,
    ``old_value`` and ``new_value`` are as in a change event (a missing side
    is None); ``at`` is the commit time in milliseconds since the epoch;
    ``depth`` and ``origin`` (``{"step": name, "traceId": t}`` or None)
    describe the invocation that wrote. On the wire the names are camelCase.
    """

    cursor: str
    group: str
    key: str
    op: str
    event: str
    old_value: Any
    new_value: Any
    at: int
    depth: int = 0
    origin: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        """The contract's JSON shape (camelCase)."""
        wire: dict[str, Any] = msgspec.to_builtins(self)
        return wire
