"""StepWorker: one worker process for one step file, from spawn to exit.

A :class:`StepWorker` starts ``<interpreter> <runner> <step file>`` in a new
session (its own process group) with the protocol on private pipes, serves
it through a :class:`~motia_state.rpc.Peer` with the runtime's handler table
(:mod:`.services`), sends ``invoke``, enforces the timeout, forwards stderr
to ``logging``, and makes sure nothing it started outlives it. What is
refused before any process starts is in :mod:`.checks`. ``call_step_file``
(:mod:`.steps`) uses one worker for one call;
:class:`~motia_state.runtime.pool.WorkerPool` keeps them warm.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import deque
from collections.abc import Mapping
from typing import Any, Final

import anyio
import msgspec
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

from ..errors import StateError, StepError, StepTimeoutError
from ..rpc.frames import DEFAULT_MAX_FRAME_BYTES, LineReader, Oversized, to_log_line
from ..rpc.handlers import HandlerTable
from ..rpc.peer import Peer, PeerClosedError
from ..rpc.pipes import FdSendStream, PipeReceiveStream, open_pipe, pipe_streams
from .runners import is_own_runner, with_module_paths
from .services import EmitHook, Invocation, StepContext, step_log

__all__ = ["EXIT_GRACE", "MAX_FRAME_ENV", "PROTOCOL_FDS_ENV", "StepWorker"]

#: How long a worker may take to exit after ``shutdown`` before it is killed.
EXIT_GRACE = 5.0

#: The variable that tells every worker the frame limit (decimal bytes): one
#: setting, owned by the parent, so neither side drops what the other may send.
MAX_FRAME_ENV: Final = "MOTIA_STEP_MAX_FRAME_BYTES"

#: The variable that names our runners' protocol descriptors ("<read fd>,<write fd>").
PROTOCOL_FDS_ENV: Final = "MOTIA_STEP_PROTOCOL_FDS"

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
            step_log.info("[%s] %s", to_log_line(step), to_log_line(text))


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
        receive: PipeReceiveStream,
        send: ByteSendStream,
        stderr: PipeReceiveStream,
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
        self._serving = False
        # The peer's reading and handling: a killed worker's requests are
        # never answered, so a handler still serving one (an orchestrator's
        # method awaiting something slow, a blocked emit hook) is cancelled
        # rather than holding up the call's end or the pool's close.
        self._handling = anyio.CancelScope()

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
        private_fds: bool | None = None,
    ) -> StepWorker:
        """Spawn ``argv`` in a new session and serve the protocol over pipes.

        With ``private_fds`` (the default for our own runners, see
        :func:`~motia_state.runtime.runners.is_own_runner`) the protocol
        pipes are extra descriptors named in ``MOTIA_STEP_PROTOCOL_FDS``,
        and the worker's stdin reads /dev/null and its stdout goes to its
        stderr: nothing the step or a process it starts writes to fd 1 or
        reads from fd 0 can touch the channel. Otherwise the protocol is on
        stdin/stdout (a worker written for Motia's stdio mode). The worker
        is told the frame limit in ``MOTIA_STEP_MAX_FRAME_BYTES`` (over
        anything ``env`` says: the parent owns it).
        """
        private = is_own_runner(argv) if private_fds is None else private_fds
        full_env = with_module_paths({**os.environ, **(env or {}), MAX_FRAME_ENV: str(max_frame_bytes)})
        full_env.pop(PROTOCOL_FDS_ENV, None)
        fds: list[int] = []  # ours to close until the streams own them
        try:
            child_in, parent_in = open_pipe()
            fds += (child_in, parent_in)
            parent_out, child_out = open_pipe()
            fds += (parent_out, child_out)
            parent_err, child_err = open_pipe()
            fds += (parent_err, child_err)
            if private:
                full_env[PROTOCOL_FDS_ENV] = f"{child_in},{child_out}"
            proc = await anyio.open_process(
                argv,
                stdin=subprocess.DEVNULL if private else child_in,
                stdout=child_err if private else child_out,
                stderr=child_err,
                pass_fds=(child_in, child_out) if private else (),
                cwd=cwd,
                env=full_env,
                start_new_session=True,
            )
        except BaseException as e:  # a failed spawn, or a cancellation: the pipes are still ours
            for fd in fds:
                os.close(fd)
            if isinstance(e, OSError):
                raise StepError(f"could not start {step}: {e}", step=step) from e
            raise
        for fd in (child_in, child_out, child_err):
            os.close(fd)  # the worker holds its ends now
        receive, send = pipe_streams(parent_out, parent_in)
        stderr, _ = pipe_streams(parent_err)
        assert send is not None
        context = StepContext(step=step)
        peer = Peer(receive, send, table, context, max_frame_bytes=max_frame_bytes)
        return cls(step, proc, receive, send, stderr, peer, context)

    @property
    def alive(self) -> bool:
        """False once the worker was killed or its output ended."""
        return not (self._killed or self.peer.closed or self._ended.is_set())

    async def serve(self) -> None:
        """Serve the worker's requests and forward its stderr until both end.

        Both end at the latest once the worker has exited (or was killed)
        and what it wrote has been read: a process the step started in a
        session of its own, holding the pipes open, is not waited for.
        """
        self._serving = True
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._end_streams_at_exit)
                async with anyio.create_task_group() as streams:
                    streams.start_soon(_drain_stderr, self._stderr, self.step, self.tail)
                    streams.start_soon(self._run_peer)
                tg.cancel_scope.cancel()
        finally:
            self._ended.set()

    async def _run_peer(self) -> None:
        with self._handling:
            await self.peer.run()

    async def _end_streams_at_exit(self) -> None:
        await self.proc.wait()
        self._receive.writer_exited()
        self._stderr.writer_exited()

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
            # It died, or closed its output: let it exit (its stderr tail
            # and exit code tell why), or kill it if it runs on.
            exit_code: int | None = None
            with anyio.move_on_after(EXIT_GRACE):
                exit_code = await self.proc.wait()
            self.kill()
            with anyio.move_on_after(EXIT_GRACE):
                await self.proc.wait()
                await self._ended.wait()
            if exit_code is not None:
                what = f"exited with code {exit_code} before answering"
            else:
                what = f"closed its output without answering, was still running {EXIT_GRACE} s later and was killed"
            stderr_tail = "\n".join(self.tail)
            raise StepError(
                f"{self.step} {what}" + (f"; stderr ends with:\n{stderr_tail}" if stderr_tail else ""),
                exit_code=exit_code,
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
            if self._serving:
                # What it wrote before it exited is read and served (its
                # last logs) before kill() cancels the handling.
                await self._ended.wait()
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
        """Kill the worker's process group (everything the step spawned too) and cancel what serves it."""
        self._killed = True
        _kill_group(self.proc)
        self._handling.cancel()

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
