"""The worker's RPC client: NDJSON frames over the protocol pipes.

One asyncio loop owns the channel. Incoming bytes are split on raw "\n"
(so a multibyte character split across reads never breaks a frame) and
whole lines are decoded; outgoing frames are queued and written
once per loop turn, so thousands of pipelined requests cost few writes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Callable, Sized
from typing import Any

from .errors import InvalidArgumentError, UnavailableError, error_from_wire

MAX_FRAME_BYTES = int(os.environ.get("MOTIA_MAX_FRAME_BYTES", 16 * 1024 * 1024))

#: Frames queued in one loop turn that are written without waiting for its end.
FLUSH_EVERY = 256

#: Bytes asked of one read: a pipe's capacity, and small enough for the heap.
READ_BYTES = 65536

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_dumps = _encoder.encode


def _c_dumps() -> Any:
    # The C encoder that JSONEncoder.encode reaches through two Python
    # frames, called directly: a third of the cost of a small frame. Cycles
    # are caught by the recursion limit instead of a markers dict.
    try:
        from json.encoder import c_make_encoder, encode_basestring
    except ImportError:  # pragma: no cover - interpreters without _json
        return None
    if c_make_encoder is None:  # pragma: no cover
        return None

    def default(o: Any) -> Any:
        raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)

    c = c_make_encoder(None, default, encode_basestring, None, ":", ",", False, False, False)
    return lambda obj: "".join(c(obj, 0))


_fast_dumps = _c_dumps() or _dumps


def encode(frame: Any) -> str:
    """One frame as a line (without the newline); INVALID_ARGUMENT if not JSON."""
    try:
        line: str = _fast_dumps(frame)
        if not line.isascii():
            line.encode("utf-8")  # a lone surrogate has no UTF-8: refuse it here, not at write
        return line
    except (TypeError, ValueError, RecursionError) as e:  # UnicodeEncodeError is a ValueError
        raise InvalidArgumentError("value must be JSON: %s" % e) from None


class RpcClient:
    """Requests to the parent, and dispatch of the parent's requests to us."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        read_fd: int,
        write_fd: int,
        on_request: Callable[[dict[str, Any]], None],
    ) -> None:
        self._loop = loop
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._on_request = on_request
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._heads: dict[str, str] = {}
        self._next_id = 0
        self._out: list[str] = []
        self._flush_scheduled = False
        self.closed = asyncio.Event()
        self._buf = bytearray()
        self._discarding = False

    async def start(self) -> None:
        """Start reading the parent's frames on the event loop (no thread hop)."""
        # A reader callback on the raw fd rather than connect_read_pipe: the
        # pipe transport reads up to 256 KiB at a time, and a buffer that
        # size comes from mmap, so every frame cost an mmap, an mremap and a
        # munmap (strace: 3 of the 5 syscalls of a round trip). 64 KiB, the
        # pipe's own capacity, comes from the heap.
        os.set_blocking(self._read_fd, False)
        self._loop.add_reader(self._read_fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._read_fd, READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self._feed(data)
        else:  # end of input: the parent closed the channel
            self._loop.remove_reader(self._read_fd)
            self._close()

    @property
    def in_flight(self) -> Sized:
        """Our requests still waiting for a reply (a live view)."""
        return self._pending

    # -- outgoing ------------------------------------------------------------

    def request(self, method: str, args: Any) -> asyncio.Future[Any]:
        """Send a request; the future resolves with its result (loop thread only)."""
        if self.closed.is_set():
            raise UnavailableError("the parent closed the channel")
        self._next_id += 1
        rid = self._next_id
        head = self._heads.get(method)
        if head is None:  # the frame's fixed prefix, encoded once per method
            head = self._heads[method] = '{"type":"rpc_request","method":%s,"id":' % encode(method)
        line = '%s%d,"args":%s}' % (head, rid, encode(args))
        fut = self._loop.create_future()
        alone = not self._pending and not self._out
        self._pending[rid] = fut
        if alone:
            # Nothing else in flight: a sequential caller. Send now rather
            # than a loop turn later (and schedule no flush for that turn);
            # a burst's later requests still batch.
            self._write((line + "\n").encode("utf-8"))
        else:
            self._queue(line)
        return fut

    def notify(self, method: str, args: Any) -> None:
        """Send a notification; safe from any thread."""
        line = encode({"type": "rpc_request", "method": method, "args": args})
        if threading.current_thread() is threading.main_thread() and self._loop.is_running():
            self._queue(line)
        else:
            self._loop.call_soon_threadsafe(self._queue, line)

    def respond(self, rid: Any, result: Any) -> None:
        """Reply with a result (falls back to an error if it is not JSON)."""
        try:
            line = encode({"type": "rpc_response", "id": rid, "result": result})
        except InvalidArgumentError as e:
            self.respond_error(rid, "STEP_FAILED", "the handler returned a value that is not JSON: %s" % e.message)
            return
        self._queue(line)

    def respond_error(self, rid: Any, code: str, message: str, stack: str | None = None) -> None:
        """Reply with an error."""
        body: dict[str, Any] = {"code": code, "message": message}
        if stack:
            body["stack"] = stack
        self._queue(encode({"type": "rpc_response", "id": rid, "error": body}))

    def _queue(self, line: str) -> None:
        self._out.append(line)
        if len(self._out) >= FLUSH_EVERY:
            # A long burst leaves in slices, so the parent (on the other
            # core) starts on the first requests while we encode the rest.
            self.flush()
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every queued frame now."""
        self._flush_scheduled = False
        if not self._out:
            return
        data = ("\n".join(self._out) + "\n").encode("utf-8")
        self._out.clear()
        self._write(data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._write_fd, view)
                view = view[written:]
        except OSError:
            self._close()

    # -- incoming ------------------------------------------------------------

    def _feed(self, chunk: bytes) -> None:
        # Split raw bytes on "\n" before decoding anything, bounded by
        # MAX_FRAME_BYTES: an over-long frame is dropped as it streams in.
        parts = chunk.split(b"\n")
        tail = parts.pop()  # what follows the last newline: an unfinished line
        if parts:
            if self._discarding:
                parts[0] = b""  # the rest of the dropped line
                self._discarding = False
            elif self._buf:
                parts[0] = bytes(self._buf) + parts[0]
            self._buf.clear()
        if not self._discarding:
            self._buf += tail
            if len(self._buf) > MAX_FRAME_BYTES:
                sys.stderr.write("motia-step: dropped a frame over %d bytes\n" % MAX_FRAME_BYTES)
                self._buf.clear()
                self._discarding = True
        lines = [line for line in parts if line.strip()]
        if lines:
            self._on_lines(lines)

    def _on_lines(self, lines: list[bytes]) -> None:
        try:
            # One decoder call for a whole burst of replies is several times
            # cheaper than one per line; any bad line sends us line by line.
            frames = json.loads(b"[" + b",".join(lines) + b"]")
        except ValueError:
            frames = []
            for line in lines:
                try:
                    frames.append(json.loads(line))
                except ValueError:
                    sys.stderr.write("motia-step: ignored a line that is not JSON\n")
        pending = self._pending
        for frame in frames:
            if not isinstance(frame, dict):
                continue
            kind = frame.get("type")
            if kind == "rpc_response":
                rid = frame.get("id")
                # Our ids are ints; anything else (a list is not even hashable) is a reply to nothing.
                fut = pending.pop(rid, None) if type(rid) is int else None
                if fut is None or fut.done():
                    continue
                error = frame.get("error")
                if error is not None:
                    fut.set_exception(error_from_wire(error))
                else:
                    fut.set_result(frame.get("result"))
            elif kind == "rpc_request":
                try:
                    self._on_request(frame)
                except Exception as e:  # one odd request must not cost the frames after it
                    sys.stderr.write("motia-step: a request from the parent failed: %r\n" % (e,))

    def _close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(UnavailableError("the parent closed the channel"))
        self._pending.clear()
