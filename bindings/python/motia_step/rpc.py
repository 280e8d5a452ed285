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
import re
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sized
from typing import Any

from .errors import InvalidArgumentError, LimitExceededError, UnavailableError, error_from_wire

#: The frame limit when the parent names none (``MOTIA_STEP_MAX_FRAME_BYTES``).
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024

#: How deep a value may nest (containers inside containers); the parent's limit.
MAX_DEPTH = 256

#: Levels that a handler's result, an emit's data or ``ctx.call`` args may
#: add around values (a list of records holding stored values, say).
WRAP_DEPTH = 64

#: Frames queued in one loop turn that are written without waiting for its end.
FLUSH_EVERY = 256

#: Bytes asked of one read: a pipe's capacity, and small enough for the heap.
READ_BYTES = 65536

#: Bytes kept of an oversized incoming frame, to read its type and id.
HEAD_BYTES = 512

#: Integers are at most this many characters of decimal text, a minus sign
#: included: what the parent stores and every language reads back.
MAX_INT_DIGITS = 4300
_INT_HIGH = 10**MAX_INT_DIGITS
_INT_LOW = -(10 ** (MAX_INT_DIGITS - 1))
#: Below this many bits no integer can be near the limit: the bounds are compared only past it.
_INT_BITS = 14000

_INF = float("inf")
_TYPE_RE = re.compile(rb'"type"\s*:\s*"(rpc_request|rpc_response)"')
# An id is a string or an integer; "1.5" or "1e3" must not be read as 1.
_ID_RE = re.compile(rb'"id"\s*:\s*("(?:[^"\\]|\\.){0,256}"|-?\d{1,20})\s*[,}]')


def frame_limit(environ: Mapping[str, str] = os.environ) -> int:
    """The frame limit in bytes: ``MOTIA_STEP_MAX_FRAME_BYTES`` (decimal), else 16 MiB.

    The parent sets the variable for every worker it spawns; an absent,
    malformed or non-positive value gives the default.
    """
    raw = environ.get("MOTIA_STEP_MAX_FRAME_BYTES", "").strip()
    if raw.isascii() and raw.isdigit() and int(raw) > 0:
        return int(raw)
    return DEFAULT_MAX_FRAME_BYTES


def _path(parent: Any, key: Any) -> str:
    parts: list[str] = []
    while parent is not None:
        parts.append("[%d]" % key if isinstance(key, int) else ".%s" % key)
        parent, key = parent[1], parent[2]
    parts.append(str(key))
    return "".join(reversed(parts))


def check_json(value: Any, name: str, extra_depth: int = 0, exact: bool = True) -> None:
    """Refuse what JSON cannot carry, naming where it is (``value[2].when``).

    Only dicts with string keys, lists, strings (no lone surrogates), ints,
    finite floats, booleans and None pass: a tuple, set, bytes, datetime or
    other object, NaN or an infinity, or a non-string key is
    INVALID_ARGUMENT, never converted; a cycle too. Containers nested more
    than MAX_DEPTH (+ ``extra_depth`` for an envelope such as ``items``)
    deep, and integers over MAX_INT_DIGITS characters, are LIMIT_EXCEEDED.
    With ``exact=False`` (records of a transaction or batch, whose limits
    the parent reports per record) an integer is refused only when it has
    more digits than any side can read. Iterative: no value can exhaust the stack.
    """
    t = type(value)
    if (t is str and value.isascii()) or (t is int and value.bit_length() <= _INT_BITS):
        return  # the common arguments (a group, a key, a delta) need no walk
    limit = MAX_DEPTH + extra_depth
    # (value, parent node, key in parent, depth); a node is (container, parent node, key)
    stack: list[tuple[Any, Any, Any, int]] = [(value, None, name, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        v, parent, key, depth = pop()
        t = type(v)
        if t is str:
            if not v.isascii():
                _check_text(v, parent, key)
        elif t is int:
            if v.bit_length() > _INT_BITS and not (_INT_LOW if exact else -_INT_HIGH) < v < _INT_HIGH:
                raise LimitExceededError(
                    "%s: an integer over %d characters (sign included) is over the limit"
                    % (_path(parent, key), MAX_INT_DIGITS)
                )
        elif t is bool or v is None:
            pass
        elif t is float:
            if v != v or v == _INF or v == -_INF:
                raise InvalidArgumentError("%s: %r is not JSON (only finite numbers are)" % (_path(parent, key), v))
        elif t is dict or t is list or isinstance(v, (dict, list)):
            if depth >= limit:
                _too_deep(v, parent, key, limit)
            node = (v, parent, key)
            depth += 1
            if isinstance(v, dict):
                for k, item in v.items():
                    if type(k) is not str:
                        raise InvalidArgumentError(
                            "%s: key %r is of type %s; JSON object keys are strings"
                            % (_path(parent, key), k, type(k).__name__)
                        )
                    if not k.isascii():
                        _check_text(k, parent, key)
                    push((item, node, k, depth))
            else:
                for i, item in enumerate(v):
                    push((item, node, i, depth))
        elif isinstance(v, str):
            check_json(str(v), _path(parent, key))  # a str subclass (an enum member) encodes as its plain value
        elif isinstance(v, int):
            check_json(int(v), _path(parent, key))
        elif isinstance(v, float):
            check_json(float(v), _path(parent, key))
        else:
            raise InvalidArgumentError("%s: a value of type %s is not JSON" % (_path(parent, key), t.__name__))


def _check_text(text: str, parent: Any, key: Any) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError("%s: a lone surrogate is not JSON text" % _path(parent, key)) from None


def _too_deep(v: Any, parent: Any, key: Any, limit: int) -> None:
    node, root, first = parent, key, None
    while node is not None:
        if node[0] is v:
            first = node  # the occurrence nearest the root names the cycle best
        root = node[2]
        node = node[1]
    if first is not None:
        where = _path(first[1], first[2])
        raise InvalidArgumentError("%s: a cyclic value is not JSON (%s contains itself)" % (root, where))
    raise LimitExceededError("%s: nested more than %d levels deep" % (root, limit))


def _root(parent: Any, key: Any) -> Any:
    while parent is not None:
        parent, key = parent[1], parent[2]
    return key


def sniff(head: bytes) -> tuple[str | None, Any]:
    """The type and id of a frame we cannot decode (too big), or Nones."""
    kind = _TYPE_RE.search(head)
    rid = _ID_RE.search(head)
    if kind is None or rid is None:
        return None, None
    try:
        value = json.loads(rid.group(1))
    except ValueError:
        return None, None
    return kind.group(1).decode(), value


#: Characters of a value of the parent's that a report shows, at most.
SHOWN = 100

_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def _cut(text: str) -> str:
    return text[:SHOWN] + "..." if len(text) > SHOWN else text


def _shown(value: Any) -> str:
    """``value`` as JSON text for a report, cut at SHOWN characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = type(value).__name__
    return _cut(text)


def _not_json(constant: str) -> Any:
    raise ValueError("%s is not JSON" % constant)


# The parent's frames are strict JSON, read as the other runners read them:
# NaN and Infinity are refused, as are bytes that are not UTF-8 (json.loads
# would let the UTF-8 form of a lone surrogate through).
_decode = json.JSONDecoder(parse_constant=_not_json).decode

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_dumps = _encoder.encode


def _c_dumps() -> Any:
    # The C encoder that JSONEncoder.encode reaches through two Python
    # frames, called directly: a third of the cost of a small frame. Values
    # are checked by check_json first (cycles included), so no markers dict.
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


def encode(frame: Any) -> bytes:
    """One frame as UTF-8 bytes (without the newline); INVALID_ARGUMENT if not JSON."""
    try:
        line: str = _fast_dumps(frame)
        return line.encode("utf-8")  # a lone surrogate has no UTF-8: refused here, not at write
    except (TypeError, ValueError, RecursionError) as e:  # UnicodeEncodeError is a ValueError
        raise InvalidArgumentError("value must be JSON: %s" % e) from None


class RpcClient:
    """Requests to the parent, and dispatch of the parent's requests to us.

    Frames in both directions are bounded by ``max_frame_bytes`` (from
    ``MOTIA_STEP_MAX_FRAME_BYTES``): a request over it raises
    LimitExceededError in the caller before anything is sent, a reply over it
    becomes an error reply, and an incoming frame over it is answered at
    once (a request with a LIMIT_EXCEEDED error reply, a reply by failing the
    call that waits for it), never buffered whole.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        read_fd: int,
        write_fd: int,
        on_request: Callable[[dict[str, Any]], None],
        max_frame_bytes: int | None = None,
    ) -> None:
        self._loop = loop
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._on_request = on_request
        self.max_frame_bytes = frame_limit() if max_frame_bytes is None else max_frame_bytes
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._heads: dict[str, bytes] = {}
        self._next_id = 0
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.closed = asyncio.Event()
        self._buf = bytearray()
        self._discarding = False
        #: Why the channel closed when reading it failed (a bug of ours), else None:
        #: the worker then exits with a failure status.
        self.failure: str | None = None

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
            try:
                self._feed(data)
            except Exception as e:
                # Only a bug of ours gets here (the parent's bad frames are
                # answered, not raised), and the replies read with the frame
                # that raised may be lost: no call waiting can count on its
                # reply, so all of them fail now and the worker exits,
                # rather than wait for ever.
                self._loop.remove_reader(self._read_fd)
                self.failure = "the reader failed (%s: %s)" % (type(e).__name__, e)
                sys.stderr.write("motia-state: the reader failed:\n%s" % traceback.format_exc())
                self._close(self.failure)
        else:  # end of input: the parent closed the channel
            self._loop.remove_reader(self._read_fd)
            self._close()

    @property
    def in_flight(self) -> Sized:
        """Our requests still waiting for a reply (a live view)."""
        return self._pending

    # -- outgoing ------------------------------------------------------------

    def request(self, method: str, args: Any, checked: bool = False) -> asyncio.Future[Any]:
        """Send a request; the future resolves with its result (loop thread only).

        ``args`` is checked to be JSON unless the caller did (``checked``);
        INVALID_ARGUMENT or LIMIT_EXCEEDED raise here, before anything is sent.
        """
        if self.closed.is_set():
            raise UnavailableError("the parent closed the channel")
        if not checked:
            check_json(args, "args", WRAP_DEPTH)
        head = self._heads.get(method)
        if head is None:  # the frame's fixed prefix, encoded once per method
            head = self._heads[method] = b'{"type":"rpc_request","method":%s,"id":' % encode(method)
        rid = self._next_id + 1
        line = b'%s%d,"args":%s}' % (head, rid, encode(args))
        if len(line) > self.max_frame_bytes:
            raise LimitExceededError(
                "the %s request encodes to %d bytes, over the %d-byte frame limit"
                % (method, len(line), self.max_frame_bytes)
            )
        self._next_id = rid
        fut = self._loop.create_future()
        alone = not self._pending and not self._out
        self._pending[rid] = fut
        if alone:
            # Nothing else in flight: a sequential caller. Send now rather
            # than a loop turn later (and schedule no flush for that turn);
            # a burst's later requests still batch.
            self._write(line + b"\n")
        else:
            self._queue(line)
        return fut

    def notify(self, method: str, args: Any, checked: bool = False) -> None:
        """Send a notification; safe from any thread. Raises as :meth:`request` does."""
        if not checked:
            check_json(args, "args", WRAP_DEPTH)
        line = encode({"type": "rpc_request", "method": method, "args": args})
        if len(line) > self.max_frame_bytes:
            raise LimitExceededError(
                "the %s notification encodes to %d bytes, over the %d-byte frame limit"
                % (method, len(line), self.max_frame_bytes)
            )
        if threading.current_thread() is threading.main_thread() and self._loop.is_running():
            self._queue(line)
        else:
            self._loop.call_soon_threadsafe(self._queue, line)

    def respond(self, rid: Any, result: Any) -> None:
        """Reply with a result, or with an error when it is not JSON or too big.

        A result that is not JSON is STEP_FAILED naming where (``result.when``);
        one nested past MAX_DEPTH + WRAP_DEPTH or over the frame limit is
        LIMIT_EXCEEDED.
        """
        try:
            check_json(result, "result", WRAP_DEPTH)
            line = encode({"type": "rpc_response", "id": rid, "result": result})
        except InvalidArgumentError as e:
            self.respond_error(rid, "STEP_FAILED", "the handler returned a value that is not JSON: %s" % e.message)
            return
        except LimitExceededError as e:
            self.respond_error(rid, "LIMIT_EXCEEDED", "the handler's result is too deep: %s" % e.message)
            return
        if len(line) > self.max_frame_bytes:
            self.respond_error(
                rid,
                "LIMIT_EXCEEDED",
                "the handler's result encodes to a %d-byte reply, over the %d-byte frame limit"
                % (len(line), self.max_frame_bytes),
            )
            return
        self._queue(line)

    def respond_error(self, rid: Any, code: str, message: str, stack: str | None = None) -> None:
        """Reply with an error (a message or stack too big for a frame is cut)."""
        body: dict[str, Any] = {"code": code, "message": message}
        if stack:
            body["stack"] = stack
        try:
            line = encode({"type": "rpc_response", "id": rid, "error": body})
        except InvalidArgumentError:
            # A lone surrogate in a message or stack: the parent refuses a
            # reply holding one (even escaped), and the step's message with
            # it, so each becomes "?" (as the Ruby runner scrubs bad text).
            body = {k: v.encode("utf-8", "replace").decode("utf-8") for k, v in body.items()}
            line = json.dumps({"type": "rpc_response", "id": rid, "error": body}).encode()
        if len(line) > self.max_frame_bytes:
            room = max(self.max_frame_bytes // 8, 64)
            body = {"code": code, "message": body["message"][:room] + " [cut: over the frame limit]"}
            line = json.dumps({"type": "rpc_response", "id": rid, "error": body}).encode()
        self._queue(line)

    def _queue(self, line: bytes) -> None:
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
        if self.failure is not None:
            # After a failed read nothing goes out: the parent learns of it
            # from the exit, not from answers that look like a handler's own failure.
            self._out.clear()
            return
        data = b"\n".join(self._out) + b"\n"
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
        # max_frame_bytes: an over-long frame is answered as soon as it
        # crosses the limit and the rest of it is skipped as it streams in.
        parts = chunk.split(b"\n")
        tail = parts.pop()  # what follows the last newline: an unfinished line
        if parts:
            if self._discarding:
                parts[0] = b""  # the rest of the refused line
                self._discarding = False
            elif self._buf:
                parts[0] = bytes(self._buf) + parts[0]
            self._buf.clear()
        limit = self.max_frame_bytes
        lines = []
        for line in parts:
            if len(line) > limit:
                self._oversized(line[:HEAD_BYTES], len(line))
            elif line.strip():
                lines.append(line)
        if not self._discarding:
            self._buf += tail
            if len(self._buf) > limit:
                self._oversized(bytes(self._buf[:HEAD_BYTES]), len(self._buf))
                self._buf.clear()
                self._discarding = True
        if lines:
            self._on_lines(lines)

    def _oversized(self, head: bytes, size: int) -> None:
        message = "a frame of at least %d bytes is over the %d-byte frame limit" % (size, self.max_frame_bytes)
        self._unreadable(head, "LIMIT_EXCEEDED", message)

    def _unreadable(self, head: bytes, code: str, message: str) -> None:
        # A frame we will not decode still gets its answer when its id can be
        # read: a request an error reply, a reply the failure of its call.
        kind, rid = sniff(head)
        if kind == "rpc_response" and type(rid) is int and rid in self._pending:
            fut = self._pending.pop(rid)
            if not fut.done():
                fut.set_exception(error_from_wire({"code": code, "message": "the reply: " + message}))
        else:
            self.refuse(rid if kind == "rpc_request" else None, code, message)

    def refuse(self, rid: Any, code: str, message: str) -> None:
        """A frame of the parent's that is not served: one line on stderr, and an error reply if it has an id.

        Only a frame that says it is a request is ever answered: the id of
        anything else may be that of one of the parent's own requests.
        """
        answered = rid is not None and not self.closed.is_set()
        outcome = "answered %s" % code if answered else "dropped (no id to answer)"
        sys.stderr.write("motia-state: %s: %s\n" % (message, outcome))
        if answered:
            self.respond_error(rid, code, message)

    def _on_lines(self, lines: list[bytes]) -> None:
        try:
            # One decoder call for a whole burst of replies is several times
            # cheaper than one per line; any bad line sends us line by line.
            # Lines that are no frames alone may join into valid JSON (a
            # frame cut by a newline): then the count is off, and each line
            # is read alone, as the other runners read it.
            frames = _decode((b"[" + b",".join(lines) + b"]").decode("utf-8"))
            if len(frames) != len(lines):
                raise ValueError("lines that are no frames")
        except (ValueError, RecursionError):
            frames = []
            for line in lines:
                try:
                    frames.append(_decode(line.decode("utf-8")))
                except UnicodeDecodeError:
                    self._unreadable(line[:HEAD_BYTES], "INVALID_ARGUMENT", "a frame that is not UTF-8 text")
                except ValueError as e:
                    self._unreadable(
                        line[:HEAD_BYTES], "INVALID_ARGUMENT", "a frame that is not JSON (%s)" % _cut(str(e))
                    )
                except RecursionError:  # nested past what any value may be: over a limit, whatever its size
                    self._unreadable(line[:HEAD_BYTES], "LIMIT_EXCEEDED", "a frame nested too deeply to be read")
        pending = self._pending
        for frame in frames:
            if type(frame) is not dict:
                what = "null" if frame is None else "a JSON %s" % _JSON_KINDS.get(type(frame), "value")
                self.refuse(None, "INVALID_ARGUMENT", "a frame that is not a JSON object (%s)" % what)
                continue
            kind = frame.get("type")
            if kind == "rpc_response":
                rid = frame.get("id")
                # Our ids are ints; anything else (a list is not even hashable) is a reply to nothing.
                fut = pending.pop(rid, None) if type(rid) is int else None
                if fut is None:
                    sys.stderr.write("motia-state: a reply to no request (id %s)\n" % _shown(rid))
                    continue
                if fut.done():  # a call the step stopped waiting for
                    continue
                error = frame.get("error")
                if error is not None:
                    fut.set_exception(error_from_wire(error))
                else:
                    fut.set_result(frame.get("result"))
            elif kind == "rpc_request":
                rid = frame.get("id")
                if rid is not None and type(rid) not in (str, int):
                    # 1.5 or 1e400 is no id: an answer could not carry it back as JSON.
                    self.refuse(
                        None,
                        "INVALID_ARGUMENT",
                        "a request whose id is neither a string nor an integer (%s)" % _shown(rid),
                    )
                    continue
                if type(frame.get("method")) is not str:
                    message = "a request whose method is not a string (%s)" % _shown(frame.get("method"))
                    self.refuse(rid, "INVALID_ARGUMENT", message)
                    continue
                try:
                    self._on_request(frame)
                except Exception as e:  # one odd request must not cost the frames after it
                    sys.stderr.write("motia-state: a request from the parent failed: %r\n" % (e,))
            else:
                what = "none" if "type" not in frame else _shown(kind)
                message = "a frame whose type is neither rpc_request nor rpc_response (%s)" % what
                self.refuse(None, "INVALID_ARGUMENT", message)

    def _close(self, reason: str = "the parent closed the channel") -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(UnavailableError(reason))
        self._pending.clear()
