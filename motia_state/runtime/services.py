"""What the runtime serves a worker besides ``state.*``: ``log``, ``emit``, legacy ``result``/``close``.

A worker is served one :class:`~motia_state.rpc.HandlerTable`:
:func:`handler_table` builds it from the ``state.*`` handlers
(:mod:`motia_state.rpc.handlers`), the runtime's own methods
(:func:`runtime_handlers`) and an orchestrator's extra methods. The
per-worker facts those handlers need (the step's name, the hooks and the
invocation in progress) live in a :class:`StepContext`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec

from ..adapters.base import StateAdapter
from ..errors import StepError
from ..manager import StateManager
from ..rpc.frames import to_log_line
from ..rpc.handlers import CallContext, HandlerTable, state_handlers

__all__ = ["EmitHook", "Invocation", "StepContext", "handler_table", "runtime_handlers"]

log = logging.getLogger("motia_state.runtime")
step_log = logging.getLogger("motia_state.step")

#: ``on_emit`` / ``on_log``: called with the event or log record (sync or async).
EmitHook = Callable[[dict[str, Any]], "Awaitable[Any] | Any"]


class Invocation:
    """The outcome of one invocation: by reply to ``invoke``, or by the legacy ``result`` + ``close``."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        #: What a legacy ``result`` notification reported, until ``close`` ends the call.
        self.legacy_result: Any = None

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        """Record the outcome (the first one wins) and wake the caller."""
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()


@dataclass
class StepContext(CallContext):
    """A :class:`~motia_state.rpc.CallContext` for a step worker: also the invocation in progress."""

    invocation: Invocation | None = None


class _Emit(msgspec.Struct):
    topic: str
    data: Any = None


async def _maybe_await(value: Any) -> Any:
    if isinstance(value, Awaitable):
        return await value
    return value


def runtime_handlers(table: HandlerTable) -> HandlerTable:
    """Register ``log``, ``emit``, and the legacy ``result`` and ``close`` in ``table``."""

    async def log_(args: dict[str, Any], ctx: CallContext) -> None:
        record = args if isinstance(args, dict) else {"msg": str(args)}
        if ctx.on_log is not None:
            await _maybe_await(ctx.on_log(record))
            return
        level = logging.getLevelName(str(record.get("level", "info")).upper())
        fields = {k: v for k, v in record.items() if k not in ("level", "msg")}
        # One record, one line: a newline in a message must not forge others.
        step_log.log(
            level if isinstance(level, int) else logging.INFO,
            "[%s] %s%s",
            to_log_line(ctx.step),
            to_log_line(str(record.get("msg", ""))),
            to_log_line(f" {fields}") if fields else "",
        )

    async def emit(args: _Emit, ctx: CallContext) -> None:
        event = {"topic": args.topic, "data": args.data, "traceId": ctx.trace_id}
        if ctx.on_emit is not None:
            await _maybe_await(ctx.on_emit(event))
        else:
            log.info("[%s] emit %s (no on_emit hook: dropped)", to_log_line(ctx.step), to_log_line(args.topic))

    async def result(args: Any, ctx: CallContext) -> None:
        if isinstance(ctx, StepContext) and ctx.invocation is not None:
            ctx.invocation.legacy_result = args

    async def close(args: Any, ctx: CallContext) -> None:
        invocation = ctx.invocation if isinstance(ctx, StepContext) else None
        if invocation is None:
            return
        if isinstance(args, dict) and "message" in args:
            invocation.finish(error=StepError(str(args["message"]), stack=args.get("stack"), step=ctx.step))
        else:
            invocation.finish(invocation.legacy_result)

    table.register("log", Any, log_)
    table.register("emit", _Emit, emit)
    table.register("result", Any, result)
    table.register("close", Any, close)
    return table


def handler_table(state: StateManager | StateAdapter, handlers: HandlerTable | None) -> HandlerTable:
    """The table a worker is served with: state, log, emit, legacy result/close, and ``handlers``."""
    manager = state if isinstance(state, StateManager) else StateManager(state)
    table = runtime_handlers(state_handlers(manager))
    if handlers is not None:
        table.include(handlers)
    return table
