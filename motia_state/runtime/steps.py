"""call_step_file: run one step in a child process and serve its state calls.

The runtime knows processes, not frames: a :class:`StepWorker` starts
``<interpreter> <runner> <step file>`` in a new session (its own process
group), serves it through a :class:`~motia_state.rpc.Peer`, sends
``invoke``, enforces the timeout, forwards stderr to ``logging``, and makes
sure nothing it started outlives it. ``call_step_file`` uses one worker for
one call; :class:`~motia_state.runtime.pool.WorkerPool` keeps them warm.
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

__all__ = [
    "StepError",
    "StepTimeoutError",
    "StepWorker",
    "call_step_file",
    "encode_invoke",
    "handler_table",
    "resolve_command",
    "runtime_handlers",
]

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


class StepWorker:
    """One worker process for one step file, and the peer that serves it.

    :meth:`start` spawns it; :meth:`serve` must then run (in a task group)
    for as long as the worker lives; :meth:`invoke` runs one invocation at a
    time; :meth:`shutdown` asks it to exit (and kills what lingers), and
    :meth:`close` releases the pipes. ``call_step_file`` uses one worker for
    one call; a :class:`~motia_state.runtime.pool.WorkerPool` keeps them warm.
    """

    def __init__(
        self,
        step: str,
        proc: Process,
        receive: ByteReceiveStream,
        send: ByteSendStream,
        stderr: ByteReceiveStream,
        peer: Peer,
    ) -> None:
        self.step = step
        self.proc = proc
        self.peer = peer
        self.tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._receive = receive
        self._send = send
        self._stderr = stderr
        self._ended = anyio.Event()  # the worker's stdout and stderr have both ended
        self._killed = False

    @classmethod
    async def start(
        cls,
        argv: list[str],
        step: str,
        table: HandlerTable,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> StepWorker:
        """Spawn ``argv`` in a new session with the protocol on its stdin/stdout."""
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
        peer = Peer(receive, send, table, CallContext(step=step), max_frame_bytes=max_frame_bytes)
        return cls(step, proc, receive, send, stderr, peer)

    @property
    def alive(self) -> bool:
        """False once the worker was killed or its output ended."""
        return not (self._killed or self.peer.closed or self._ended.is_set())

    async def serve(self) -> None:
        """Serve the worker's requests and forward its stderr until both end."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_drain_stderr, self._stderr, self.step, self.tail)
                tg.start_soon(self.peer.run)
        finally:
            self._ended.set()

    async def invoke(
        self,
        invoke_args: msgspec.Raw,
        *,
        trace_id: str,
        timeout: float | None = None,
        on_emit: EmitHook | None = None,
        on_log: EmitHook | None = None,
    ) -> Any:
        """Run one invocation; raises StepError / StepTimeoutError like call_step_file."""
        outcome = _Outcome()
        context = self.peer.context
        context.trace_id, context.on_emit, context.on_log = trace_id, on_emit, on_log
        context.extras = {"outcome": outcome}

        async def request() -> None:
            try:
                outcome.finish(await self.peer.request("invoke", invoke_args))
            except StateError as e:
                outcome.finish(error=e)

        try:
            with anyio.fail_after(timeout):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(request)
                    await outcome.done.wait()
                    tg.cancel_scope.cancel()  # a legacy ``close`` may have ended it first
        except TimeoutError:
            self.kill()
            raise StepTimeoutError(
                f"{self.step} ran past its timeout of {timeout} s and was killed",
                step=self.step,
                stderr_tail="\n".join(self.tail),
            ) from None
        error = outcome.error
        if isinstance(error, PeerClosedError):
            # It died: let it exit (its stderr tail and exit code tell why).
            with anyio.move_on_after(EXIT_GRACE):
                await self.proc.wait()
            self.kill()
            with anyio.move_on_after(EXIT_GRACE):
                await self._ended.wait()
            rc = self.proc.returncode
            stderr_tail = "\n".join(self.tail)
            raise StepError(
                f"{self.step} exited with code {rc} before answering"
                + (f"; stderr ends with:\n{stderr_tail}" if stderr_tail else ""),
                exit_code=rc,
                stderr_tail=stderr_tail,
                step=self.step,
            )
        if isinstance(error, StepError):
            raise error
        if isinstance(error, StateError):
            raise StepError(
                error.message, stack=error.details.get("stack"), step=self.step, stderr_tail="\n".join(self.tail)
            )
        return outcome.result

    async def shutdown(self) -> None:
        """Ask the worker to exit; kill its process group after EXIT_GRACE or once it has."""
        if self.alive:
            await self.peer.notify("shutdown")
        await self._send.aclose()
        with anyio.move_on_after(EXIT_GRACE):
            await self.proc.wait()
        # Whatever still holds the pipes open (a straggler the step spawned,
        # or a worker ignoring shutdown) goes now.
        self.kill()

    async def stop(self, *, polite: bool) -> None:
        """End the worker: ask it to exit if it answered its last call, else kill it at once.

        A worker whose call was cancelled, timed out or died may be stuck, so
        it gets no shutdown grace.
        """
        if polite and self.alive:
            await self.shutdown()
        else:
            self.kill()

    def kill(self) -> None:
        """Kill the worker's process group (everything the step spawned too)."""
        self._killed = True
        _kill_group(self.proc)

    async def close(self) -> None:
        """Kill what is left and release the pipes and the process."""
        self.kill()
        with anyio.CancelScope(shield=True):
            if isinstance(self._send, FdSendStream):
                self._send.abort()
            else:
                await self._send.aclose()
            await self._receive.aclose()
            await self.proc.aclose()
            await self._stderr.aclose()


def resolve_command(path: str | os.PathLike[str], interpreters: Mapping[str, str] | None) -> list[str]:
    """The argv that runs a step file; StepError at once when the file, runner or interpreter is missing."""
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
    return argv


def encode_invoke(step: str, data: Any, trace_id: str, max_frame_bytes: int) -> msgspec.Raw:
    """The ``invoke`` args, encoded once; LimitExceededError when the frame would be over the limit."""
    # The frame carries these bytes as they are.
    invoke_args = msgspec.Raw(msgspec.json.encode({"data": data, "traceId": trace_id}))
    invoke_size = len(encode_request(1, "invoke", invoke_args))
    if invoke_size > max_frame_bytes:
        # The worker would drop the frame unread and never answer.
        raise LimitExceededError(
            f"the input of {step} encodes to {invoke_size} bytes, over the {max_frame_bytes}-byte frame limit"
        )
    return invoke_args


def handler_table(state: StateManager | StateAdapter, handlers: HandlerTable | None) -> HandlerTable:
    """The table a worker is served with: state, log, emit, legacy result/close, and ``handlers``."""
    manager = state if isinstance(state, StateManager) else StateManager(state)
    table = runtime_handlers(state_handlers(manager))
    if handlers is not None:
        table.include(handlers)
    return table


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
    # Everything that can be refused is refused before a process starts.
    argv = resolve_command(path, interpreters)
    step = Path(path).name
    invoke_args = encode_invoke(step, data, trace_id, max_frame_bytes)
    table = handler_table(state, handlers)
    worker = await StepWorker.start(argv, step, table, env=env, cwd=cwd, max_frame_bytes=max_frame_bytes)
    result: Any = None
    failure: StateError | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.serve)
            answered = False  # stays False when the call is cancelled
            try:
                result = await worker.invoke(
                    invoke_args, trace_id=trace_id, timeout=timeout, on_emit=on_emit, on_log=on_log
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
