"""NDJSON frames: the shapes, one reused codec, and a bounded line reader.

A frame is one JSON object on one line. Requests carry ``args`` as raw JSON
(``msgspec.Raw``) so each handler decodes them once, straight into its typed
args struct. Lines are split on raw bytes before decoding, so a multibyte
character split across two reads can never break a frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream
from anyio.abc import ByteReceiveStream

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "FRAME_DECODER",
    "ErrorBody",
    "Frame",
    "LineReader",
    "Oversized",
    "Reply",
    "RpcRequest",
    "RpcResponse",
    "append_response",
    "decode_frame",
    "encode_error",
    "encode_replies",
    "encode_request",
    "encode_response",
    "sniff_id",
    "to_log_line",
]

DEFAULT_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024

RequestId = str | int


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """An error reply: a stable code, a message, and optional extras."""

    code: str
    message: str
    stack: str | None = None
    data: Any = None


class RpcRequest(msgspec.Struct, tag_field="type", tag="rpc_request", omit_defaults=True):
    """A request (with ``id``) or a notification (without)."""

    method: str
    id: RequestId | None = None
    args: msgspec.Raw = msgspec.Raw(b"null")


class RpcResponse(msgspec.Struct, tag_field="type", tag="rpc_response", omit_defaults=True):
    """A reply: ``result`` on success, ``error`` on failure."""

    id: RequestId
    result: Any = None
    error: ErrorBody | None = None


Frame = RpcRequest | RpcResponse


class Reply(msgspec.Struct, tag_field="type", tag="rpc_response"):
    """A success reply, as :func:`encode_replies` takes it."""

    id: RequestId
    result: Any


_decoder: Final = msgspec.json.Decoder(Frame)
#: The decoder behind :func:`decode_frame`, for a loop that calls it directly.
FRAME_DECODER: Final = _decoder
_encoder: Final = msgspec.json.Encoder()


def decode_frame(line: bytes | bytearray | memoryview) -> Frame:
    """Decode one line; raises ``msgspec.DecodeError`` (or ValidationError)."""
    frame: Frame = _decoder.decode(line)
    return frame


def _encode(obj: Any) -> bytes:
    buf = bytearray()
    _encoder.encode_into(obj, buf)
    buf.extend(b"\n")
    return bytes(buf)


def encode_request(id: RequestId | None, method: str, args: Any) -> bytes:
    """One request line (a notification when ``id`` is None)."""
    raw = msgspec.Raw(_encoder.encode(args))
    return _encode(RpcRequest(method=method, id=id, args=raw))


def encode_response(id: RequestId, result: Any) -> bytes:
    """One success line. ``result`` must be JSON-encodable."""
    return _encode({"type": "rpc_response", "id": id, "result": result})


def append_response(out: bytearray, id: RequestId, result: Any) -> int:
    """Append one success line to ``out``; returns its size in bytes.

    The same bytes as :func:`encode_response`, written in place: a burst of
    replies is built in one buffer with no copy per reply. On an encoding
    error ``out`` is left as it was and the error is raised.
    """
    start = len(out)
    out += b'{"type":"rpc_response","id":'
    try:
        _encoder.encode_into(id, out, -1)
        out += b',"result":'
        _encoder.encode_into(result, out, -1)
    except BaseException:
        del out[start:]
        raise
    out += b"}\n"
    return len(out) - start


def encode_replies(replies: list[Reply]) -> bytes:
    """Success lines, one per reply, in one call: the same bytes as :func:`append_response` for each."""
    return _encoder.encode_lines(replies)


def encode_error(id: RequestId, code: str, message: str, stack: str | None = None) -> bytes:
    """One failure line."""
    return _encode(RpcResponse(id=id, error=ErrorBody(code=code, message=message, stack=stack)))


# An id is a string or an integer: "1.5", "1e3" or a number past int64 is
# neither, and must not be read as its integer part.
_ID_RE: Final = re.compile(rb'"id"\s*:\s*("(?:[^"\\]|\\.){0,256}"|-?\d{1,19}(?![\d.eE]))')
_INT64: Final = range(-(2**63), 2**63)


def sniff_id(head: bytes) -> RequestId | None:
    """Best-effort id of a frame we cannot decode (too big, too deep, or broken JSON).

    None unless an id that a reply can carry (a string, or an integer that
    fits in 64 bits) is found.
    """
    m = _ID_RE.search(head)
    if m is None:
        return None
    try:
        value = msgspec.json.decode(m.group(1))
    except msgspec.DecodeError:
        return None
    if isinstance(value, str) or (isinstance(value, int) and value in _INT64):
        return value
    return None


def to_log_line(text: str) -> str:
    """``text`` with every control character escaped (``\\n``, ``\\x1b``), so it stays one log line.

    What a worker sends is logged; a newline or carriage return in it must
    not forge lines of the parent's log.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in text)


@dataclass(frozen=True, slots=True)
class Oversized:
    """A line that was longer than the limit: its first bytes and its size."""

    head: bytes
    size: int


class LineReader:
    """Split a byte stream into lines of at most ``max_bytes`` (bounded memory).

    ``receive_batch`` returns every complete line available after one read,
    so the caller can answer them all with one write. An over-long line is
    discarded as it streams in (only its first bytes are kept, to find its
    id) and reported as :class:`Oversized`.
    """

    HEAD_BYTES: Final = 512

    def __init__(self, stream: ByteReceiveStream, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._stream = stream
        self._max = max_bytes
        self._buf = bytearray()
        self._discarding: bytearray | None = None  # head of the oversized line
        self._discarded = 0
        self._eof = False

    async def receive_batch(self) -> list[bytes | Oversized] | None:
        """The next lines (at least one), or None at end of stream."""
        while True:
            if self._eof:
                return None
            try:
                chunk = await self._stream.receive()
            except (EndOfStream, BrokenResourceError, ClosedResourceError):
                self._eof = True
                if self._discarding is not None:
                    return [Oversized(bytes(self._discarding), self._discarded)]
                if self._buf.strip():
                    # A last line without "\n" still counts as a frame.
                    line, self._buf = bytes(self._buf), bytearray()
                    return [line]
                return None
            lines = self._feed(chunk)
            if lines:
                return lines

    def _feed(self, chunk: bytes) -> list[bytes | Oversized]:
        if type(chunk) is not bytes:
            # A stream may hand out a bytearray or a memoryview: the split
            # below (and the peer's fast path) take bytes.
            chunk = bytes(chunk)
        out: list[bytes | Oversized] = []
        start = 0
        if self._discarding is not None:
            nl = chunk.find(b"\n")
            if nl < 0:
                self._discarded += len(chunk)
                return out
            self._discarded += nl
            out.append(Oversized(bytes(self._discarding), self._discarded))
            self._discarding = None
            start = nl + 1
        buf = self._buf
        nl = chunk.find(b"\n", start)
        if nl >= 0 and buf:
            buf += chunk[start:nl]
            self._emit(bytes(buf), out)
            buf.clear()
            start = nl + 1
        last = chunk.rfind(b"\n", start)
        if last >= start:
            body = chunk[start:last] if start or last != len(chunk) - 1 else chunk[:-1]
            lines = body.split(b"\n")
            if len(body) <= self._max and b"\r" not in body and b"" not in lines and not any(map(bytes.isspace, lines)):
                # The common case, all in C: every line fits the limit, and
                # none is blank or ends with "\r".
                out += lines
            else:
                for line in lines:
                    self._emit(line, out)
            start = last + 1
        rest = len(chunk) - start
        if len(buf) + rest > self._max:
            head = (bytes(buf) + chunk[start : start + self.HEAD_BYTES])[: self.HEAD_BYTES]
            self._discarding = bytearray(head)
            self._discarded = len(buf) + rest
            buf.clear()
        elif rest:
            buf += chunk[start:]
        return out

    def _emit(self, line: bytes, out: list[bytes | Oversized]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self._max:
            out.append(Oversized(line[: self.HEAD_BYTES], len(line)))
        elif line.strip():
            out.append(line)
