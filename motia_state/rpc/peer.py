"""One RPC peer over a pair of byte streams (a worker's stdout and stdin).

Bidirectional: the worker's requests are served from the handler table, in
the order they arrive (that order is the contract); the parent's own
requests (``invoke``) wait on a pending map. Replies to everything read in
one chunk go out in one write, which is what makes pipelining cheap.
Nothing a worker writes can kill the peer: junk lines are logged as worker
output, over-long lines are dropped without buffering them, and a reply to
no pending request is logged and dropped.
"""

from __future__ import annotations

import logging
import re
from contextvars import Token
from typing import Any, Final

import anyio
import msgspec
from anyio.abc import ByteReceiveStream, ByteSendStream

from ..errors import InvalidArgumentError, LimitExceededError, StateError, UnavailableError, error_for_code
from ..feed import WriteContext, enter_write_context, exit_write_context
from .frames import (
    DEFAULT_MAX_FRAME_BYTES,
    FRAME_DECODER,
    LineReader,
    Oversized,
    Reply,
    RpcRequest,
    RpcResponse,
    append_response,
    decode_frame,
    encode_error,
    encode_replies,
    encode_request,
    sniff_id,
    to_log_line,
)
from .handlers import CallContext, HandlerTable, handler_failure, origin_of
from .pipes import HIGH_WATER, FdSendStream

__all__ = ["Peer", "PeerClosedError"]

log = logging.getLogger("motia_state.rpc")

step_log = logging.getLogger("motia_state.step")


#: Unsent reply bytes above which the peer writes before it reads on.
REPLY_BUDGET: Final = 1 << 20

#: Small replies encoded together at most (a run ends earlier at anything else).
REPLY_RUN: Final = 256

#: Characters of a string result short enough to be a small reply.
SHORT_TEXT: Final = 256


#: A lone surrogate escape: a high half with no low half after it, or a low half alone.
_LONE_SURROGATE: Final = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _malformed(line: bytes, e: Exception) -> str:
    """Why ``line`` is no frame: msgspec's words, and what they leave unsaid.

    A lone surrogate (a Motia runner's JSON.stringify writes one as an
    escape) reads as "Input data was truncated" or "unexpected end of hex
    escape", which names neither the surrogate nor the fix.
    """
    if isinstance(e, msgspec.DecodeError) and _LONE_SURROGATE.search(line) is not None:
        return f"malformed frame: a lone surrogate (\\ud800 without its pair) is not JSON text ({e})"
    return f"malformed frame: {e}"


class PeerClosedError(UnavailableError):
    """The other side closed its output before replying."""


class _Pending:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Any = None
        self.error: StateError | None = None


class Peer:
    """Serve one worker and send it requests; see the module docstring."""

    def __init__(
        self,
        receive: ByteReceiveStream,
        send: ByteSendStream,
        table: HandlerTable,
        context: CallContext | None = None,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self._reader = LineReader(receive, max_frame_bytes)
        self._max_frame = max_frame_bytes
        self._send = send
        self._table = table
        self.context = context if context is not None else CallContext()
        self._out = bytearray()
        self._send_lock = anyio.Lock()
        # A pipe stream whose write() never waits is written directly, with
        # no lock and no loop turn: what a sequential round trip costs the
        # parent is mostly loop turns.
        self._direct = send if isinstance(send, FdSendStream) else None
        self._pending: dict[str | int, _Pending] = {}
        self._next_id = 0
        self._closed = False
        self._send_broken = False

    @property
    def closed(self) -> bool:
        """True once the worker's output has ended."""
        return self._closed

    # -- outgoing ----------------------------------------------------------------

    async def request(self, method: str, args: Any) -> Any:
        """Send a request and wait for its reply; raises StateError on error."""
        if self._closed:
            raise PeerClosedError(f"worker {self.context.step} has closed its output")
        frame = encode_request(self._next_id + 1, method, args)
        if len(frame) > self._max_frame:
            # The worker would drop it unread and never answer: refuse it here.
            raise LimitExceededError(
                f"{method} request of {len(frame)} bytes is over the {self._max_frame}-byte frame limit"
            )
        self._next_id += 1
        rid = self._next_id
        pending = self._pending[rid] = _Pending()
        self._out += frame
        await self.flush()
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result

    async def notify(self, method: str, args: Any = None) -> None:
        """Send a notification (no reply)."""
        self._out += encode_request(None, method, args)
        await self.flush()

    async def flush(self) -> None:
        """Write everything queued, in one write."""
        direct = self._direct
        if direct is not None:
            if not self._out or self._send_broken:
                self._out.clear()
                return
            data = bytes(self._out)
            self._out.clear()
            try:
                direct.write(data)  # whole, in order: nothing awaits before it
                if direct.backlog > HIGH_WATER:
                    await direct.drain(HIGH_WATER)  # backpressure only when the worker lags
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._send_broken = True  # the worker is gone; the runtime reports its exit
            return
        async with self._send_lock:
            if not self._out:
                return
            data = bytes(self._out)
            self._out.clear()
            if self._send_broken:
                return
            try:
                await self._send.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                # The worker is gone; its exit is reported by the runtime.
                self._send_broken = True

    # -- incoming ------------------------------------------------------------------

    async def run(self) -> None:
        """Read and handle frames until the worker's output ends; nothing a worker sends makes it raise."""
        reader, prepare, context = self._reader, self._table.prepare, self.context
        methods, out, decode = self._table.methods, self._out, FRAME_DECODER.decode
        # Small replies not yet encoded, and the methods they answer (in order).
        replies: list[Reply] = []
        replied: list[str] = []
        try:
            while (batch := await reader.receive_batch()) is not None:
                # The write context of stamped requests is entered once per
                # batch, not per request, and entered again only when the
                # invocation being served changes (or around a method that is
                # not stamped): setting a context variable copies the context.
                token: Token[WriteContext] | None = None
                run_replies = len(batch) > 1
                depth, step, trace_id = -1, "", None
                try:
                    for line in batch:
                        try:
                            frame: RpcRequest | None
                            if type(line) is bytes:
                                try:
                                    decoded = decode(line)
                                except Exception:
                                    # Not a frame: the careful path decodes it again and answers.
                                    if replies:
                                        self._put(replies, replied)
                                    frame = self._frame(line)
                                else:
                                    if isinstance(decoded, RpcResponse):
                                        self._resolve(decoded)
                                        continue
                                    frame = decoded
                            else:
                                if replies:
                                    self._put(replies, replied)
                                frame = self._frame(line)
                            if frame is None:
                                continue
                            # HandlerTable.dispatch, inline: no coroutine of its own per request.
                            try:
                                try:
                                    method = methods[frame.method]
                                    args = method.decoder.decode(frame.args)
                                except Exception:
                                    # The table names what is wrong (and raises it).
                                    handler, args, stamped = prepare(frame.method, frame.args)
                                else:
                                    handler, stamped = method.handler, method.stamped
                                if stamped:
                                    if (
                                        token is None
                                        or context.trace_id is not trace_id
                                        or context.depth != depth
                                        or context.step is not step
                                    ):
                                        if token is not None:
                                            exit_write_context(token)
                                            token = None
                                        depth, step, trace_id = context.depth, context.step, context.trace_id
                                        token = enter_write_context(depth, origin_of(context))
                                elif token is not None:
                                    exit_write_context(token)
                                    token = None
                                result = await handler(args, context)
                            except StateError as e:
                                if replies:
                                    self._put(replies, replied)
                                self._failed(frame, e)
                            except Exception as e:
                                if replies:
                                    self._put(replies, replied)
                                self._failed(frame, handler_failure(e, frame.method, context))
                            else:
                                rid = frame.id
                                if rid is not None:
                                    kind = type(result)
                                    if run_replies and (
                                        kind is int
                                        or kind is float
                                        or kind is bool
                                        or result is None
                                        or (kind is str and len(result) <= SHORT_TEXT)
                                    ):
                                        # A small reply: encoded with the others of its run, in one call.
                                        replies.append(Reply(rid, result))
                                        replied.append(frame.method)
                                        if len(replies) >= REPLY_RUN:
                                            self._put(replies, replied)
                                    else:
                                        if replies:
                                            self._put(replies, replied)
                                        self._reply(frame, result)
                        except Exception:  # bytes nobody foresaw must not end the peer (nor its task group)
                            log.exception("step %s: a frame could not be handled", to_log_line(self.context.step))
                        if len(out) > REPLY_BUDGET:
                            if replies:
                                self._put(replies, replied)
                            # A worker that pipelines requests without reading the
                            # replies: write them out (and wait for the pipe) before
                            # reading further, so they never pile up here.
                            await self.flush()
                finally:
                    if token is not None:
                        exit_write_context(token)
                    if replies:
                        self._put(replies, replied)
                await self.flush()
        finally:
            self._closed = True
            for pending in self._pending.values():
                if not pending.done.is_set():
                    pending.error = PeerClosedError(f"worker {self.context.step} closed its output before replying")
                    pending.done.set()
            self._pending.clear()

    def _frame(self, line: bytes | Oversized) -> RpcRequest | None:
        """The request in ``line`` to serve; anything else (a reply, junk, an oversized line) is dealt with here."""
        if isinstance(line, Oversized):
            rid = sniff_id(line.head)
            log.warning(
                "step %s: dropped a %d-byte line (over the frame limit)", to_log_line(self.context.step), line.size
            )
            if rid is not None and b"rpc_request" in line.head:
                err = LimitExceededError(f"frame of {line.size} bytes is over the limit")
                self._out += encode_error(rid, err.code, err.message)
            elif rid is not None and b"rpc_response" in line.head and rid in self._pending:
                # A reply we cannot read still ends the wait for it.
                pending = self._pending.pop(rid)
                pending.error = LimitExceededError(
                    f"the reply of {line.size} bytes is over the {self._max_frame}-byte frame limit"
                )
                pending.done.set()
            return None
        try:
            frame = decode_frame(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            self._not_a_frame(line, InvalidArgumentError(_malformed(line, e)))
            return None
        except RecursionError:
            # msgspec recurses once per level, even to skip raw args.
            self._not_a_frame(line, LimitExceededError("the frame is nested too deeply to be read"))
            return None
        if isinstance(frame, RpcResponse):
            self._resolve(frame)
            return None
        return frame

    def _put(self, replies: list[Reply], methods: list[str]) -> None:
        """Append the queued small replies to the output, in one encoding call; empties both lists."""
        out = self._out
        try:
            data = encode_replies(replies)
        except Exception:  # a string with a lone surrogate, say: each reply on its own says which
            data = None
        if data is not None and len(data) <= self._max_frame:
            out += data
        else:
            for reply, method in zip(replies, methods, strict=True):
                self._reply(RpcRequest(method=method, id=reply.id), reply.result)
        replies.clear()
        methods.clear()

    def _failed(self, frame: RpcRequest, e: StateError) -> None:
        rid = frame.id
        if rid is not None:
            self._out += encode_error(rid, e.code, e.message)
        elif not frame.method.startswith(("log", "close")):
            log.warning(
                "step %s: notification %s failed: %s",
                to_log_line(self.context.step),
                to_log_line(frame.method),
                to_log_line(str(e)),
            )

    def _reply(self, frame: RpcRequest, result: Any) -> None:
        rid = frame.id
        if rid is None:
            return
        out = self._out
        try:
            size = append_response(out, rid, result)
        except Exception as e:  # TypeError, OverflowError, RecursionError, ...
            log.error("handler %s returned a value that is not JSON: %s", to_log_line(frame.method), e)
            out += encode_error(rid, "INTERNAL", f"{frame.method} returned a value that is not JSON")
            return
        if size > self._max_frame:
            # e.g. getGroup of a huge group: the worker would drop it and wait forever.
            del out[len(out) - size :]
            out += encode_error(
                rid,
                "LIMIT_EXCEEDED",
                f"the reply to {frame.method} would be {size} bytes, over the {self._max_frame}-byte frame limit",
            )

    def _not_a_frame(self, line: bytes, error: StateError) -> None:
        head = line[:512]
        rid = sniff_id(head)
        if rid is not None and b"rpc_request" in head:
            # A request we cannot decode, but whose id we can read: tell the sender.
            self._out += encode_error(rid, error.code, error.message)
            log.warning("step %s: %s", to_log_line(self.context.step), to_log_line(error.message))
        elif rid is not None and b"rpc_response" in head and rid in self._pending:
            # A reply we cannot decode still ends the wait for it.
            pending = self._pending.pop(rid)
            pending.error = type(error)(f"the reply could not be read: {error.message}")
            pending.done.set()
        else:
            step_log.warning(
                "[%s] %s", to_log_line(self.context.step), to_log_line(line[:2000].decode("utf-8", "replace"))
            )

    def _resolve(self, frame: RpcResponse) -> None:
        pending = self._pending.pop(frame.id, None)
        if pending is None:
            log.warning(
                "step %s: reply to no pending request (id %r) dropped", to_log_line(self.context.step), frame.id
            )
            return
        if frame.error is not None:
            err = error_for_code(frame.error.code, frame.error.message)
            if frame.error.stack is not None:
                err.details["stack"] = frame.error.stack
            err.details["remote_code"] = frame.error.code
            pending.error = err
        else:
            pending.result = frame.result
        pending.done.set()
