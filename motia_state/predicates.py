"""The predicate language: one small condition language, parsed and evaluated.

A predicate asks something of one entry's value. It guards a transaction
(a ``check`` record), and the same language serves state-trigger conditions
and the workbench's filter:

- a leaf ``{"op": OP, "value": v, "path": p}``: ``path`` is a JSON Pointer
  (RFC 6901) into the value, ``""`` or absent for the whole value;
- ``{"all": [pred, ...]}``, ``{"any": [pred, ...]}``, ``{"not": pred}``.

:func:`parse_predicate` validates a raw predicate and returns its normal
form, a plain dict: every leaf has ``op`` and ``path`` (``""`` for the whole
value) and ``value`` only when its operator takes one. The Redis adapter's
Lua program evaluates exactly that form, in a function of the same name as
:func:`predicate_holds`. Pure functions: no I/O, no state.

Internal module: used by check records (and the runtime's conditions and filters).
"""

from __future__ import annotations

from typing import Any, Final

from .errors import InvalidArgumentError, LimitExceededError, StateError
from .values import DEFAULT_LIMITS, MISSING, Limits, describe, import_value, is_number, json_equal, json_type

__all__ = [
    "COMBINATORS",
    "OPERATORS",
    "TYPE_NAMES",
    "Predicate",
    "parse_predicate",
    "predicate_holds",
    "resolve_path",
]

Predicate = dict[str, Any]
"""A predicate in normal form (see the module docstring)."""

#: Operators that compare the value at the path with a given ``value``.
_WITH_VALUE: Final = frozenset(
    {"eq", "neq", "gt", "gte", "lt", "lte", "contains", "notContains", "startsWith", "endsWith", "type"}
)
#: Operators that look at the value alone; a ``value`` sent with them is ignored.
_WITHOUT_VALUE: Final = frozenset({"isNull", "isNotNull", "exists", "missing"})
#: Every operator of a leaf.
OPERATORS: Final = _WITH_VALUE | _WITHOUT_VALUE
#: The combinators.
COMBINATORS: Final = ("all", "any", "not")
#: The JSON type names that ``type`` accepts.
TYPE_NAMES: Final = frozenset({"null", "boolean", "number", "string", "array", "object"})

_LEAF_FIELDS: Final = frozenset({"op", "value", "path"})


def parse_predicate(
    raw: Any,
    where: str = "$",
    *,
    limits: Limits = DEFAULT_LIMITS,
    extra: frozenset[str] = frozenset(),
    filter_fields: bool = False,
) -> Predicate:
    """Validate a raw predicate and return its normal form.

    Anything malformed is INVALID_ARGUMENT naming the field (``where`` is the
    predicate's own path in the caller's input, e.g. ``$.operations[2]``).
    ``extra`` names fields of the enclosing object that are not part of the
    predicate (a check record's ``type``, ``key`` and ``id``) and are
    skipped at the top level only. ``filter_fields`` accepts Motia's filter
    field ``valueKey`` (a top-level field name) in place of ``path``.
    Predicates nest at most ``limits.max_depth`` levels (LIMIT_EXCEEDED).
    """
    return _parse(raw, where, limits, extra, filter_fields, 1)


def _parse(raw: Any, where: str, limits: Limits, extra: frozenset[str], filter_fields: bool, depth: int) -> Predicate:
    if depth > limits.max_depth:
        raise LimitExceededError(f"predicate at {where} is nested deeper than {limits.max_depth} levels")
    if type(raw) is not dict:
        raise InvalidArgumentError(f"predicate: expected an object, got {describe(raw)} at {where}")
    fields = [name for name in raw if name not in extra]
    combinators = [name for name in fields if name in COMBINATORS]
    if combinators:
        if len(fields) > 1:
            others = ", ".join(repr(name) for name in fields if name != combinators[0])
            raise InvalidArgumentError(
                f"{combinators[0]}: a combinator stands alone, but {others} is beside it at {where}"
            )
        name = combinators[0]
        inner = raw[name]
        if name == "not":
            return {"not": _parse(inner, f"{where}.not", limits, frozenset(), filter_fields, depth + 1)}
        if type(inner) is not list:
            raise InvalidArgumentError(
                f"{name}: expected an array of predicates, got {describe(inner)} at {where}.{name}"
            )
        return {
            name: [
                _parse(item, f"{where}.{name}[{i}]", limits, frozenset(), filter_fields, depth + 1)
                for i, item in enumerate(inner)
            ]
        }
    return _parse_leaf(raw, fields, where, limits, filter_fields)


def _parse_leaf(raw: dict[str, Any], fields: list[str], where: str, limits: Limits, filter_fields: bool) -> Predicate:
    allowed = _LEAF_FIELDS | {"valueKey"} if filter_fields else _LEAF_FIELDS
    for name in fields:
        if name not in allowed:
            raise InvalidArgumentError(f"{name}: a predicate does not take this field at {where}.{name}")
    if "op" not in raw:
        raise InvalidArgumentError(f"op: required (or one of all, any, not) at {where}.op")
    op = raw["op"]
    if type(op) is not str or op not in OPERATORS:
        raise InvalidArgumentError(f"op: unknown operator {op!r} at {where}.op")
    leaf: Predicate = {"op": op, "path": _parse_path(raw, where, filter_fields)}
    if op in _WITHOUT_VALUE:
        return leaf
    if "value" not in raw:
        raise InvalidArgumentError(f"value: required by {op!r} at {where}.value")
    value = raw["value"]
    if op == "type":
        if type(value) is not str or value not in TYPE_NAMES:
            raise InvalidArgumentError(
                f"value: 'type' takes one of {', '.join(sorted(TYPE_NAMES))}, got {value!r} at {where}.value"
            )
    elif op in ("startsWith", "endsWith") and type(value) is not str:
        raise InvalidArgumentError(f"value: {op!r} takes a string, got {describe(value)} at {where}.value")
    try:
        leaf["value"] = import_value(value, limits, f"{where}.value")
    except StateError as e:
        raise type(e)(f"value: {e.message}") from None
    return leaf


def _parse_path(raw: dict[str, Any], where: str, filter_fields: bool) -> str:
    if filter_fields and "valueKey" in raw:
        if "path" in raw:
            raise InvalidArgumentError(f"valueKey: give path or valueKey, not both at {where}.valueKey")
        name = raw["valueKey"]
        if type(name) is not str:
            raise InvalidArgumentError(f"valueKey: expected a string, got {describe(name)} at {where}.valueKey")
        return "/" + name.replace("~", "~0").replace("/", "~1") if name else ""
    path = raw.get("path", "")
    if type(path) is not str:
        raise InvalidArgumentError(f"path: expected a JSON Pointer string, got {describe(path)} at {where}.path")
    if path and path[0] != "/":
        raise InvalidArgumentError(f"path: a JSON Pointer is empty or starts with '/', got {path!r} at {where}.path")
    # RFC 6901: '~' is only ever followed by '0' or '1'.
    at = path.find("~")
    while at != -1:
        if path[at + 1 : at + 2] not in ("0", "1"):
            raise InvalidArgumentError(f"path: '~' must be followed by 0 or 1 in {path!r} at {where}.path")
        at = path.find("~", at + 2)
    return path


def resolve_path(value: Any, path: str) -> Any:
    """The value at a JSON Pointer, or ``MISSING``.

    A path into ``MISSING``, through a scalar, past an array's end, or with
    a token that is not an array index (``-``, ``01``, ``x``) reaches
    ``MISSING``. ``path`` must be valid (as :func:`parse_predicate` leaves it).
    """
    if not path:
        return value
    current = value
    for token in path[1:].split("/"):
        t = type(current)
        if t is dict:
            if "~" in token:
                token = token.replace("~1", "/").replace("~0", "~")
            current = current.get(token, MISSING)
        elif t is list:
            # Array indexes are 0 or digits without a leading zero.
            if not token.isdigit() or not token.isascii() or (len(token) > 1 and token[0] == "0"):
                return MISSING
            index = int(token)
            if index >= len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def _contains(found: Any, wanted: Any) -> bool:
    t = type(found)
    if t is list:
        return any(json_equal(item, wanted) for item in found)
    if t is str:
        return type(wanted) is str and wanted in found
    return False


def _ordered(found: Any, wanted: Any) -> bool:
    """Whether the two compare: both numbers, or both strings."""
    if is_number(found):
        return is_number(wanted)
    return type(found) is str and type(wanted) is str


def _leaf_holds(pred: Predicate, found: Any) -> bool:
    op = pred["op"]
    present = found is not MISSING
    if op == "eq":
        return json_equal(found if present else None, pred["value"])
    if op == "neq":
        return not json_equal(found if present else None, pred["value"])
    if op == "exists":
        return present
    if op == "missing":
        return not present
    if op == "isNull":
        return not present or found is None
    if op == "isNotNull":
        return present and found is not None
    if op == "contains":
        return present and _contains(found, pred["value"])
    if op == "notContains":
        return not (present and _contains(found, pred["value"]))
    if not present:
        return False
    wanted = pred["value"]
    if op == "type":
        return bool(json_type(found) == wanted)
    if op == "startsWith":
        return type(found) is str and found.startswith(wanted)
    if op == "endsWith":
        return type(found) is str and found.endswith(wanted)
    if not _ordered(found, wanted):
        return False
    if op == "gt":
        return bool(found > wanted)
    if op == "gte":
        return bool(found >= wanted)
    if op == "lt":
        return bool(found < wanted)
    return bool(found <= wanted)  # lte: parse_predicate admits no other operator


def predicate_holds(pred: Predicate, value: Any, present: bool = True) -> bool:
    """Whether a parsed predicate holds for an entry's value.

    ``present`` is False for a missing entry (``value`` is then ignored); a
    stored null is present. ``pred`` must be in normal form, as
    :func:`parse_predicate` returns it.
    """
    root = value if present else MISSING
    if "op" in pred:
        return _leaf_holds(pred, resolve_path(root, pred["path"]))
    if "all" in pred:
        return all(predicate_holds(p, root, present) for p in pred["all"])
    if "any" in pred:
        return any(predicate_holds(p, root, present) for p in pred["any"])
    return not predicate_holds(pred["not"], root, present)
