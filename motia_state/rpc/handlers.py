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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from ..errors import InternalError, InvalidArgumentError, LimitExceededError, NotFoundError, StateError
from ..feed import enter_write_context, exit_write_context
from ..manager import StateManager
from ..values import MAX_INT_DIGITS
from .frames import to_log_line

__all__ = ["CallContext", "HandlerTable", "handler_failure", "origin_of", "state_handlers"]

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
class Method(Generic[A]):
    """One served method: how its args decode, its handler, and whether its writes are stamped."""

    decoder: msgspec.json.Decoder[A]
    handler: Handler[A]
    stamped: bool


class HandlerTable:
    """Method name -> typed args -> async handler; open to orchestrators."""

    def __init__(self) -> None:
        self._methods: dict[str, Method[Any]] = {}

    def register(self, name: str, args_type: type[A] | Any, handler: Handler[A], *, stamped: bool = False) -> None:
        """Serve ``name``: args are decoded as ``args_type`` (``Any`` for raw JSON).

        ``stamped``: the handler runs in the write context of the invocation
        being served (``ctx.depth`` and the origin ``{"step", "traceId"}``),
        so the feed records of its writes carry them.
        """
        self._methods[name] = Method(msgspec.json.Decoder(args_type), handler, stamped)

    def include(self, other: HandlerTable) -> None:
        """Serve every method of ``other`` too (its entries win on a clash)."""
        self._methods.update(other._methods)

    @property
    def methods(self) -> Mapping[str, Method[Any]]:
        """Every served method by name (live: what is registered later shows), for a caller that runs requests inline."""
        return self._methods

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    def names(self) -> list[str]:
        """Every served method, sorted."""
        return sorted(self._methods)

    async def dispatch(self, name: str, raw_args: bytes | msgspec.Raw, ctx: CallContext) -> Any:
        """Run one request; raises StateError (with its code) on any failure."""
        handler, args, stamped = self.prepare(name, raw_args)
        token = enter_write_context(ctx.depth, origin_of(ctx)) if stamped else None
        try:
            return await handler(args, ctx)
        except StateError:
            raise
        except Exception as e:
            raise handler_failure(e, name, ctx) from e
        finally:
            if token is not None:
                exit_write_context(token)

    def prepare(self, name: str, raw_args: bytes | msgspec.Raw) -> tuple[Handler[Any], Any, bool]:
        """The handler of ``name``, the request's args decoded for it, and whether it is ``stamped``.

        What :meth:`dispatch` does before it runs the handler, for a caller
        that runs it inline (the peer's read loop). Raises StateError: an
        unknown method is NOT_FOUND, args that do not fit the method's
        struct INVALID_ARGUMENT (or LIMIT_EXCEEDED).
        """
        method = self._methods.get(name)
        if method is None:
            raise NotFoundError(f"no handler for method {name!r}")
        try:
            return method.handler, method.decoder.decode(raw_args), method.stamped
        except msgspec.ValidationError as e:
            if str(e).startswith("Integer value out of range"):
                # An integer past MAX_INT_DIGITS: the same code as through the Python API.
                raise LimitExceededError(f"an integer has more than {MAX_INT_DIGITS} digits: {e}") from None
            raise InvalidArgumentError(_args_message(e)) from None
        except msgspec.DecodeError as e:
            raise InvalidArgumentError(f"args are not valid JSON: {e}") from None
        except RecursionError:
            raise LimitExceededError("args are nested too deeply to be read") from None


def origin_of(ctx: CallContext) -> dict[str, Any] | None:
    """The origin that a stamped request's writes carry: ``{"step", "traceId"}``, or None outside an invocation."""
    return None if ctx.trace_id is None else {"step": ctx.step, "traceId": ctx.trace_id}


def handler_failure(e: Exception, name: str, ctx: CallContext) -> StateError:
    """The error a handler's exception (not a StateError) is answered with: INVALID_ARGUMENT, or INTERNAL (logged)."""
    if isinstance(e, (TypeError, ValueError)):
        # Validation in plain Python (e.g. an orchestrator's handler).
        return InvalidArgumentError(str(e))
    log.error("handler for %s failed (step %s)", to_log_line(name), to_log_line(ctx.step), exc_info=e)
    return InternalError(f"{name} failed: {type(e).__name__}")


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
