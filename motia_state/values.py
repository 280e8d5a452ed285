"""JSON value rules: what a value is, how values compare, copies and limits.

State holds plain JSON built from ``None``, ``bool``, ``int``, ``float``,
``str``, ``list`` and ``dict`` with string keys. Stored values are never
mutated in place by the engine (every operation builds a new container), so
old and new versions may share children; what crosses the API boundary in
either direction is deep-copied, which is what makes state "by value".

The validators every entry point shares live here too: ``check_name``
(groups and keys, the reserved groups included), ``check_delta``,
``check_field``, ``check_int`` and ``import_value`` (a whole value: JSON
only, its depth, its size).

Internal module: the public names (``Limits``) are re-exported by ``motia_state``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from .errors import InvalidArgumentError, LimitExceededError, StateError

__all__ = [
    "MISSING",
    "RESERVED_PREFIX",
    "JsonValue",
    "Limits",
    "check_delta",
    "check_field",
    "check_int",
    "check_name",
    "copy_value",
    "describe",
    "encoded_size",
    "import_counted",
    "import_sized",
    "import_value",
    "is_number",
    "is_reserved_group",
    "json_equal",
    "plain_str",
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
    """Configurable size limits; past one an operation fails with LIMIT_EXCEEDED.

    ``max_depth`` bounds how deep values nest (a scalar is 0 levels, ``[1]``
    one); ``max_records_bytes`` bounds the records of one transaction or
    batch (what their names and values take encoded, as
    :func:`motia_state.records.parse_operations` counts it) and
    ``max_result_bytes`` their encoded results, both checked before
    anything of it is stored.

    Every limit is an integer >= 1 (a bool is not), checked when the
    ``Limits`` is built, so the operations never check them again. A few
    bounds keep every adapter and worker able to serve what the limits
    let in: ``max_depth`` at most :data:`MAX_DEPTH_CEILING` (the depth every
    binding parses), ``max_value_bytes`` and ``max_name_bytes`` at most
    :data:`MAX_BYTES_CEILING` (the largest string Redis keeps); a
    transaction of one ``set`` of the largest value under the longest key
    fits ``max_records_bytes``, and its result fits ``max_result_bytes``
    (the value and the brackets of the results array). Anything else is
    InvalidArgumentError naming the field and the value.
    """

    max_name_bytes: int = 1024
    max_value_bytes: int = 8 * 1024 * 1024
    max_operations: int = 10_000
    max_depth: int = 256
    max_result_bytes: int = 15 * 1024 * 1024
    max_records_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in _LIMIT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name}: expected an integer >= 1, got {value!r}")
            if type(value) is not int:  # an IntEnum member, say: keep the plain int
                object.__setattr__(self, name, int(value))
        if self.max_depth > MAX_DEPTH_CEILING:
            raise InvalidArgumentError(
                f"max_depth: {self.max_depth} is over {MAX_DEPTH_CEILING}, the depth every worker"
                " (Python, Node, Ruby) reads values to"
            )
        for name in ("max_name_bytes", "max_value_bytes"):
            value = getattr(self, name)
            if value > MAX_BYTES_CEILING:
                raise InvalidArgumentError(
                    f"{name}: {value} is over {MAX_BYTES_CEILING} (512 MiB), the largest string Redis keeps"
                )
        one_set = self.max_name_bytes + self.max_value_bytes
        if self.max_records_bytes < one_set:
            raise InvalidArgumentError(
                f"max_records_bytes: {self.max_records_bytes} is under max_name_bytes + max_value_bytes"
                f" ({one_set}): a value that set stores could never be set in a transaction"
            )
        one_result = self.max_value_bytes + 2
        if self.max_result_bytes < one_result:
            raise InvalidArgumentError(
                f"max_result_bytes: {self.max_result_bytes} is under max_value_bytes + 2 ({one_result}):"
                " a transaction could not return a value it reads"
            )


_LIMIT_FIELDS: Final = (
    "max_name_bytes",
    "max_value_bytes",
    "max_operations",
    "max_depth",
    "max_result_bytes",
    "max_records_bytes",
)

#: The deepest ``Limits.max_depth``: every binding parses values this deep and no deeper.
MAX_DEPTH_CEILING: Final = 256

#: The largest ``Limits.max_value_bytes`` and ``max_name_bytes``: Redis keeps strings up to 512 MiB.
MAX_BYTES_CEILING: Final = 512 * 1024 * 1024

DEFAULT_LIMITS: Final = Limits()

#: Groups whose name starts with this belong to the runtime (trigger
#: positions, leases, dead letters): the public API refuses them.
RESERVED_PREFIX: Final = "__motia/"

#: The argument names under which a name is a group (and may be reserved).
_GROUP_ARGS: Final = frozenset({"traceId", "groupId", "group"})

_SCALARS: Final = frozenset({str, int, type(None), bool})
_encoder = msgspec.json.Encoder()
_encode: Final = _encoder.encode


def json_type(value: Any) -> str:
    """The JSON type name of a value: "null", "boolean", "number", "string", "array" or "object"."""
    if value is None:
        return "null"
    t = type(value)
    if t is bool:
        return "boolean"
    if t is int or t is float:
        return "number"
    if t is str:
        return "string"
    return "array" if t is list else "object"


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


#: Integers are at most this many characters of decimal text, a minus sign
#: included: the most that Python (int_max_str_digits) and msgspec read back
#: from JSON text, so whatever is stored can always be read again.
MAX_INT_DIGITS: Final = 4300
INT_BOUND: Final = 10**MAX_INT_DIGITS
#: The lowest bound, built once: a negative integer has one digit less room
#: (its sign takes a character), and negating a 4,300-digit int on every
#: check would cost more than the operation.
INT_LOW: Final = -(10 ** (MAX_INT_DIGITS - 1))


def check_int(value: int, what: str = "value") -> int:
    """An integer whose decimal text (sign included) fits MAX_INT_DIGITS characters."""
    if INT_LOW < value < INT_BOUND:
        return value
    raise LimitExceededError(f"{what} has more than {MAX_INT_DIGITS} characters of decimal text")


def is_unicode(text: str) -> bool:
    """Whether ``text`` has a UTF-8 encoding (no lone surrogates), as JSON text needs."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_delta(delta: object, where: str = "delta") -> int | float:
    """A delta is a finite int or float (a bool is not a number) within the integer limit.

    Returns the delta as a plain int or float: a subclass (an ``IntEnum``
    member, a NumPy ``float64``) is a number as it is in a value, and is
    normalised as :func:`import_value` normalises one.
    """
    t = type(delta)
    if t is int:
        return check_int(delta, where)  # type: ignore[arg-type]
    if t is float and math.isfinite(delta):  # type: ignore[arg-type]
        return delta  # type: ignore[return-value]
    if t is not bool and t is not float and t is not int:
        if isinstance(delta, int) and not isinstance(delta, bool):
            return check_delta(int(delta), where)
        if isinstance(delta, float):
            return check_delta(float(delta), where)
    raise InvalidArgumentError(
        f"{where} must be a finite number, got {describe(delta) if t is not float else repr(delta)}"
    )


def plain_str(text: str) -> str:
    """The plain ``str`` holding a str subclass's characters (an ``enum.StrEnum`` member's value).

    ``str(x)`` is not it: a ``(str, Enum)`` member's ``__str__`` gives its
    qualified name, not the string it is.
    """
    return str.__str__(text)


def check_field(field: object, where: str = "field") -> str:
    """A field name is a non-empty string (valid Unicode); a str subclass counts as its plain str."""
    if type(field) is not str and isinstance(field, str):
        field = plain_str(field)
    if type(field) is str and field:
        if is_unicode(field):
            return field
        raise InvalidArgumentError(f"{where}: must be valid Unicode (it holds a lone surrogate)")
    got = "an empty string" if field == "" else describe(field)
    raise InvalidArgumentError(f"{where}: expected a non-empty string, got {got}")


def check_name(name: object, what: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """Validate a group or key: a non-empty string, no NUL, within the byte limit.

    When ``what`` names a group ("traceId", "groupId" or "group"), a name in
    the runtime's reserved space (starting with ``__motia/``) is refused too.
    A str subclass (an ``enum.StrEnum`` member) is checked and returned as
    its plain str, as it is stored when it is a value: callers use the
    returned name.
    """
    if type(name) is not str and isinstance(name, str):
        name = plain_str(name)
    if type(name) is not str or not name:
        got = "an empty string" if name == "" else describe(name)
        raise InvalidArgumentError(f"{what} must be a non-empty string, got {got}")
    # len(str) * 4 bounds the UTF-8 size, so short names skip the encode.
    if len(name) * 4 > limits.max_name_bytes and len(name.encode("utf-8", "surrogatepass")) > limits.max_name_bytes:
        raise LimitExceededError(f"{what} is longer than {limits.max_name_bytes} bytes of UTF-8")
    if "\x00" in name:
        raise InvalidArgumentError(f"{what} must not contain NUL")
    if not is_unicode(name):
        raise InvalidArgumentError(f"{what} must be valid Unicode (it holds a lone surrogate)")
    if what in _GROUP_ARGS and name.startswith(RESERVED_PREFIX):
        raise InvalidArgumentError(
            f"{what} {name!r} is reserved: groups starting with {RESERVED_PREFIX!r} belong to the runtime"
        )
    return name


def is_reserved_group(name: str) -> bool:
    """Whether ``name`` is in the runtime's reserved group space."""
    return name.startswith(RESERVED_PREFIX)


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

    def check(self, trace_id: object, key: object) -> bool | None:
        """Validate a (group, key) pair, raising check_name's precise error.

        A true result says that a name is a str subclass: the caller must
        go on with the plain strs (:func:`plain_str`) of both. Plain names
        give a false one, so the common call costs no conversion.
        """
        seen = self.seen
        if type(trace_id) is str and type(key) is str and trace_id in seen and key in seen:
            return None
        self._add(check_name(trace_id, "traceId", self.limits))
        self._add(check_name(key, "key", self.limits))
        return type(trace_id) is not str or type(key) is not str

    def _add(self, name: str) -> None:
        # A reserved name may be a valid key but never a group: never cache
        # one, so that the fast path cannot let it through as a group.
        if name.startswith(RESERVED_PREFIX):
            return
        if len(self.seen) >= 8192:
            self.seen.clear()
        self.seen.add(name)


_SCALAR, _ARRAY, _OBJECT = 0, 1, 2


_HERE: Final = object()


def _path(stack: list[_Frame], last: object = _HERE) -> str:
    """``$[0].a``: where a value sits, for error messages (built only on error)."""
    tokens = [frame[3] for frame in stack[1:]]
    if last is not _HERE:
        tokens.append(last)
    text = "$" + "".join(f"[{t}]" if type(t) is int else f".{t}" for t in tokens)
    # A path 256 levels deep is unreadable in a message: keep its end.
    return text if len(text) <= 120 else f"$...{text[-100:]}"


def _node(value: Any, stack: list[_Frame], at: object) -> tuple[int, Any]:
    """Classify one value: ``(kind, plain value)``; scalars come back checked."""
    t = type(value)
    if t is str:
        if is_unicode(value):
            return _SCALAR, value
        raise InvalidArgumentError(f"must be JSON: a string with a lone surrogate at {_path(stack, at)}")
    if t is int:
        if INT_LOW < value < INT_BOUND:
            return _SCALAR, value
        raise LimitExceededError(
            f"has an integer of more than {MAX_INT_DIGITS} characters of decimal text at {_path(stack, at)}"
        )
    if t is bool or value is None:
        return _SCALAR, value
    if t is float:
        if math.isfinite(value):
            return _SCALAR, value
        raise InvalidArgumentError(f"must be JSON: non-finite number {value!r} at {_path(stack, at)}")
    if t is list or t is tuple:
        return _ARRAY, value
    if t is dict:
        return _OBJECT, value
    # Subclasses of the JSON types (IntEnum, OrderedDict, ...) are normalised
    # to the plain type so that stored values are always plain JSON.
    if isinstance(value, bool):
        return _SCALAR, bool(value)
    if isinstance(value, int):
        return _node(int(value), stack, at)
    if isinstance(value, float):
        return _node(float(value), stack, at)
    if isinstance(value, str):
        return _node(plain_str(value), stack, at)
    if isinstance(value, (list, tuple)):
        return _ARRAY, value
    if isinstance(value, dict):
        return _OBJECT, value
    raise InvalidArgumentError(f"must be JSON: {type(value).__name__} is not a JSON type at {_path(stack, at)}")


# A container being copied: (source, its copy, iterator over (position, child), position in its parent).
_Frame = tuple[Any, Any, Iterator[tuple[Any, Any]], object]


def _copy(value: Any, max_depth: int, depth_limit: int) -> Any:
    """Validate and deep-copy ``value`` without recursion.

    An explicit stack keeps any nesting from reaching Python's recursion
    limit: past ``max_depth`` levels the value is LIMIT_EXCEEDED (the
    message names ``depth_limit``, the limit the caller configured), and a
    container that holds itself (at any depth) is INVALID_ARGUMENT. The same
    list shared twice, without a cycle, is fine: it is copied twice.
    """
    stack: list[_Frame] = []
    kind, node = _node(value, stack, "")
    if kind == _SCALAR:
        return node
    if max_depth < 1:
        raise LimitExceededError(f"is nested deeper than {depth_limit} levels")
    root: Any = [] if kind == _ARRAY else {}
    stack.append((node, root, iter(enumerate(node)) if kind == _ARRAY else iter(node.items()), ""))
    ancestors = {id(node)}
    while stack:
        source, target, children, _ = stack[-1]
        is_array = type(target) is list
        for at, child in children:
            if not is_array:
                if type(at) is not str:
                    if not isinstance(at, str):
                        raise InvalidArgumentError(
                            f"must be JSON: object key {at!r} is not a string in the object at {_path(stack)}"
                        )
                    at = plain_str(at)  # a StrEnum member as a key: the string it is, as for a value
                if not is_unicode(at):
                    raise InvalidArgumentError(
                        f"must be JSON: an object key with a lone surrogate in the object at {_path(stack)}"
                    )
            kind, node = _node(child, stack, at)
            if kind == _SCALAR:
                if is_array:
                    target.append(node)
                else:
                    target[at] = node
                continue
            if id(node) in ancestors:
                raise InvalidArgumentError(f"must be JSON: it contains itself at {_path(stack, at)}")
            if len(stack) >= max_depth:
                raise LimitExceededError(f"is nested deeper than {depth_limit} levels at {_path(stack, at)}")
            copy: Any = [] if kind == _ARRAY else {}
            if is_array:
                target.append(copy)
            else:
                target[at] = copy
            ancestors.add(id(node))
            stack.append((node, copy, iter(enumerate(node)) if kind == _ARRAY else iter(node.items()), at))
            break
        else:
            stack.pop()
            ancestors.discard(id(source))
    return root


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


def import_value(value: Any, limits: Limits = DEFAULT_LIMITS, what: str = "value", *, nested: int = 0) -> Any:
    """Validate a value coming in from a caller and return the copy to store.

    Raises INVALID_ARGUMENT for anything that is not JSON (a cycle included)
    and LIMIT_EXCEEDED when its encoding is over ``limits.max_value_bytes``
    or it nests deeper than ``limits.max_depth``. ``nested`` is how many
    levels the value will sit below the stored root (1 for a field that
    ``setField`` puts into an object), so the stored whole stays in bounds.
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
    try:
        copied = _copy(value, limits.max_depth - nested, limits.max_depth)
    except StateError as e:
        raise type(e)(f"{what} {e.message}") from None
    if type(copied) is not float and encoded_size(copied) > limits.max_value_bytes:
        raise LimitExceededError(f"{what} is larger than {limits.max_value_bytes} bytes encoded")
    return copied


def import_sized(
    value: Any, limits: Limits = DEFAULT_LIMITS, what: str = "value", *, nested: int = 0
) -> tuple[Any, int]:
    """:func:`import_value`, and the encoded size of what it returns when checking its size computed it (else -1).

    An object or an array is encoded to be checked against
    ``limits.max_value_bytes``; a writer that must know the size too (the
    change feed counts the bytes of its records, a transaction the bytes
    of its records) takes it from here instead of encoding the value a
    second time.
    """
    t = type(value)
    if t is not dict and t is not list:
        return import_value(value, limits, what, nested=nested), -1
    return _import_container(value, limits, what, nested)


def _import_container(value: Any, limits: Limits, what: str, nested: int) -> tuple[Any, int]:
    # A dict or list: copied (its depth and types checked), then encoded once to check its size.
    try:
        copied = _copy(value, limits.max_depth - nested, limits.max_depth)
    except StateError as e:
        raise type(e)(f"{what} {e.message}") from None
    size = encoded_size(copied)
    if size > limits.max_value_bytes:
        raise LimitExceededError(f"{what} is larger than {limits.max_value_bytes} bytes encoded")
    return copied, size


def import_counted(
    value: Any, limits: Limits = DEFAULT_LIMITS, what: str = "value", *, nested: int = 0
) -> tuple[Any, int]:
    """:func:`import_value`, and the encoded size of what it returns, always.

    The size of a transaction's or batch's records is the sum of these. A
    container's size comes from its check against ``limits.max_value_bytes``,
    which encodes it anyway; a scalar's is its own short JSON text (null and
    the booleans not even encoded). The scalar cases are written out here
    rather than delegated, as records hold mostly scalars and every call
    counts in a transaction's parse.
    """
    t = type(value)
    if t is int:
        if INT_LOW < value < INT_BOUND:
            return value, len(_encode(value)) if -(2**63) <= value < 2**64 else encoded_size(value)
        raise LimitExceededError(f"{what} has more than {MAX_INT_DIGITS} characters of decimal text")
    if t is str:
        if not value.isascii() and not is_unicode(value):
            raise InvalidArgumentError(f"{what} must be JSON: a string with a lone surrogate")
        size = len(_encode(value))
        if size > limits.max_value_bytes:
            raise LimitExceededError(f"{what} is larger than {limits.max_value_bytes} bytes encoded")
        return value, size
    if value is None or value is True:
        return value, 4
    if value is False:
        return value, 5
    if t is float and math.isfinite(value):
        return value, len(_encode(value))
    if t is dict or t is list:
        return _import_container(value, limits, what, nested)
    copied = import_value(value, limits, what, nested=nested)
    return copied, encoded_size(copied)


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
