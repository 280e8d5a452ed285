"""Single operations on one group, issued while one is in flight there, sent as one program call.

Many tasks (or step workers relayed by one parent) writing the same group at
once each pay a whole program call on the server: its start, the parsing of
its header, a clock read, one reply. The program's ``batch`` mode runs a list
of operations in one call, each on its own (one that fails stores nothing
and the others still run) and each with its own feed record, exactly as
separate calls would. :class:`Combiner` uses it for operations that meet
under contention: the first operation on a group goes out alone, at once;
operations on that group issued while it is in flight wait, and go out
together as one batch call when it returns, and so on while more arrive.
A lone caller pays one dictionary lookup.

Operations are combined only with others of the same group, header and
writer stamp (depth and origin), so every feed record keeps its own stamp;
combined operations also become atomic together, which no caller can tell
from their running one after the other. What callers get back is the reply
their own call would have had: ``b"=" + result`` or ``b"!CODE message"``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, Final

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_OPS", "Combiner"]

#: At most this many operations per combined call (the rest wait for the next).
MAX_BATCH_OPS: Final = 128
#: Arguments of at most this many bytes per combined call (a larger operation goes alone).
MAX_BATCH_BYTES: Final = 1 << 20
#: How the program's error begins when a batch stopped before writing anything (ops.lua).
STOPPED_UNWRITTEN: Final = "motia-state: batch stopped before writing: "

Send = Callable[..., Awaitable[Any]]
_Op = tuple[Any, ...]
_Waiter = tuple[_Op, "asyncio.Future[Any]"]


def _size(op: _Op) -> int:
    # The adapter passes every slot as bytes.
    return sum(map(len, op))


class Combiner:
    """Combines the single operations that meet on one group into batch calls of the program.

    ``send(keys, header, group, stamp, *args)`` calls the program. The
    combiner keeps, per group, header and stamp, the operations waiting
    behind the one in flight; a task of the combiner sends them when it
    returns. Closing fails whatever still waits.
    """

    __slots__ = ("_closed", "_drainers", "_loop", "_waiting", "batches", "combined", "errors", "send")

    def __init__(self, send: Send, errors: Any) -> None:
        self.send = send
        self.errors = errors  # the redis.exceptions module: a stopped call fails as a lost connection
        #: Combined calls made and the operations they carried (for tests and benchmarks).
        self.batches = 0
        self.combined = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        # Present while an operation of that group is in flight: what waits behind it.
        self._waiting: dict[tuple[bytes, bytes, bytes], list[_Waiter]] = {}
        self._drainers: set[asyncio.Task[None]] = set()
        self._closed = False

    def _stopped(self) -> Exception:
        stopped: Exception = self.errors.ConnectionError("the adapter was closed")
        return stopped

    async def call(self, keys: tuple[bytes, ...], one: bytes, batch: bytes, group: bytes, stamp: bytes, op: _Op) -> Any:
        """Run ``op`` (type, key, args...) in mode ``one``; combined into a ``batch`` call under contention.

        Returns the program's reply to ``op`` as its own ``one`` call would
        have it; a failure of the call itself (Redis unreachable) raises.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Waiters and tasks belong to the loop that made them.
            self._loop = loop
            self._waiting = {}
            self._drainers = set()
        slot = (keys[0], one, stamp)
        waiting = self._waiting.get(slot)
        if waiting is not None:
            future: asyncio.Future[Any] = loop.create_future()
            waiting.append((op, future))
            return await future
        waiting = self._waiting[slot] = []
        timed_out: Exception | None = None
        try:
            return await self.send(keys, one, group, stamp, *op)
        except self.errors.TimeoutError as e:
            timed_out = e
            raise
        finally:
            if waiting and self._closed:
                _fail_all(waiting, self._stopped())
            if waiting and timed_out is not None:
                self._give_up(waiting, timed_out)
            if waiting:
                task = loop.create_task(self._drain(slot, waiting, keys, one, batch, group, stamp))
                self._drainers.add(task)
                task.add_done_callback(self._drainers.discard)
                task.add_done_callback(functools.partial(self._abandoned, slot, waiting))
            else:
                del self._waiting[slot]

    async def _drain(
        self,
        slot: tuple[bytes, bytes, bytes],
        waiting: list[_Waiter],
        keys: tuple[bytes, ...],
        one: bytes,
        batch_header: bytes,
        group: bytes,
        stamp: bytes,
    ) -> None:
        """Send what waits on ``slot``, as batch calls, until nothing does."""
        batch: list[_Waiter] = []
        try:
            while True:
                # Callers woken by the last replies queue their next operations first.
                await asyncio.sleep(0)
                if self._closed:
                    _fail_all(waiting, self._stopped())
                    return
                batch = self._take(waiting)
                if not batch:
                    return
                if len(batch) == 1:
                    ((op, future),) = batch
                    try:
                        reply = await self.send(keys, one, group, stamp, *op)
                    except Exception as e:
                        _fail(future, e)
                        failure: Exception | None = e
                    else:
                        _settle(future, reply)
                        failure = None
                else:
                    failure = await self._send_batch(batch, keys, one, batch_header, group, stamp)
                if isinstance(failure, self.errors.TimeoutError):
                    self._give_up(waiting, failure)
        except Exception as e:
            _fail_all(batch, e)
            _fail_all(waiting, e)
        except BaseException:
            # This task was stopped (the adapter closed, the loop ends): what
            # it held and what still waits fail as after a lost connection.
            stopped = self._stopped()
            _fail_all(batch, stopped)
            _fail_all(waiting, stopped)
            raise
        finally:
            if self._waiting.get(slot) is waiting:
                del self._waiting[slot]

    def _give_up(self, waiting: list[_Waiter], timed_out: Exception) -> None:
        """Fail what waits, never sent, after the call ahead of it got no reply in time.

        Sent, each would wait as long again: an operation fails within about
        one timeout, as it would have on a connection of its own.
        """
        for _, future in waiting:
            _fail(future, self.errors.TimeoutError(f"not sent: the call ahead of it on its group failed: {timed_out}"))
        waiting.clear()

    def _abandoned(self, slot: tuple[bytes, bytes, bytes], waiting: list[_Waiter], task: asyncio.Task[None]) -> None:
        """After a sending task ends: what it left waiting fails, and the group's slot is free again.

        Only a task cancelled before its first step (by closing, or by code
        cancelling every task) leaves anything: it never ran its own cleanup.
        """
        _fail_all(waiting, self._stopped())
        if self._waiting.get(slot) is waiting:
            del self._waiting[slot]

    @staticmethod
    def _take(waiting: list[_Waiter]) -> list[_Waiter]:
        """The next batch: live waiters, oldest first, within both bounds (always at least one)."""
        batch: list[_Waiter] = []
        size = 0
        taken = 0
        for op, future in waiting:
            if future.done():  # its caller was cancelled while it waited: never sent
                taken += 1
                continue
            size += _size(op)
            if batch and (len(batch) >= MAX_BATCH_OPS or size > MAX_BATCH_BYTES):
                break
            batch.append((op, future))
            taken += 1
        del waiting[:taken]
        return batch

    async def _send_batch(
        self,
        batch: list[_Waiter],
        keys: tuple[bytes, ...],
        one: bytes,
        batch_header: bytes,
        group: bytes,
        stamp: bytes,
    ) -> Exception | None:
        """Send ``batch`` as one call and settle its callers; the call's own failure is returned."""
        args: list[Any] = []
        for op, _ in batch:
            args.extend(op)
            args.extend([b""] * (4 - len(op)))  # four slots per operation
        try:
            reply = await self.send(keys, batch_header, group, stamp, *args)
        except Exception as e:
            if not (isinstance(e, self.errors.ResponseError) and STOPPED_UNWRITTEN in str(e)):
                _fail_all(batch, e)
                return e
            # One operation stopped the program (a stored text that is not
            # JSON) before anything was written: alone, only it fails.
            reply = None
        if reply is not None and reply[0] == b"OK":
            self.batches += 1
            self.combined += len(batch)
            for (_, future), result in zip(batch, reply[2 : 2 + len(batch)], strict=True):
                _settle(future, result)
            return None
        # TOO_LARGE (the results together pass the reply limit), or stopped
        # as above: nothing was written. Each operation alone, as it would have gone.
        for i, (op, future) in enumerate(batch):
            if future.done():
                continue
            try:
                _settle(future, await self.send(keys, one, group, stamp, *op))
            except Exception as e:
                _fail(future, e)
                if isinstance(e, self.errors.TimeoutError):
                    self._give_up(batch[i + 1 :], e)
                    timed_out: Exception = e
                    return timed_out
        return None

    async def aclose(self) -> None:
        """Stop the tasks sending combined calls; what they held, and what waits, fails as closed."""
        self._closed = True
        drainers, self._drainers = self._drainers, set()
        for task in drainers:
            task.cancel()
        here = [task for task in drainers if task.get_loop() is asyncio.get_running_loop()]
        if here:
            # wait() neither raises what the tasks raised nor swallows a cancellation of this call.
            await asyncio.wait(here)


def _settle(future: asyncio.Future[Any], reply: Any) -> None:
    if not future.done():
        future.set_result(reply)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _fail_all(waiters: list[_Waiter], error: BaseException) -> None:
    """Fail every caller of ``waiters`` still waiting with ``error``, and empty the list."""
    for _, future in waiters:
        _fail(future, error)
    waiters.clear()
