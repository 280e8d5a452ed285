"""Operation records for transactions and batches, and their results.

Records arrive as plain dicts (from Python callers or straight off the wire)
or as :class:`StateOperation` structs; either way :func:`parse_operations`
validates every record before anything is applied, so a malformed record
never leaves half a transaction behind.
"""

from __future__ import annotations

import math
from typing import Any, Final

import msgspec

from .errors import InvalidArgumentError, LimitExceededError, StateError
from .values import DEFAULT_LIMITS, Limits, check_int, check_name, describe, import_value, is_unicode

__all__ = [
    "OPERATION_TYPES",
    "BatchItemResult",
    "BatchOperation",
    "BatchResult",
    "StateChange",
    "StateOperation",
    "TransactionResult",
    "check_delta",
    "check_field",
    "parse_operations",
]

UNSET = msgspec.UNSET

#: Every record type, in the contract's spelling.
OPERATION_TYPES: Final = frozenset(
    {
        "get",
        "exists",
        "delete",
        "pop",
        "shift",
        "set",
        "increment",
        "decrement",
        "compareAndSwap",
        "push",
        "unshift",
        "setField",
        "deleteField",
        "update",
    }
)


class StateOperation(
    msgspec.Struct, kw_only=True, omit_defaults=True, rename={"update_fn": "updateFn", "new_value": "newValue"}
):
    """One operation of a transaction or batch.

    ``value`` is the stored value for ``set``/``setField`` and the new value
    for ``compareAndSwap`` (``new_value`` is accepted as its alias); ``items``
    the items of ``push``/``unshift``. Unset fields are ``msgspec.UNSET``.
    """

    type: str
    key: str
    value: Any = UNSET
    new_value: Any = UNSET
    delta: Any = 1
    expected: Any = UNSET
    items: Any = UNSET
    field: Any = UNSET
    update_fn: Any = UNSET
    id: Any = UNSET


class BatchOperation(StateOperation, kw_only=True):
    """A batch operation; ``id`` (optional) is echoed in its result."""


class TransactionResult(msgspec.Struct, kw_only=True):
    """Outcome of a transaction: all results, or why nothing was stored."""

    success: bool
    results: list[Any]
    error: str | None = None
    failed_index: int | None = None
    code: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The contract's JSON shape (camelCase, absent fields omitted)."""
        if self.success:
            return {"success": True, "results": self.results}
        return {
            "success": False,
            "results": [],
            "error": self.error,
            "failedIndex": self.failed_index,
            "code": self.code,
        }


class BatchItemResult(msgspec.Struct, kw_only=True):
    """One batch result: ``value`` on success, ``error`` and ``code`` otherwise."""

    id: Any = None
    value: Any = None
    error: str | None = None
    code: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The contract's JSON shape: ``{id, value}`` or ``{id, error, code}``."""
        out: dict[str, Any] = {} if self.id is None else {"id": self.id}
        if self.code is None:
            out["value"] = self.value
        else:
            out["error"] = self.error
            out["code"] = self.code
        return out


class BatchResult(msgspec.Struct, kw_only=True):
    """Outcome of a batch: one item per operation, in order."""

    results: list[BatchItemResult]

    def to_wire(self) -> dict[str, Any]:
        """The contract's JSON shape."""
        return {"results": [r.to_wire() for r in self.results]}


def check_delta(delta: object, where: str = "delta") -> int | float:
    """A delta is a finite int or float; a bool is not a number."""
    t = type(delta)
    if t is int:
        return check_int(delta, where)  # type: ignore[arg-type]
    if t is float and math.isfinite(delta):  # type: ignore[arg-type]
        return delta  # type: ignore[return-value]
    raise InvalidArgumentError(
        f"{where} must be a finite number, got {describe(delta) if t is not float else repr(delta)}"
    )


def check_field(field: object, where: str = "field") -> str:
    """A field name is a non-empty string (valid Unicode)."""
    if type(field) is str and field:
        if is_unicode(field):
            return field
        raise InvalidArgumentError(f"{where}: must be valid Unicode (it holds a lone surrogate)")
    raise InvalidArgumentError(f"{where}: expected a non-empty string, got {describe(field)}")


def _field(raw: dict[str, Any], name: str, path: str) -> Any:
    if name not in raw:
        raise InvalidArgumentError(f"{name}: required at {path}.{name}")
    return raw[name]


def _parse_one(raw: Any, path: str, limits: Limits, allow_update: bool) -> StateOperation:
    if isinstance(raw, StateOperation):
        raw = {k: v for k, v in msgspec.structs.asdict(raw).items() if v is not UNSET}
        if "new_value" in raw:
            raw["newValue"] = raw.pop("new_value")
        if "update_fn" in raw:
            raw["updateFn"] = raw.pop("update_fn")
    if not isinstance(raw, dict):
        raise InvalidArgumentError(f"operation: expected an object, got {describe(raw)} at {path}")
    op_type = raw.get("type")
    if type(op_type) is not str or op_type not in OPERATION_TYPES:
        raise InvalidArgumentError(f"type: unknown operation type {op_type!r} at {path}.type")
    key = _field(raw, "key", path)
    try:
        check_name(key, "key", limits)
    except StateError as e:
        raise type(e)(f"key: {e.message} at {path}.key") from None
    op = StateOperation(type=op_type, key=key)
    if "id" in raw:
        op.id = raw["id"]
    if op_type in ("set", "setField"):
        op.value = import_value(_field(raw, "value", path), limits, f"{path}.value")
    if op_type in ("setField", "deleteField"):
        op.field = check_field(_field(raw, "field", path), f"field at {path}.field")
    elif op_type in ("increment", "decrement"):
        op.delta = check_delta(raw.get("delta", 1), f"delta at {path}.delta")
    elif op_type == "compareAndSwap":
        op.expected = import_value(_field(raw, "expected", path), limits, f"{path}.expected")
        new = raw["value"] if "value" in raw else _field(raw, "newValue", path)
        op.value = import_value(new, limits, f"{path}.value")
    elif op_type in ("push", "unshift"):
        if "items" in raw:
            items = raw["items"]
            if not isinstance(items, (list, tuple)):
                raise InvalidArgumentError(f"items: expected an array, got {describe(items)} at {path}.items")
            op.items = import_value(list(items), limits, f"{path}.items")
        else:
            op.items = [import_value(_field(raw, "value", path), limits, f"{path}.value")]
    elif op_type == "update":
        if not allow_update:
            raise InvalidArgumentError(f"type: 'update' records carry code and are refused here at {path}.type")
        fn = _field(raw, "updateFn", path)
        if not callable(fn):
            raise InvalidArgumentError(f"updateFn: expected a function at {path}.updateFn")
        op.update_fn = fn
    return op


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
    """
    if not isinstance(raw_ops, (list, tuple)):
        raise InvalidArgumentError(f"operations: expected an array, got {describe(raw_ops)} at {path}")
    if len(raw_ops) > limits.max_operations:
        raise LimitExceededError(f"operations: {len(raw_ops)} operations, the limit is {limits.max_operations}")
    out: list[StateOperation | StateError] = []
    for i, raw in enumerate(raw_ops):
        try:
            out.append(_parse_one(raw, f"{path}[{i}]", limits, allow_update))
        except StateError as e:
            if not collect:
                e.details["failed_index"] = i
                raise
            if isinstance(raw, dict) and "id" in raw:
                e.details["id"] = raw["id"]
            out.append(e)
    return out


class StateChange(msgspec.Struct, frozen=True):
    """One written entry, as change listeners see it.

    ``event`` is "created", "updated" or "deleted"; a missing side is None.
    """

    trace_id: str
    key: str
    op: str
    event: str
    old_value: Any
    new_value: Any

    def to_wire(self) -> dict[str, Any]:
        """The contract's JSON shape (camelCase)."""
        return {
            "traceId": self.trace_id,
            "key": self.key,
            "op": self.op,
            "event": self.event,
            "oldValue": self.old_value,
            "newValue": self.new_value,
        }
