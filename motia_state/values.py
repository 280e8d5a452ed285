"""JSON value rules: what a value is, how values compare, copies and limits.

State holds plain JSON built from ``None``, ``bool``, ``int``, ``float``,
``str``, ``list`` and ``dict`` with string keys. Stored values are never
mutated in place by the engine (every operation builds a new container), so
old and new versions may share children; what crosses the API boundary in
either direction is deep-copied, which is what makes state "by value".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from .errors import InvalidArgumentError, LimitExceededError

__all__ = [
    "MISSING",
    "JsonValue",
    "Limits",
    "check_name",
    "copy_value",
    "describe",
    "encoded_size",
    "import_value",
    "is_number",
    "json_equal",
]

JsonValue = Any
"""A JSON value: None, bool, int, float, str, list or dict (str keys)."""


class _Missing:
    """Sentinel for "no entry" (distinct from a stored ``None``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


@dataclass(frozen=True, slots=True)
class Limits:
    """Configurable size limits; past one an operation fails with LIMIT_EXCEEDED."""

    max_name_bytes: int = 1024
    max_value_bytes: int = 8 * 1024 * 1024
    max_operations: int = 10_000


DEFAULT_LIMITS: Final = Limits()

_SCALARS: Final = frozenset({str, int, type(None), bool})
_encoder = msgspec.json.Encoder()


def describe(value: object) -> str:
    """Name a value's JSON type for error messages ("got bool")."""
    if value is None:
        return "null"
    t = type(value)
    if t is bool:
        return "bool"
    if t is int or t is float:
        return "number"
    if t is str:
        return "string"
    if t is list:
        return "array"
    if t is dict:
        return "object"
    return t.__name__


def is_number(value: object) -> bool:
    """True for int and float; a bool is never a number."""
    t = type(value)
    return t is int or t is float


#: Integers may have at most this many decimal digits: the most that
#: Python (int_max_str_digits) and msgspec convert to and from JSON text.
MAX_INT_DIGITS: Final = 4300
INT_BOUND: Final = 10**MAX_INT_DIGITS
#: Its negation, built once: negating a 4,300-digit int on every check would cost more than the operation.
INT_LOW: Final = -INT_BOUND


def check_int(value: int, what: str = "value") -> int:
    """An integer within MAX_INT_DIGITS digits (LIMIT_EXCEEDED past it)."""
    if INT_LOW < value < INT_BOUND:
        return value
    raise LimitExceededError(f"{what} has more than {MAX_INT_DIGITS} digits")


def is_unicode(text: str) -> bool:
    """Whether ``text`` has a UTF-8 encoding (no lone surrogates), as JSON text needs."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_name(name: object, what: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """Validate a group or key: a non-empty string, no NUL, within the byte limit."""
    if type(name) is not str or not name:
        raise InvalidArgumentError(f"{what} must be a non-empty string, got {describe(name)}")
    # len(str) * 4 bounds the UTF-8 size, so short names skip the encode.
    if len(name) * 4 > limits.max_name_bytes and len(name.encode("utf-8", "surrogatepass")) > limits.max_name_bytes:
        raise LimitExceededError(f"{what} is longer than {limits.max_name_bytes} bytes of UTF-8")
    if "\x00" in name:
        raise InvalidArgumentError(f"{what} must not contain NUL")
    if not is_unicode(name):
        raise InvalidArgumentError(f"{what} must be valid Unicode (it holds a lone surrogate)")
    return name


class CheckedNames:
    """Group and key names that passed :func:`check_name` under one ``Limits``.

    A hot group and key then cost two set lookups instead of the full
    check. The set is bounded: past 8,192 names it starts over, so a
    workload of ever-new names just checks them again.
    """

    __slots__ = ("limits", "seen")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.seen: set[str] = set()

    def check(self, trace_id: object, key: object) -> None:
        """Validate a (group, key) pair, raising check_name's precise error."""
        seen = self.seen
        if type(trace_id) is str and type(key) is str and trace_id in seen and key in seen:
            return
        self._add(check_name(trace_id, "traceId", self.limits))
        self._add(check_name(key, "key", self.limits))

    def _add(self, name: str) -> None:
        if len(self.seen) >= 8192:
            self.seen.clear()
        self.seen.add(name)


def _copy(value: Any, path: str) -> Any:
    t = type(value)
    if t is str:
        if is_unicode(value):
            return value
        raise InvalidArgumentError(f"value must be JSON: a string with a lone surrogate at {path}")
    if t is int:
        return check_int(value, f"the integer at {path}")
    if t in _SCALARS:
        return value
    if t is float:
        if math.isfinite(value):
            return value
        raise InvalidArgumentError(f"value must be JSON: non-finite number {value!r} at {path}")
    if t is list or t is tuple:
        return [_copy(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if t is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise InvalidArgumentError(f"value must be JSON: object key {k!r} is not a string at {path}")
            if not is_unicode(k):
                raise InvalidArgumentError(f"value must be JSON: an object key with a lone surrogate at {path}")
            out[k] = _copy(v, f"{path}.{k}")
        return out
    # Subclasses of the JSON types (IntEnum, OrderedDict, ...) are normalised
    # to the plain type so that stored values are always plain JSON.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _copy(float(value), path)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return _copy(list(value), path)
    if isinstance(value, dict):
        return _copy(dict(value), path)
    raise InvalidArgumentError(f"value must be JSON: {type(value).__name__} is not a JSON type at {path}")


def copy_value(value: Any) -> Any:
    """Deep-copy a JSON value that is already known to be valid (fast path)."""
    t = type(value)
    if t in _SCALARS or t is float:
        return value
    if t is list:
        return [copy_value(v) for v in value]
    return {k: copy_value(v) for k, v in value.items()}


def encoded_size(value: Any) -> int:
    """Bytes of the value's compact JSON encoding."""
    try:
        return len(_encoder.encode(value))
    except (TypeError, OverflowError, ValueError):
        # msgspec refuses some huge ints; the standard library never does.
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def import_value(value: Any, limits: Limits = DEFAULT_LIMITS, what: str = "value") -> Any:
    """Validate a value coming in from a caller and return the copy to store.

    Raises INVALID_ARGUMENT for anything that is not JSON and LIMIT_EXCEEDED
    when its encoding is over ``limits.max_value_bytes``.
    """
    t = type(value)
    if t is bool or value is None:
        return value
    if t is int:
        return check_int(value, what)
    if t is str:
        if not is_unicode(value):
            raise InvalidArgumentError(f"{what} must be JSON: a string with a lone surrogate")
        # A str encodes to at most 6 bytes per character (\u escapes).
        if len(value) * 6 + 2 > limits.max_value_bytes and encoded_size(value) > limits.max_value_bytes:
            raise LimitExceededError(f"{what} is larger than {limits.max_value_bytes} bytes encoded")
        return value
    copied = _copy(value, "$")
    if type(copied) is not float and encoded_size(copied) > limits.max_value_bytes:
        raise LimitExceededError(f"{what} is larger than {limits.max_value_bytes} bytes encoded")
    return copied


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, true != 1, objects by pairs, arrays by position."""
    ta, tb = type(a), type(b)
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if ta is list:
        return tb is list and len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if ta is dict:
        return tb is dict and len(a) == len(b) and all(k in b and json_equal(v, b[k]) for k, v in a.items())
    if (ta is int or ta is float) and (tb is int or tb is float):
        return bool(a == b)
    return ta is tb and bool(a == b)
