"""Byte streams over raw pipe fds, for the asyncio event loop.

anyio's process streams on asyncio sit on asyncio's pipe transport, which
reads up to 256 KiB per call. A buffer that size is served by mmap, so
every frame paid an mmap, an mremap and a munmap (3 of the 5 syscalls of a
sequential round trip, under strace) plus a page fault. These streams read
64 KiB, a pipe's capacity, which the heap serves, and keep one reader
callback registered for the pipe's lifetime instead of re-arming it.

They implement anyio's ``ByteReceiveStream`` / ``ByteSendStream``, so the
:class:`~motia_state.rpc.peer.Peer` treats them like any other stream. On
other backends (trio) the runtime keeps anyio's own process streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from typing import Final

from anyio import BrokenResourceError, ClosedResourceError, EndOfStream
from anyio.abc import ByteReceiveStream, ByteSendStream

__all__ = ["READ_BYTES", "FdReceiveStream", "FdSendStream", "on_asyncio", "open_pipe"]

#: Bytes asked of one read: a pipe's capacity, and small enough for the heap.
READ_BYTES: Final = 65536

#: Unsent bytes above which ``send`` waits for the reader to catch up.
HIGH_WATER: Final = 1 << 20

#: Bytes read but not yet received above which reading pauses, so a worker
#: that outruns its handlers is held back by the pipe, not by our memory.
READ_AHEAD: Final = 4 * READ_BYTES


def on_asyncio() -> bool:
    """True inside a running asyncio event loop (False under trio)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def open_pipe() -> tuple[int, int]:
    """A pipe as (read fd, write fd), neither inherited by children."""
    return os.pipe()  # non-inheritable since Python 3.4 (PEP 446)


class FdReceiveStream(ByteReceiveStream):
    """The read end of a pipe; takes ownership of ``fd``."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._chunks: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._buffered = 0
        self._paused = False
        self._eof = False
        self._closed = False
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # the writer is gone: the same as end of stream
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered > READ_AHEAD:
                self._paused = True
                self._loop.remove_reader(self._fd)
        else:
            self._eof = True
            self._loop.remove_reader(self._fd)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self, max_bytes: int = READ_BYTES) -> bytes:
        """The next chunk read from the pipe; ``EndOfStream`` at its end."""
        while not self._chunks:
            if self._closed:
                raise ClosedResourceError
            if self._eof:
                raise EndOfStream
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        if len(chunk) > max_bytes:
            self._chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= READ_AHEAD // 2 and not self._closed:
            self._paused = False
            self._loop.add_reader(self._fd, self._readable)
        return chunk

    async def aclose(self) -> None:
        """Stop reading and close the fd."""
        if self._closed:
            return
        self._closed = True
        if not self._eof and not self._paused:
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class FdSendStream(ByteSendStream):
    """The write end of a pipe; takes ownership of ``fd``.

    :meth:`write` writes at once and never waits: what the pipe cannot take
    now is kept in order and written when it drains. :meth:`send` is the
    same plus backpressure above ``HIGH_WATER`` unsent bytes.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._backlog = bytearray()
        self._drained: asyncio.Future[None] | None = None
        self._broken = False
        self._closed = False
        self._close_when_drained = False
        os.set_blocking(fd, False)

    @property
    def backlog(self) -> int:
        """Bytes accepted but not yet written to the pipe."""
        return len(self._backlog)

    def write(self, data: bytes) -> None:
        """Write now, in order; raises ``BrokenResourceError`` once the reader is gone."""
        if self._closed or self._close_when_drained:
            raise ClosedResourceError
        if self._broken:
            raise BrokenResourceError
        if self._backlog:
            self._backlog += data  # behind what is already waiting
            return
        try:
            written = os.write(self._fd, data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError as e:  # EPIPE: the worker closed its input or died
            self._fail()
            raise BrokenResourceError from e
        if written < len(data):
            self._backlog += data[written:]
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        try:
            written = os.write(self._fd, self._backlog)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._fail()
            return
        del self._backlog[:written]
        if not self._backlog:
            self._loop.remove_writer(self._fd)
            self._wake()
            if self._close_when_drained:
                self._close_now()

    def _wake(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _fail(self) -> None:
        self._broken = True
        if self._backlog:
            self._backlog.clear()
            self._loop.remove_writer(self._fd)
        self._wake()
        if self._close_when_drained:
            self._close_now()

    async def drain(self, limit: int = 0) -> None:
        """Wait until at most ``limit`` bytes are unsent (or the pipe broke)."""
        while len(self._backlog) > limit and not self._broken:
            self._drained = self._loop.create_future()
            try:
                await self._drained
            finally:
                self._drained = None

    async def send(self, item: bytes) -> None:
        """Write ``item``, waiting while more than ``HIGH_WATER`` bytes are unsent."""
        self.write(item)
        if len(self._backlog) > HIGH_WATER:
            await self.drain(HIGH_WATER)
        if self._broken:
            raise BrokenResourceError

    def _close_now(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def abort(self) -> None:
        """Close now, dropping anything unsent (the worker is being killed)."""
        if self._backlog:
            self._backlog.clear()
            self._loop.remove_writer(self._fd)
        self._wake()
        self._close_now()

    async def aclose(self) -> None:
        """Close after what is queued has been written (the reader then sees EOF)."""
        if self._closed or self._close_when_drained:
            return
        if self._backlog and not self._broken:
            self._close_when_drained = True  # _writable closes it
            return
        if self._backlog:
            self._backlog.clear()
            self._loop.remove_writer(self._fd)
        self._close_now()
