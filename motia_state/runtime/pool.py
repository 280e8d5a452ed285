"""WorkerPool: warm step workers, reused from one invocation to the next.

Starting a worker costs an interpreter start and its imports: ~50-70 ms per
call on a small machine, against tens of microseconds for a state call. A
pool keeps each step file's workers running between invocations (the
protocol allows further ``invoke`` frames to a live worker) and hands every
invocation to a free one.

Rules, chosen for predictability:

- One invocation at a time per worker, so the step's emits and logs go to
  the hooks of the call that made them. Up to ``max_workers`` per step file
  run at once; further calls wait for a free worker.
- A handler that raises keeps its worker. A worker that times out (its
  process group is killed), dies, or stops answering is discarded, and the
  next call starts a fresh one.
- A worker idle for ``idle_timeout`` seconds is shut down.
- An edited step file (its mtime or size changed) gets fresh workers: the
  idle ones are shut down, busy ones are retired when their call ends.
- Module-level state of a step lives as long as its worker: a warm worker
  sees what earlier invocations left in its globals, as in any warm
  serverless runtime. Use ``ctx.state`` for anything that must be shared.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..adapters.base import StateAdapter
from ..errors import InvalidArgumentError, StateError, StepError, StepTimeoutError, UnavailableError
from ..manager import StateManager
from ..rpc.frames import DEFAULT_MAX_FRAME_BYTES
from ..rpc.handlers import HandlerTable
from .checks import check_frame_limit, check_timeout, encode_invoke, resolve_command
from .services import EmitHook, handler_table
from .worker import StepWorker

__all__ = ["WorkerPool"]


class _Slot:
    """The workers of one step file: how to start one, the idle ones, a limit on how many run."""

    def __init__(self, argv: list[str], step: str, max_workers: int, version: tuple[int, int]) -> None:
        self.argv = argv
        self.step = step
        self.version = version  # (mtime_ns, size) of the file the newest workers loaded
        self.idle: list[tuple[StepWorker, float]] = []  # (worker, when it became idle)
        self.loaded: dict[StepWorker, tuple[int, int]] = {}  # the version each live worker loaded
        self.limit = anyio.Semaphore(max_workers)


def _version(path: str | os.PathLike[str], step: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        raise StepError(f"step file not found: {path}", step=step) from None
    return st.st_mtime_ns, st.st_size


class WorkerPool:
    """Warm workers per step file; see the module docstring for the rules.

    Use it as an async context manager (it owns the workers' tasks)::

        async with WorkerPool(state) as pool:
            result = await pool.call("steps/score.step.py", data={"n": 1}, trace_id="t-1")

    ``call`` takes the arguments of :func:`call_step_file` that belong to
    one invocation; those that belong to the worker process (``env``,
    ``cwd``, ``interpreters``, ``handlers``, ``max_frame_bytes``) are given
    to the pool.
    """

    def __init__(
        self,
        state: StateManager | StateAdapter,
        *,
        max_workers: int = 4,
        idle_timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        interpreters: Mapping[str, str] | None = None,
        handlers: HandlerTable | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise InvalidArgumentError(f"max_workers: expected a positive integer, got {max_workers!r}")
        if (
            isinstance(idle_timeout, bool)
            or not isinstance(idle_timeout, (int, float))
            or not idle_timeout > 0
            or math.isnan(idle_timeout)
        ):
            raise InvalidArgumentError(f"idle_timeout: expected a positive number of seconds, got {idle_timeout!r}")
        manager = state if isinstance(state, StateManager) else StateManager(state)
        self._manager = manager
        self._max_frame_bytes = check_frame_limit(max_frame_bytes, manager.limits)
        self._table = handler_table(manager, handlers)
        self._max_workers = max_workers
        self._idle_timeout = float(idle_timeout)
        self._env = env
        self._cwd = cwd
        self._interpreters = interpreters
        self._by_file: dict[str, _Slot] = {}  # resolved path -> its workers
        self._slots: dict[str, _Slot] = {}  # the path as given (made absolute) -> its slot, without a resolve per call
        self._tg: TaskGroup | None = None
        self._reaper = anyio.CancelScope()
        self._closed = False
        self._started = 0
        self._thread = 0  # the thread whose event loop entered the pool

    @property
    def started(self) -> int:
        """How many worker processes this pool has started so far."""
        return self._started

    def idle_workers(self, path: str | os.PathLike[str] | None = None) -> int:
        """Workers waiting for an invocation (of ``path``, or of any step file)."""
        if path is not None:
            slot = self._by_file.get(str(Path(path).resolve()))
            return len(slot.idle) if slot is not None else 0
        return sum(len(slot.idle) for slot in self._by_file.values())

    async def __aenter__(self) -> WorkerPool:
        if self._tg is not None or self._closed:
            # Its workers, reaper and settings belong to one run: a second
            # entry would share them half-closed.
            raise UnavailableError("a WorkerPool runs once: create a new one instead of entering it again")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._thread = threading.get_ident()
        tg.start_soon(self._reap_idle)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        self._reaper.cancel()
        tg, self._tg = self._tg, None
        if tg is None:
            return None
        if exc is not None and not isinstance(exc, Exception):
            # Interrupted (cancelled, Ctrl-C, SystemExit): the calls in
            # progress are not waited for, wherever they run; their workers
            # are killed and the calls fail with StepError.
            for slot in self._by_file.values():
                for worker in list(slot.loaded):
                    worker.kill()
        # Busy workers' tasks end when their calls finish and retire them. The
        # body's own exception is not the task group's: it reaches the caller
        # as raised (a StepError stays a StepError), never in an exception group.
        await tg.__aexit__(None, None, None)
        return None

    @property
    def max_frame_bytes(self) -> int:
        """The frame limit of the pool's workers, in bytes: no invocation's data can be larger."""
        return self._max_frame_bytes

    async def call(
        self,
        path: str | os.PathLike[str],
        *,
        data: Any = None,
        trace_id: str,
        timeout: float | None = None,
        on_emit: EmitHook | None = None,
        on_log: EmitHook | None = None,
        depth: int = 0,
        context_first: bool = False,
    ) -> Any:
        """Run one invocation on a warm worker of ``path`` (starting one if none is free).

        Returns and raises exactly what :func:`call_step_file` would;
        ``depth`` and ``context_first`` are as there.
        """
        self._check_running()
        check_timeout(timeout)
        slot = self._slot(path)
        version = _version(path, slot.step)  # one stat: an edited step file gets fresh workers
        if version != slot.version:
            slot.version = version
            self._drop_idle(slot)
        invoke_args = encode_invoke(
            slot.step, data, trace_id, self._max_frame_bytes, self._manager.limits, context_first=context_first
        )
        async with slot.limit:
            worker = self._take_idle(slot)
            if worker is None:
                worker = await self._start(slot)
            answered = False  # False when cancelled mid-call: that worker is killed, not kept
            try:
                result = await worker.invoke(
                    invoke_args, trace_id=trace_id, timeout=timeout, on_emit=on_emit, on_log=on_log, depth=depth
                )
                answered = True
                return result
            except StateError:
                answered = True  # a handler that raised keeps its worker; a dead one is not alive
                raise
            finally:
                current = slot.loaded.get(worker) == slot.version  # not edited meanwhile
                if answered and worker.alive and current and not self._closed:
                    slot.idle.append((worker, anyio.current_time()))
                else:
                    await self._retire(slot, worker, polite=answered)

    async def config(self, path: str | os.PathLike[str], *, timeout: float | None = 30.0) -> Any:
        """The step file's exported ``config`` (None when it has none), asked of a warm worker of ``path``.

        The runner answers the ``config`` method without invoking the
        handler; a native ``condition`` function shows as ``{"native": true}``.
        Raises :class:`StepError` when the file does not load (with the
        runner's message and stack) and :class:`StepTimeoutError` when the
        worker does not answer within ``timeout`` seconds (it is killed).
        """
        return await self._ask(path, "config", None, timeout, trace_id=None, depth=0)

    async def condition(
        self,
        path: str | os.PathLike[str],
        *,
        value: Any,
        change: Any = None,
        trace_id: str | None = None,
        trigger: int | None = None,
        timeout: float | None = 30.0,
        depth: int = 0,
    ) -> bool:
        """Run a step's native condition on a warm worker: ``config.triggers[trigger]``'s, or its ``condition``.

        The function gets ``value`` and a ctx that can read state (and
        carries ``change``). What it writes carries ``depth`` and the origin
        ``{"step", "traceId": trace_id}``, as an invocation's writes do (a
        trigger passes the change's depth + 1: the condition is part of
        handling the change). Raises :class:`StepError` when it raises or is
        missing, :class:`StepTimeoutError` past ``timeout`` seconds.
        """
        args = {"value": value, "change": change, "traceId": trace_id, "trigger": trigger}
        return bool(await self._ask(path, "condition", args, timeout, trace_id=trace_id, depth=depth))

    async def _ask(
        self,
        path: str | os.PathLike[str],
        method: str,
        args: Any,
        timeout: float | None,
        *,
        trace_id: str | None,
        depth: int,
    ) -> Any:
        # One request to a warm worker, outside any invocation: no hooks, the
        # worker kept when it answered. The write context is set for this
        # request: a warm worker's context still holds its last invocation's
        # traceId and depth, which its writes must not carry (a condition's
        # writes at a stale depth 0 would escape the loop guard).
        self._check_running()
        slot = self._slot(path)
        version = _version(path, slot.step)
        if version != slot.version:
            slot.version = version
            self._drop_idle(slot)
        async with slot.limit:
            worker = self._take_idle(slot) or await self._start(slot)
            context = worker.context
            context.on_emit = context.on_log = None
            context.invocation = None
            context.trace_id, context.depth = trace_id, depth
            answered = False
            try:
                with anyio.fail_after(timeout):
                    result = await worker.peer.request(method, args)
                answered = True
                return result
            except TimeoutError:
                raise StepTimeoutError(
                    f"{slot.step} did not answer {method!r} within {timeout} s and was killed", step=slot.step
                ) from None
            except StateError as e:
                answered = worker.alive
                if not answered:
                    with anyio.move_on_after(1.0):
                        await worker.proc.wait()  # its stderr tail tells why
                tail = "\n".join(worker.tail)
                message = e.message if answered else f"{slot.step} exited before answering {method!r}"
                raise StepError(
                    message + (f"; stderr ends with:\n{tail}" if tail and not answered else ""),
                    stack=e.details.get("stack"),
                    step=slot.step,
                    stderr_tail=tail,
                ) from None
            finally:
                current = slot.loaded.get(worker) == slot.version
                if answered and worker.alive and current and not self._closed:
                    slot.idle.append((worker, anyio.current_time()))
                else:
                    await self._retire(slot, worker, polite=answered)

    async def aclose(self) -> None:
        """Shut every idle worker down; calls in progress finish first."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            for slot in self._by_file.values():
                while slot.idle:
                    worker, _ = slot.idle.pop()
                    await self._retire(slot, worker)

    # -- internals -------------------------------------------------------------

    def _check_running(self) -> None:
        if self._tg is None or self._closed:
            raise UnavailableError("the worker pool is not running (use it with 'async with')")
        if threading.get_ident() != self._thread:
            # Its workers are served by tasks of the loop it was entered in:
            # a call from another thread's loop would mix the two loops.
            raise UnavailableError(
                "the worker pool runs in another thread's event loop: give each event loop its own WorkerPool"
            )

    def _slot(self, path: str | os.PathLike[str]) -> _Slot:
        given = os.fspath(path)
        if not os.path.isabs(given):
            given = os.path.join(os.getcwd(), given)  # the same relative name elsewhere is another file
        slot = self._slots.get(given)
        if slot is None:
            argv = resolve_command(given, self._interpreters)  # the worker's cwd may differ from ours
            key = str(Path(path).resolve())
            slot = self._by_file.get(key)
            if slot is None:
                step = Path(path).name
                slot = self._by_file[key] = _Slot(argv, step, self._max_workers, _version(path, step))
            self._slots[given] = slot
        return slot

    def _drop_idle(self, slot: _Slot) -> None:
        while slot.idle:
            worker, _ = slot.idle.pop()
            self._tg.start_soon(self._retire, slot, worker)  # type: ignore[union-attr]

    def _take_idle(self, slot: _Slot) -> StepWorker | None:
        while slot.idle:
            worker, _ = slot.idle.pop()  # the most recently used: the others may idle out
            if worker.alive:
                return worker
            self._tg.start_soon(self._retire, slot, worker)  # type: ignore[union-attr]
        return None

    async def _start(self, slot: _Slot) -> StepWorker:
        # A call that waited for a free worker while the pool closed (or one
        # whose worker was spawning then) gets no worker: nothing would serve it.
        closed = "the worker pool closed while this call waited for a worker"
        if self._closed or self._tg is None:
            raise UnavailableError(closed)
        worker = await StepWorker.start(
            slot.argv, slot.step, self._table, env=self._env, cwd=self._cwd, max_frame_bytes=self._max_frame_bytes
        )
        if self._closed or self._tg is None:
            await worker.close()
            raise UnavailableError(closed)
        self._started += 1
        slot.loaded[worker] = slot.version
        self._tg.start_soon(worker.serve)
        return worker

    async def _retire(self, slot: _Slot, worker: StepWorker, *, polite: bool = True) -> None:
        slot.loaded.pop(worker, None)
        with anyio.CancelScope(shield=True):
            await worker.stop(polite=polite)
            await worker.close()

    async def _reap_idle(self) -> None:
        # Check a few times per idle_timeout; a worker idle past it is shut down.
        period = min(max(self._idle_timeout / 4, 0.01), 5.0)
        with self._reaper:
            while True:
                await anyio.sleep(period)
                now = anyio.current_time()
                for slot in self._by_file.values():
                    stale = [e for e in slot.idle if now - e[1] >= self._idle_timeout or not e[0].alive]
                    for entry in stale:
                        slot.idle.remove(entry)
                        await self._retire(slot, entry[0])
