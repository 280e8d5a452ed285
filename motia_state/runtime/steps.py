"""call_step_file: run one invocation of a step file in a fresh worker process.

The worker itself (spawn, serve, invoke, shutdown) is
:class:`~motia_state.runtime.worker.StepWorker`; what it is served is in
:mod:`motia_state.runtime.services`; warm workers reused between calls are
:class:`~motia_state.runtime.pool.WorkerPool`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

from ..adapters.base import StateAdapter
from ..errors import StateError
from ..manager import StateManager
from ..rpc.frames import DEFAULT_MAX_FRAME_BYTES
from ..rpc.handlers import HandlerTable
from .checks import check_frame_limit, check_timeout, encode_invoke, resolve_command
from .services import EmitHook, handler_table
from .worker import StepWorker

__all__ = ["call_step_file"]


async def call_step_file(
    path: str | os.PathLike[str],
    *,
    data: Any = None,
    trace_id: str,
    state: StateManager | StateAdapter,
    timeout: float | None = None,
    on_emit: EmitHook | None = None,
    on_log: EmitHook | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    interpreters: Mapping[str, str] | None = None,
    handlers: HandlerTable | None = None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    depth: int = 0,
    context_first: bool = False,
) -> Any:
    """Run one invocation of a step file and return its handler's result.

    ``state`` serves the step's ``ctx.state`` calls. ``on_emit`` and
    ``on_log`` receive the step's emits and logs (sync or async). ``env``
    adds variables to the parent's environment; ``interpreters`` overrides
    the interpreter per language (``{"node": "/opt/node/bin/node"}``);
    ``handlers`` adds an orchestrator's own RPC methods. A relative
    ``path`` is relative to the parent's working directory, also when the
    worker runs in another ``cwd``. ``depth`` is the invocation's depth (0
    for an API, cron or manual call; its cause's + 1 for one caused by a
    state change or an event): the step's writes carry it, with the step
    and ``trace_id`` as their origin, into the change feed. With
    ``context_first`` the handler is called with its context alone
    (``handler(ctx)``, Motia's cron handlers), ``data`` unused.

    Raises :class:`StepError` when the handler raises (with its message and
    stack), when the worker dies or cannot start, or when its result is over
    the frame limit; :class:`StepTimeoutError` past ``timeout`` seconds. At
    once, before anything starts: ``InvalidArgumentError`` when the input is
    not JSON (NaN, bytes, ...) or ``max_frame_bytes`` cannot carry the
    state's largest transaction result, ``LimitExceededError`` when the
    input is over the frame limit.
    """
    # Everything that can be refused is refused before a process starts.
    # A relative path names a file in the parent's directory, whatever ``cwd`` the worker gets.
    path = os.path.abspath(path)
    argv = resolve_command(path, interpreters)
    step = Path(path).name
    check_timeout(timeout)
    manager = state if isinstance(state, StateManager) else StateManager(state)
    check_frame_limit(max_frame_bytes, manager.limits)
    invoke_args = encode_invoke(step, data, trace_id, max_frame_bytes, manager.limits, context_first=context_first)
    table = handler_table(manager, handlers)
    worker = await StepWorker.start(argv, step, table, env=env, cwd=cwd, max_frame_bytes=max_frame_bytes)
    result: Any = None
    failure: StateError | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.serve)
            answered = False  # stays False when the call is cancelled
            try:
                result = await worker.invoke(
                    invoke_args, trace_id=trace_id, timeout=timeout, on_emit=on_emit, on_log=on_log, depth=depth
                )
                answered = True
            except StateError as e:  # raised below, outside the task group (not as a group)
                failure = e
                answered = True
            finally:
                with anyio.CancelScope(shield=True):
                    await worker.stop(polite=answered)
    finally:
        await worker.close()
    if failure is not None:
        raise failure
    return result
