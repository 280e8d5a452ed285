"""The handler table: RPC methods declared as data.

Each method is ``name -> (args struct, async handler)``. The table decodes a
request's raw args straight into the struct (a mismatch is INVALID_ARGUMENT
with the path of the bad field), runs the handler, and turns every failure
into a stable code: state errors keep theirs, an unknown method is
NOT_FOUND, anything unexpected is INTERNAL and logged. Nothing in a frame is
ever evaluated as code.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from ..errors import InternalError, InvalidArgumentError, LimitExceededError, NotFoundError, StateError
from ..feed import enter_write_context, exit_write_context
from ..manager import StateManager
from ..values import MAX_INT_DIGITS
from .frames import to_log_line

__all__ = ["CallContext", "HandlerTable", "state_handlers"]

log = logging.getLogger("motia_state.rpc")

A = TypeVar("A")


@dataclass
class CallContext:
    """What a handler knows about the worker that called it."""

    step: str = "?"
    trace_id: str | None = None
    #: The depth of the invocation being served (its writes' feed records carry it).
    depth: int = 0
    #: Orchestrator hooks, set by the runtime for one invocation.
    on_emit: Callable[[dict[str, Any]], Any] | None = None
    on_log: Callable[[dict[str, Any]], Any] | None = None


Handler = Callable[[A, CallContext], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class _Method(Generic[A]):
    decoder: msgspec.json.Decoder[A]
    handler: Handler[A]
    stamped: bool


class HandlerTable:
    """Method name -> typed args -> async handler; open to orchestrators."""

    def __init__(self) -> None:
        self._methods: dict[str, _Method[Any]] = {}

    def register(self, name: str, args_type: type[A] | Any, handler: Handler[A], *, stamped: bool = False) -> None:
        """Serve ``name``: args are decoded as ``args_type`` (``Any`` for raw JSON).

        ``stamped``: the handler runs in the write context of the invocation
        being served (``ctx.depth`` and the origin ``{"step", "traceId"}``),
        so the feed records of its writes carry them.
        """
        self._methods[name] = _Method(msgspec.json.Decoder(args_type), handler, stamped)

    def include(self, other: HandlerTable) -> None:
        """Serve every method of ``other`` too (its entries win on a clash)."""
        self._methods.update(other._methods)

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    def names(self) -> list[str]:
        """Every served method, sorted."""
        return sorted(self._methods)

    async def dispatch(self, name: str, raw_args: bytes | msgspec.Raw, ctx: CallContext) -> Any:
        """Run one request; raises StateError (with its code) on any failure."""
        method = self._methods.get(name)
        if method is None:
            raise NotFoundError(f"no handler for method {name!r}")
        try:
            args = method.decoder.decode(raw_args)
        except msgspec.ValidationError as e:
            if str(e).startswith("Integer value out of range"):
                # An integer past MAX_INT_DIGITS: the same code as through the Python API.
                raise LimitExceededError(f"an integer has more than {MAX_INT_DIGITS} digits: {e}") from None
            raise InvalidArgumentError(_args_message(e)) from None
        except msgspec.DecodeError as e:
            raise InvalidArgumentError(f"args are not valid JSON: {e}") from None
        except RecursionError:
            raise LimitExceededError("args are nested too deeply to be read") from None
        token = None
        if method.stamped:
            origin = None if ctx.trace_id is None else {"step": ctx.step, "traceId": ctx.trace_id}
            token = enter_write_context(ctx.depth, origin)
        try:
            return await method.handler(args, ctx)
        except StateError:
            raise
        except (TypeError, ValueError) as e:
            # Validation in plain Python (e.g. an orchestrator's handler).
            raise InvalidArgumentError(str(e)) from e
        except Exception as e:
            log.exception("handler for %s failed (step %s)", to_log_line(name), to_log_line(ctx.step))
            raise InternalError(f"{name} failed: {type(e).__name__}") from e
        finally:
            if token is not None:
                exit_write_context(token)


_MISSING_RE = re.compile(r"Object missing required field `([^`]+)`(?: - at `\$([^`]*)`)?")
_AT_RE = re.compile(r"^(.*) - at `\$([^`]*)`$")


def _args_message(e: msgspec.ValidationError) -> str:
    """msgspec's message in our form: "items: expected array, got int at $.args.items"."""
    text = str(e)
    m = _MISSING_RE.fullmatch(text)
    if m:
        path = f"$.args{m.group(2) or ''}.{m.group(1)}"
        return f"{m.group(1)}: required at {path}"
    m = _AT_RE.match(text)
    if m:
        path = f"$.args{m.group(2)}"
        name = path.rsplit(".", 1)[-1]
        return f"{name}: {m.group(1)[0].lower()}{m.group(1)[1:]} at {path}"
    return f"args: {text}"


# -- the state.* methods ---------------------------------------------------------


class _Key(msgspec.Struct, rename="camel"):
    trace_id: Any
    key: Any


class _Set(msgspec.Struct, rename="camel"):
    trace_id: Any
    key: Any
    value: Any


class _Delta(msgspec.Struct, rename="camel"):
    trace_id: Any
    key: Any
    delta: Any = 1


class _Cas(msgspec.Struct, rename="camel"):
    trace_id: Any
    key: Any
    expected: Any
    new_value: Any


class _Items(msgspec.Struct, rename="camel"):
    trace_id: Any
    key: Any
    items: list[Any]


class _SetField(msgspec.Struct, rename="camel"):
    trace_id: Any
    key: Any
    field: Any
    value: Any


class _Field(msgspec.Struct, rename="camel"):
    trace_id: Any
    key: Any
    field: Any


class _GroupId(msgspec.Struct, rename="camel"):
    group_id: Any


class _Trace(msgspec.Struct, rename="camel"):
    trace_id: Any


class _Ops(msgspec.Struct, rename="camel"):
    trace_id: Any
    operations: Any


class _Nothing(msgspec.Struct):
    pass


def state_handlers(manager: StateManager, table: HandlerTable | None = None) -> HandlerTable:
    """Register every ``state.*`` method over ``manager`` (in a new table by default).

    Transaction and batch records are validated by the adapter; an
    ``update`` record can never carry a function in JSON, so it is refused
    there like any other malformed record. Every request runs in the write
    context of the invocation it serves, so the feed records of its writes
    carry that invocation's depth and origin (step and traceId).
    """
    t = table if table is not None else HandlerTable()
    m = manager
    # Plain functions returning the manager's coroutine: one coroutine fewer per request.

    def get(a: _Key, c: CallContext) -> Awaitable[Any]:
        return m.get(a.trace_id, a.key)

    def delete(a: _Key, c: CallContext) -> Awaitable[Any]:
        return m.delete(a.trace_id, a.key)

    def exists(a: _Key, c: CallContext) -> Awaitable[Any]:
        return m.exists(a.trace_id, a.key)

    def pop(a: _Key, c: CallContext) -> Awaitable[Any]:
        return m.pop(a.trace_id, a.key)

    def shift(a: _Key, c: CallContext) -> Awaitable[Any]:
        return m.shift(a.trace_id, a.key)

    def set_(a: _Set, c: CallContext) -> Awaitable[Any]:
        return m.set(a.trace_id, a.key, a.value)

    def increment(a: _Delta, c: CallContext) -> Awaitable[Any]:
        return m.increment(a.trace_id, a.key, a.delta)

    def decrement(a: _Delta, c: CallContext) -> Awaitable[Any]:
        return m.decrement(a.trace_id, a.key, a.delta)

    def cas(a: _Cas, c: CallContext) -> Awaitable[Any]:
        return m.compare_and_swap(a.trace_id, a.key, a.expected, a.new_value)

    def push(a: _Items, c: CallContext) -> Awaitable[Any]:
        return m.push(a.trace_id, a.key, *a.items)

    def unshift(a: _Items, c: CallContext) -> Awaitable[Any]:
        return m.unshift(a.trace_id, a.key, *a.items)

    def set_field(a: _SetField, c: CallContext) -> Awaitable[Any]:
        return m.set_field(a.trace_id, a.key, a.field, a.value)

    def delete_field(a: _Field, c: CallContext) -> Awaitable[Any]:
        return m.delete_field(a.trace_id, a.key, a.field)

    def get_group(a: _GroupId, c: CallContext) -> Awaitable[Any]:
        return m.get_group(a.group_id)

    def keys(a: _Trace, c: CallContext) -> Awaitable[Any]:
        return m.keys(a.trace_id)

    def clear(a: _Trace, c: CallContext) -> Awaitable[Any]:
        return m.clear(a.trace_id)

    def groups(a: _Nothing, c: CallContext) -> Awaitable[Any]:
        return m.groups()

    async def transaction(a: _Ops, c: CallContext) -> Any:
        return (await m.transaction(a.trace_id, a.operations)).to_wire()

    async def batch(a: _Ops, c: CallContext) -> Any:
        return (await m.batch(a.trace_id, a.operations)).to_wire()

    for name, args_type, handler in (
        ("state.get", _Key, get),
        ("state.delete", _Key, delete),
        ("state.exists", _Key, exists),
        ("state.pop", _Key, pop),
        ("state.shift", _Key, shift),
        ("state.set", _Set, set_),
        ("state.increment", _Delta, increment),
        ("state.decrement", _Delta, decrement),
        ("state.compareAndSwap", _Cas, cas),
        ("state.push", _Items, push),
        ("state.unshift", _Items, unshift),
        ("state.setField", _SetField, set_field),
        ("state.deleteField", _Field, delete_field),
        ("state.getGroup", _GroupId, get_group),
        ("state.keys", _Trace, keys),
        ("state.clear", _Trace, clear),
        ("state.groups", _Nothing | None, groups),
        ("state.transaction", _Ops, transaction),
        ("state.batch", _Ops, batch),
    ):
        t.register(name, args_type, handler, stamped=True)
    return t
