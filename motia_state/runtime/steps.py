"""call_step_file: run one step in a child process and serve its state calls.

The runtime knows processes, not frames: it starts ``<interpreter> <runner>
<step file>`` in a new session (its own process group), serves the worker
through a :class:`~motia_state.rpc.Peer`, sends ``invoke``, enforces the
timeout, forwards stderr to ``logging``, and makes sure nothing it started
outlives the call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import msgspec
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

from ..adapters.base import StateAdapter
from ..errors import LimitExceededError, StateError, StepFailedError
from ..manager import StateManager
from ..rpc.frames import DEFAULT_MAX_FRAME_BYTES, LineReader, Oversized, encode_request
from ..rpc.handlers import CallContext, HandlerTable, state_handlers
from ..rpc.peer import Peer, PeerClosedError
from ..rpc.pipes import FdReceiveStream, FdSendStream, on_asyncio, open_pipe
from .runners import command_for, language_of, runner_exists

__all__ = ["StepError", "StepTimeoutError", "call_step_file", "runtime_handlers"]

log = logging.getLogger("motia_state.runtime")
step_log = logging.getLogger("motia_state.step")

#: How long a worker may take to exit after ``shutdown`` before it is killed.
EXIT_GRACE = 5.0
_STDERR_TAIL_LINES = 30


class StepError(StepFailedError):
    """A step failed: its handler raised, it died, or it could not start.

    ``message`` and ``stack`` come from the handler's exception when there
    is one; ``exit_code`` and ``stderr_tail`` when the worker died.
    """

    def __init__(
        self,
        message: str,
        *,
        stack: str | None = None,
        exit_code: int | None = None,
        stderr_tail: str = "",
        step: str | None = None,
    ) -> None:
        super().__init__(message, stack=stack, exit_code=exit_code, stderr_tail=stderr_tail, step=step)
        self.stack = stack
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.step = step


class StepTimeoutError(StepError, TimeoutError):
    """A step ran past its timeout; its process group was killed."""

    code = "TIMEOUT"


EmitHook = Callable[[dict[str, Any]], "Awaitable[Any] | Any"]


class _Outcome:
    """The result of one invocation: by reply to ``invoke`` or by legacy ``close``."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()


class _Log(msgspec.Struct):
    level: str = "info"
    msg: str = ""


class _Emit(msgspec.Struct):
    topic: str
    data: Any = None


async def _maybe_await(value: Any) -> Any:
    if isinstance(value, Awaitable):
        return await value
    return value


def runtime_handlers(table: HandlerTable) -> HandlerTable:
    """Register ``log``, ``emit``, and the legacy ``result`` and ``close``."""

    async def log_(args: dict[str, Any], ctx: CallContext) -> None:
        record = args if isinstance(args, dict) else {"msg": str(args)}
        if ctx.on_log is not None:
            await _maybe_await(ctx.on_log(record))
            return
        level = logging.getLevelName(str(record.get("level", "info")).upper())
        fields = {k: v for k, v in record.items() if k not in ("level", "msg")}
        step_log.log(
            level if isinstance(level, int) else logging.INFO,
            "[%s] %s%s",
            ctx.step,
            record.get("msg", ""),
            f" {fields}" if fields else "",
        )

    async def emit(args: _Emit, ctx: CallContext) -> None:
        event = {"topic": args.topic, "data": args.data, "traceId": ctx.trace_id}
        if ctx.on_emit is not None:
            await _maybe_await(ctx.on_emit(event))
        else:
            log.info("[%s] emit %s (no on_emit hook: dropped)", ctx.step, args.topic)

    async def result(args: Any, ctx: CallContext) -> None:
        ctx.extras["result"] = args

    async def close(args: Any, ctx: CallContext) -> None:
        outcome: _Outcome | None = ctx.extras.get("outcome")
        if outcome is None:
            return
        if isinstance(args, dict) and "message" in args:
            outcome.finish(error=StepError(str(args["message"]), stack=args.get("stack"), step=ctx.step))
        else:
            outcome.finish(ctx.extras.get("result"))

    table.register("log", Any, log_)
    table.register("emit", _Emit, emit)
    table.register("result", Any, result)
    table.register("close", Any, close)
    return table


def _kill_group(proc: Process) -> None:
    # The worker leads its own session, so its pid is the group id: this
    # also reaches anything the step spawned.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _drain_stderr(stderr: ByteReceiveStream, step: str, tail: deque[str]) -> None:
    reader = LineReader(stderr, 64 * 1024)
    while (batch := await reader.receive_batch()) is not None:
        for line in batch:
            text = f"<{line.size} bytes dropped>" if isinstance(line, Oversized) else line.decode("utf-8", "replace")
            tail.append(text)
            step_log.info("[%s] %s", step, text)


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
) -> Any:
    """Run one invocation of a step file and return its handler's result.

    ``state`` serves the step's ``ctx.state`` calls. ``on_emit`` and
    ``on_log`` receive the step's emits and logs (sync or async). ``env``
    adds variables to the parent's environment; ``interpreters`` overrides
    the interpreter per language (``{"node": "/opt/node/bin/node"}``);
    ``handlers`` adds an orchestrator's own RPC methods.

    Raises :class:`StepError` when the handler raises (with its message and
    stack), when the worker dies or cannot start, or when its result is over
    the frame limit; :class:`StepTimeoutError` past ``timeout`` seconds;
    ``LimitExceededError`` at once, before anything starts, when the input
    itself is over the frame limit.
    """
    step = Path(path).name
    if not Path(path).is_file():
        raise StepError(f"step file not found: {path}", step=step)
    argv = command_for(path, interpreters)
    if argv is None:
        raise StepError(f"no runner for {step!r}: use .py, .js, .cjs, .mjs or .rb", step=step)
    language = language_of(path)
    if language is not None and not runner_exists(language):
        raise StepError(f"this installation has no {language} runner for {step}", step=step)
    if shutil.which(argv[0]) is None:
        raise StepError(f"interpreter {argv[0]!r} for {step} was not found", step=step)
    # The input is encoded once, here: the frame carries these bytes as they are.
    invoke_args = msgspec.Raw(msgspec.json.encode({"data": data, "traceId": trace_id}))
    invoke_size = len(encode_request(1, "invoke", invoke_args))
    if invoke_size > max_frame_bytes:
        # The worker would drop the frame unread and never answer.
        raise LimitExceededError(
            f"the input of {step} encodes to {invoke_size} bytes, over the {max_frame_bytes}-byte frame limit"
        )

    manager = state if isinstance(state, StateManager) else StateManager(state)
    table = runtime_handlers(state_handlers(manager))
    if handlers is not None:
        table.include(handlers)
    outcome = _Outcome()
    context = CallContext(step=step, trace_id=trace_id, on_emit=on_emit, on_log=on_log, extras={"outcome": outcome})
    full_env = {**os.environ, **env} if env is not None else None

    # On asyncio the protocol travels over pipes we own (see rpc/pipes.py);
    # elsewhere over anyio's process streams.
    own_pipes = on_asyncio()
    if own_pipes:
        child_in, parent_in = open_pipe()
        parent_out, child_out = open_pipe()
        parent_err, child_err = open_pipe()
    try:
        proc = await anyio.open_process(
            argv,
            stdin=child_in if own_pipes else subprocess.PIPE,
            stdout=child_out if own_pipes else subprocess.PIPE,
            stderr=child_err if own_pipes else subprocess.PIPE,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
        )
    except BaseException as e:  # a failed spawn, or a cancellation: the pipes are still ours
        if own_pipes:
            for fd in (child_in, parent_in, parent_out, child_out, parent_err, child_err):
                os.close(fd)
        if isinstance(e, OSError):
            raise StepError(f"could not start {step}: {e}", step=step) from e
        raise

    receive: ByteReceiveStream
    send: ByteSendStream
    stderr: ByteReceiveStream
    if own_pipes:
        for fd in (child_in, child_out, child_err):
            os.close(fd)  # the worker holds its ends now
        receive, send, stderr = FdReceiveStream(parent_out), FdSendStream(parent_in), FdReceiveStream(parent_err)
    else:
        assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
        receive, send, stderr = proc.stdout, proc.stdin, proc.stderr
    peer = Peer(receive, send, table, context, max_frame_bytes=max_frame_bytes)
    tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)

    async def invoke() -> None:
        try:
            outcome.finish(await peer.request("invoke", invoke_args))
        except StateError as e:
            outcome.finish(error=e)

    timed_out = False
    try:
        with anyio.fail_after(timeout):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_drain_stderr, stderr, step, tail)
                tg.start_soon(peer.run)
                tg.start_soon(invoke)
                await outcome.done.wait()
                if not peer.closed:
                    await peer.notify("shutdown")
                await send.aclose()
                with anyio.move_on_after(EXIT_GRACE):
                    await proc.wait()
                # Whatever still holds the pipes open (a straggler the step
                # spawned, or a worker ignoring shutdown) goes now.
                _kill_group(proc)
    except TimeoutError:
        timed_out = True
    finally:
        _kill_group(proc)
        with anyio.CancelScope(shield=True):
            if isinstance(send, FdSendStream):
                send.abort()
            await receive.aclose()
            await proc.aclose()
            await stderr.aclose()

    if timed_out:
        raise StepTimeoutError(
            f"{step} ran past its timeout of {timeout} s and was killed", step=step, stderr_tail="\n".join(tail)
        )
    if isinstance(outcome.error, PeerClosedError):
        rc = proc.returncode
        stderr_tail = "\n".join(tail)
        raise StepError(
            f"{step} exited with code {rc} before answering"
            + (f"; stderr ends with:\n{stderr_tail}" if stderr_tail else ""),
            exit_code=rc,
            stderr_tail=stderr_tail,
            step=step,
        )
    if isinstance(outcome.error, StepError):
        raise outcome.error
    if isinstance(outcome.error, StateError):
        err = outcome.error
        raise StepError(err.message, stack=err.details.get("stack"), step=step, stderr_tail="\n".join(tail))
    return outcome.result
