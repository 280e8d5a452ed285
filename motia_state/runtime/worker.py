"""StepWorker: one worker process for one step file, from spawn to exit.

A :class:`StepWorker` starts ``<interpreter> <runner> <step file>`` in a new
session (its own process group), serves it through a
:class:`~motia_state.rpc.Peer` with the runtime's handler table
(:mod:`.services`), sends ``invoke``, enforces the timeout, forwards stderr
to ``logging``, and makes sure nothing it started outlives it.
:func:`resolve_command` and :func:`encode_invoke` refuse what cannot run
before any process starts. ``call_step_file`` (:mod:`.steps`) uses one
worker for one call; :class:`~motia_state.runtime.pool.WorkerPool` keeps
them warm.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import msgspec
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

from ..errors import LimitExceededError, StateError, StepError, StepTimeoutError
from ..rpc.frames import DEFAULT_MAX_FRAME_BYTES, LineReader, Oversized, encode_request
from ..rpc.handlers import HandlerTable
from ..rpc.peer import Peer, PeerClosedError
from ..rpc.pipes import FdReceiveStream, FdSendStream, on_asyncio, open_pipe
from .runners import command_for, language_of, runner_exists
from .services import EmitHook, Invocation, StepContext, step_log

__all__ = ["EXIT_GRACE", "StepWorker", "encode_invoke", "resolve_command"]

#: How long a worker may take to exit after ``shutdown`` before it is killed.
EXIT_GRACE = 5.0
_STDERR_TAIL_LINES = 30


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
        context: StepContext,
    ) -> None:
        self.step = step
        self.proc = proc
        self.peer = peer
        self.context = context
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
        context = StepContext(step=step)
        peer = Peer(receive, send, table, context, max_frame_bytes=max_frame_bytes)
        return cls(step, proc, receive, send, stderr, peer, context)

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
        depth: int = 0,
    ) -> Any:
        """Run one invocation; raises StepError / StepTimeoutError like call_step_file."""
        outcome = Invocation()
        context = self.context
        context.trace_id, context.on_emit, context.on_log = trace_id, on_emit, on_log
        context.depth = depth
        context.invocation = outcome

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
