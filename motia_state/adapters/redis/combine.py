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
from collections.abc import Awaitable, Callable
from typing import Any, Final

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_OPS", "Combiner"]

#: At most this many operations per combined call (the rest wait for the next).
MAX_BATCH_OPS: Final = 128
#: Arguments of at most this many bytes per combined call (a larger operation goes alone).
MAX_BATCH_BYTES: Final = 1 << 20

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
        try:
            return await self.send(keys, one, group, stamp, *op)
        finally:
            if waiting and self._closed:
                for _, future in waiting:
                    _fail(future, self._stopped())
                waiting.clear()
            if waiting:
                task = loop.create_task(self._drain(slot, waiting, keys, one, batch, group, stamp))
                self._drainers.add(task)
                task.add_done_callback(self._drainers.discard)
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
                    for _, future in waiting:
                        _fail(future, self._stopped())
                    waiting.clear()
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
                    else:
                        _settle(future, reply)
                    continue
                await self._send_batch(batch, keys, one, batch_header, group, stamp)
        except Exception as e:
            for _, future in [*batch, *waiting]:
                _fail(future, e)
            waiting.clear()
        except BaseException:
            # This task was stopped (the adapter closed, the loop ends): what
            # it held and what still waits fail as after a lost connection.
            stopped = self._stopped()
            for _, future in [*batch, *waiting]:
                _fail(future, stopped)
            waiting.clear()
            raise
        finally:
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
    ) -> None:
        args: list[Any] = []
        for op, _ in batch:
            args.extend(op)
            args.extend([b""] * (4 - len(op)))  # four slots per operation
        try:
            reply = await self.send(keys, batch_header, group, stamp, *args)
        except Exception as e:
            for _, future in batch:
                _fail(future, e)
            return
        if reply[0] == b"OK":
            self.batches += 1
            self.combined += len(batch)
            for (_, future), result in zip(batch, reply[2 : 2 + len(batch)], strict=True):
                _settle(future, result)
            return
        # TOO_LARGE: the results together pass the reply limit, and nothing
        # was written. Each operation alone, as it would have gone.
        for op, future in batch:
            if future.done():
                continue
            try:
                _settle(future, await self.send(keys, one, group, stamp, *op))
            except Exception as e:
                _fail(future, e)

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
