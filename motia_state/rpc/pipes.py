"""Byte streams over raw pipe fds, for the asyncio event loop.

anyio's process streams on asyncio sit on asyncio's pipe transport, which
reads up to 256 KiB per call. A buffer that size is served by mmap, so
every frame paid an mmap, an mremap and a munmap (3 of the 5 syscalls of a
sequential round trip, under strace) plus a page fault. These streams read
64 KiB, a pipe's capacity, which the heap serves, and keep one reader
callback registered for the pipe's lifetime instead of re-arming it.

They implement anyio's ``ByteReceiveStream`` / ``ByteSendStream``, so the
:class:`~motia_state.rpc.peer.Peer` treats them like any other stream. On
other backends (trio) :class:`WaitFdReceiveStream` / :class:`WaitFdSendStream`
do the same with anyio's ``wait_readable`` / ``wait_writable``.

A receive stream can be told that the process writing into it has exited
(``writer_exited``): it then ends as soon as the pipe is empty, even if
something the worker spawned still holds the write end open.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from abc import abstractmethod
from collections import deque
from typing import Final

import anyio
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream
from anyio.abc import ByteReceiveStream, ByteSendStream

__all__ = [
    "READ_BYTES",
    "FdReceiveStream",
    "FdSendStream",
    "PipeReceiveStream",
    "WaitFdReceiveStream",
    "WaitFdSendStream",
    "on_asyncio",
    "open_pipe",
    "pipe_streams",
]

#: Bytes asked of one read: a pipe's capacity, and small enough for the heap.
READ_BYTES: Final = 65536

#: Unsent bytes above which ``send`` waits for the reader to catch up.
HIGH_WATER: Final = 1 << 20

#: Bytes read but not yet received above which reading pauses, so a worker
#: that outruns its handlers is held back by the pipe, not by our memory.
READ_AHEAD: Final = 4 * READ_BYTES

#: Bytes still read from a pipe after its writer exited: what it left in the
#: pipe, not what a process it spawned keeps writing.
AFTER_EXIT_BYTES: Final = 1 << 20


def on_asyncio() -> bool:
    """True inside a running asyncio event loop (False under trio)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def open_pipe() -> tuple[int, int]:
    """A pipe as (read fd, write fd), neither inherited by children, neither 0, 1 or 2.

    A parent started with a standard fd closed would otherwise get it back
    here, and a child's own stdin/stdout/stderr would land on it.
    """
    fds = os.pipe()  # non-inheritable since Python 3.4 (PEP 446)
    out = []
    for fd in fds:
        if fd < 3:
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(fd)
            fd = high
        out.append(fd)
    return out[0], out[1]


class PipeReceiveStream(ByteReceiveStream):
    """The read end of a pipe from a child process."""

    @abstractmethod
    def writer_exited(self) -> None:
        """The writing process is gone: end once the pipe is empty, even if a process it started holds it open."""


def pipe_streams(read_fd: int, write_fd: int | None = None) -> tuple[PipeReceiveStream, ByteSendStream | None]:
    """Streams over our ends of pipes (ownership passes to them), for the running backend."""
    if on_asyncio():
        return FdReceiveStream(read_fd), (FdSendStream(write_fd) if write_fd is not None else None)
    return WaitFdReceiveStream(read_fd), (WaitFdSendStream(write_fd) if write_fd is not None else None)


class FdReceiveStream(PipeReceiveStream):
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
        self._after_exit: int | None = None  # bytes still allowed once the writer exited
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._readable)

    def writer_exited(self) -> None:
        """The writing process is gone: end once the pipe is empty (see the module docstring)."""
        if self._after_exit is None:
            self._after_exit = AFTER_EXIT_BYTES
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _end(self) -> None:
        if not self._eof:
            self._eof = True
            if not self._paused and not self._closed:
                self._loop.remove_reader(self._fd)

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
        if self._after_exit is not None and self._after_exit <= 0 and not self._eof:
            self._chunks.clear()  # a process the writer spawned keeps writing: enough
            self._buffered = 0
            self._end()
        while not self._chunks:
            if self._closed:
                raise ClosedResourceError
            if self._eof:
                raise EndOfStream
            if self._after_exit is not None:
                self._read_left()
                continue
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        if self._after_exit is not None:
            self._after_exit -= len(chunk)
        if len(chunk) > max_bytes:
            self._chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= READ_AHEAD // 2 and not self._closed and not self._eof:
            self._paused = False
            self._loop.add_reader(self._fd, self._readable)
        return chunk

    def _read_left(self) -> None:
        # What the exited writer left in the pipe, then the end.
        assert self._after_exit is not None
        try:
            data = os.read(self._fd, READ_BYTES) if self._after_exit > 0 else b""
        except (BlockingIOError, InterruptedError):
            data = b""
        except OSError:
            data = b""
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
        else:
            self._end()

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


class WaitFdReceiveStream(PipeReceiveStream):
    """The read end of a pipe on any anyio backend (``wait_readable``); takes ownership of ``fd``."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._closed = False
        self._eof = False
        self._after_exit: int | None = None
        self._waiting: anyio.CancelScope | None = None
        os.set_blocking(fd, False)

    def writer_exited(self) -> None:
        """The writing process is gone: end once the pipe is empty (see the module docstring)."""
        if self._after_exit is None:
            self._after_exit = AFTER_EXIT_BYTES
        if self._waiting is not None:
            self._waiting.cancel()

    async def receive(self, max_bytes: int = READ_BYTES) -> bytes:
        """The next chunk read from the pipe; ``EndOfStream`` at its end."""
        while True:
            if self._closed:
                raise ClosedResourceError
            if self._eof:
                raise EndOfStream
            if self._after_exit is not None and self._after_exit <= 0:
                self._eof = True
                continue
            try:
                data = os.read(self._fd, min(max_bytes, READ_BYTES))
            except (BlockingIOError, InterruptedError):
                if self._after_exit is not None:
                    self._eof = True
                    continue
                with anyio.CancelScope() as self._waiting:
                    await anyio.wait_readable(self._fd)
                self._waiting = None
                continue
            except OSError:
                data = b""
            if not data:
                self._eof = True
                continue
            if self._after_exit is not None:
                self._after_exit -= len(data)
            return data

    async def aclose(self) -> None:
        """Close the fd (a receive waiting on it gets ``ClosedResourceError``)."""
        if self._closed:
            return
        self._closed = True
        anyio.notify_closing(self._fd)
        os.close(self._fd)


class WaitFdSendStream(ByteSendStream):
    """The write end of a pipe on any anyio backend (``wait_writable``); takes ownership of ``fd``."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._closed = False
        os.set_blocking(fd, False)

    async def send(self, item: bytes) -> None:
        """Write all of ``item``, waiting while the pipe is full; ``BrokenResourceError`` once the reader is gone."""
        view = memoryview(item)
        while view:
            if self._closed:
                raise ClosedResourceError
            try:
                written = os.write(self._fd, view)
            except (BlockingIOError, InterruptedError):
                await anyio.wait_writable(self._fd)
                continue
            except OSError as e:  # EPIPE: the worker closed its input or died
                raise BrokenResourceError from e
            view = view[written:]

    async def aclose(self) -> None:
        """Close the fd (the reader then sees end of stream)."""
        if self._closed:
            return
        self._closed = True
        anyio.notify_closing(self._fd)
        os.close(self._fd)
