"""Frames, the line reader, the handler table and a peer on scripted streams."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import msgspec
import pytest
from anyio.abc import ByteReceiveStream, ByteSendStream

import motia_state as ms
from motia_state.rpc import CallContext, HandlerTable, LineReader, Peer, decode_frame, state_handlers
from motia_state.rpc.frames import Oversized, RpcRequest, RpcResponse, encode_request, sniff_id


class ScriptedReceive(ByteReceiveStream):
    """Yields the given chunks, then end of stream."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self.chunks:
            raise anyio.EndOfStream
        return self.chunks.pop(0)

    async def aclose(self) -> None:
        self.chunks.clear()


class Collect(ByteSendStream):
    """Records every write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def send(self, item: bytes) -> None:
        self.writes.append(item)

    async def aclose(self) -> None:
        pass

    def frames(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in b"".join(self.writes).splitlines()]


async def read_all(chunks: list[bytes], max_bytes: int = 1 << 20) -> list[bytes | Oversized]:
    reader = LineReader(ScriptedReceive(chunks), max_bytes)
    out: list[bytes | Oversized] = []
    while (batch := await reader.receive_batch()) is not None:
        out.extend(batch)
    return out


# -- reader ------------------------------------------------------------------------


async def test_reader_rejoins_a_multibyte_character_split_across_reads() -> None:
    line = '{"v":"é😀"}'.encode()
    cut = line.index("😀".encode()) + 2  # inside the 4-byte sequence
    assert await read_all([line[:cut], line[cut:] + b"\n"]) == [line]


async def test_reader_handles_crlf_empty_lines_and_a_last_line_without_newline() -> None:
    assert await read_all([b"a\r\n\n\r\n  \nb", b"c"]) == [b"a", b"bc"]


async def test_reader_discards_an_oversized_line_without_buffering_it() -> None:
    big_head = b'{"type":"rpc_request","id":42,"args":"'
    chunks = [big_head + b"x" * 100, b"x" * 1000, b'x"}\nnext\n']
    reader = LineReader(ScriptedReceive(chunks), 64)
    out = []
    while (batch := await reader.receive_batch()) is not None:
        out.extend(batch)
        assert len(reader._buf) <= 64
    assert isinstance(out[0], Oversized) and out[0].size > 1000
    assert sniff_id(out[0].head) == 42
    assert out[1:] == [b"next"]


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        ([b"a\n \t\nb\n"], [b"a", b"b"]),  # a line of blanks between two
        ([b"\x0b\na\n"], [b"a"]),
        ([b"a\n\x0c"], [b"a"]),  # blanks at the end of the stream
        ([b" a \nb\n"], [b" a ", b"b"]),  # blanks around text are kept
        ([b"pa", b"rt\nx\ny\r\nz"], [b"part", b"x", b"y", b"z"]),
        ([b"12345678\n123456789\nok\n"], [b"12345678", Oversized(b"123456789", 9), b"ok"]),
    ],
)
async def test_reader_splits_a_chunk_as_it_would_line_by_line(chunks: list[bytes], lines: list[Any]) -> None:
    assert await read_all(chunks, 8) == lines


async def test_many_lines_in_one_chunk_come_back_as_one_batch() -> None:
    reader = LineReader(ScriptedReceive([b"1\n2\n3\n"]))
    assert await reader.receive_batch() == [b"1", b"2", b"3"]


# -- frames --------------------------------------------------------------------------


def test_frames_round_trip_in_the_motia_shapes() -> None:
    frame = decode_frame(encode_request(7, "state.get", {"traceId": "t", "key": "k"}))
    assert isinstance(frame, RpcRequest) and frame.id == 7 and frame.method == "state.get"
    assert json.loads(bytes(frame.args)) == {"traceId": "t", "key": "k"}
    reply = decode_frame(b'{"type":"rpc_response","id":"7","error":{"code":"TYPE_MISMATCH","message":"m"}}')
    assert isinstance(reply, RpcResponse) and reply.error is not None and reply.error.code == "TYPE_MISMATCH"
    note = decode_frame(b'{"type":"rpc_request","method":"log","args":{"level":"info","msg":"x"}}')
    assert isinstance(note, RpcRequest) and note.id is None


@pytest.mark.parametrize(
    "line", [b"not json", b'{"type":"rpc_request"', b'{"type":"other"}', b"[1,2]", b'{"type":"rpc_request","id":1}']
)
def test_garbage_and_truncated_json_are_decode_errors(line: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_frame(line)


# -- handler table ----------------------------------------------------------------------


async def test_handler_table_errors_have_codes() -> None:
    table = state_handlers(ms.StateManager())
    ctx = CallContext()
    with pytest.raises(ms.NotFoundError):
        await table.dispatch("state.nope", b"{}", ctx)
    with pytest.raises(ms.InvalidArgumentError, match=r"value.*\$\.args"):
        await table.dispatch("state.set", b'{"traceId":"t","key":"k"}', ctx)
    with pytest.raises(ms.InvalidArgumentError, match="items"):
        await table.dispatch("state.push", b'{"traceId":"t","key":"k","items":5}', ctx)
    await table.dispatch("state.set", b'{"traceId":"t","key":"k","value":"s"}', ctx)
    with pytest.raises(ms.TypeMismatchError):
        await table.dispatch("state.increment", b'{"traceId":"t","key":"k"}', ctx)


async def test_unexpected_handler_failures_are_internal_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    table = HandlerTable()

    async def broken(args: Any, ctx: CallContext) -> None:
        raise KeyError("bug")

    table.register("x.broken", Any, broken)
    with caplog.at_level(logging.ERROR), pytest.raises(ms.InternalError):
        await table.dispatch("x.broken", b"null", CallContext())
    assert "x.broken" in caplog.text


async def test_update_records_never_run_over_rpc() -> None:
    table = state_handlers(ms.StateManager())
    result = await table.dispatch(
        "state.transaction",
        b'{"traceId":"t","operations":[{"type":"update","key":"k","updateFn":"lambda v: 1"}]}',
        CallContext(),
    )
    assert result["success"] is False and result["code"] == "INVALID_ARGUMENT"


# -- peer on scripted streams --------------------------------------------------------------


async def run_peer(lines: list[bytes], max_frame: int = 1 << 20) -> tuple[list[dict[str, Any]], ms.StateManager]:
    manager = ms.StateManager()
    out = Collect()
    peer = Peer(ScriptedReceive(lines), out, state_handlers(manager), max_frame_bytes=max_frame)
    await peer.run()
    return out.frames(), manager


def req(rid: Any, method: str, args: Any) -> bytes:
    return json.dumps({"type": "rpc_request", "id": rid, "method": method, "args": args}).encode() + b"\n"


async def test_pipelined_requests_are_applied_in_order_and_answered_in_one_write() -> None:
    chunk = b"".join(req(i, "state.increment", {"traceId": "t", "key": "n"}) for i in range(1000))
    manager = ms.StateManager()
    out = Collect()
    await Peer(ScriptedReceive([chunk]), out, state_handlers(manager)).run()
    frames = out.frames()
    assert [f["id"] for f in frames] == list(range(1000))
    assert [f["result"] for f in frames] == list(range(1, 1001))
    assert len(out.writes) == 1


async def test_peer_survives_junk_and_answers_what_it_can(caplog: pytest.LogCaptureFixture) -> None:
    lines = [
        b"hello, I am not a frame\n",
        b'{"type":"rpc_request","id":"a","method":"state.get","args":\n',
        b'{"type":"rpc_response","id":999,"result":1}\n',
        req("b", "state.nope", {}),
        req("c", "state.set", {"traceId": "t", "key": "k"}),
        b'{"type":"rpc_request","id":"big","method":"state.set","args":{"value":"' + b"x" * 5000 + b'"}}\n',
        req("d", "state.set", {"traceId": "t", "key": "k", "value": 1}),
    ]
    with caplog.at_level(logging.WARNING):
        frames, manager = await run_peer(lines, max_frame=1024)
    by_id = {f["id"]: f for f in frames}
    assert by_id["a"]["error"]["code"] == "INVALID_ARGUMENT"
    assert by_id["b"]["error"]["code"] == "NOT_FOUND"
    assert by_id["c"]["error"]["code"] == "INVALID_ARGUMENT"
    assert by_id["big"]["error"]["code"] == "LIMIT_EXCEEDED"
    assert by_id["d"]["result"] == 1
    assert await manager.get("t", "k") == 1
    assert "hello, I am not a frame" in caplog.text
    assert "reply to no pending request" in caplog.text


async def test_peer_requests_resolve_and_fail_when_the_worker_goes_away() -> None:
    send_out = Collect()
    receive_send, receive_recv = anyio.create_memory_object_stream[bytes](10)

    class MemReceive(ByteReceiveStream):
        async def receive(self, max_bytes: int = 65536) -> bytes:
            try:
                return await receive_recv.receive()
            except anyio.EndOfStream:
                raise anyio.EndOfStream from None

        async def aclose(self) -> None:
            await receive_recv.aclose()

    peer = Peer(MemReceive(), send_out, HandlerTable())
    results: list[Any] = []

    async def ask() -> None:
        results.append(await peer.request("invoke", {"data": 1}))
        try:
            await peer.request("invoke", {"data": 2})
        except ms.UnavailableError as e:
            results.append(e.code)

    async with anyio.create_task_group() as tg:
        tg.start_soon(peer.run)
        tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        sent = send_out.frames()[0]
        assert sent["method"] == "invoke" and sent["args"] == {"data": 1}
        await receive_send.send(json.dumps({"type": "rpc_response", "id": sent["id"], "result": "ok"}).encode() + b"\n")
        await anyio.wait_all_tasks_blocked()
        await receive_send.aclose()
    await receive_recv.aclose()
    assert results == ["ok", "UNAVAILABLE"]


# -- the inline request path: replies in order, write contexts per invocation -------


def _request(rid: int, method: str, args: Any) -> bytes:
    return json.dumps({"type": "rpc_request", "id": rid, "method": method, "args": args}).encode()


async def test_replies_of_every_shape_come_back_in_request_order(caplog: pytest.LogCaptureFixture) -> None:
    table = HandlerTable()

    async def echo(args: Any, ctx: CallContext) -> Any:
        return args

    async def not_json(args: Any, ctx: CallContext) -> Any:
        return "\ud800"  # a lone surrogate: no UTF-8 for it

    table.register("echo", Any, echo)
    table.register("bad", Any, not_json)
    lines = [
        _request(1, "echo", 1),
        _request(2, "echo", "short"),
        _request(3, "nope", None),  # NOT_FOUND between small replies
        _request(4, "echo", None),
        _request(5, "echo", {"big": "x" * 300}),  # not a small reply
        _request(6, "echo", 2.5),
        b"{broken",
        _request(7, "bad", None),
        _request(8, "echo", True),
        _request(9, "echo", "y" * 300),
    ]
    out = Collect()
    await Peer(ScriptedReceive([b"\n".join(lines) + b"\n"]), out, table).run()
    frames = out.frames()
    assert [f["id"] for f in frames] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert [f.get("result") for f in frames if "error" not in f] == [
        1,
        "short",
        None,
        {"big": "x" * 300},
        2.5,
        True,
        "y" * 300,
    ]
    errors = {f["id"]: f["error"]["code"] for f in frames if "error" in f}
    assert errors == {3: "NOT_FOUND", 7: "INTERNAL"}
    assert len(out.writes) == 1


async def test_a_run_of_small_replies_over_the_frame_limit_is_answered_reply_by_reply() -> None:
    table = HandlerTable()

    async def echo(args: Any, ctx: CallContext) -> Any:
        return args

    async def grow(args: Any, ctx: CallContext) -> Any:
        return "z" * 40

    table.register("echo", Any, echo)
    table.register("grow", Any, grow)
    # Each request and each of the first replies fits 64 bytes, their run
    # does not, and the last reply (a short string) alone does not either.
    lines = [_request(i, "echo", i) for i in range(1, 6)] + [_request(6, "grow", None)]
    out = Collect()
    await Peer(ScriptedReceive([b"\n".join(lines) + b"\n"]), out, table, max_frame_bytes=64).run()
    frames = out.frames()
    assert [f["id"] for f in frames] == [1, 2, 3, 4, 5, 6]
    assert [f.get("result") for f in frames[:5]] == [1, 2, 3, 4, 5]
    assert frames[5]["error"]["code"] == "LIMIT_EXCEEDED"


async def test_writes_in_one_read_carry_the_invocation_that_made_each() -> None:
    # A handler that is not stamped runs outside any write context; a
    # stamped one after the invocation changed carries the new one.
    from motia_state.feed import current_write_context

    state = ms.StateManager()
    table = state_handlers(state)
    seen: list[Any] = []

    # What another task (the next invoke) does while a request waits.
    async def trace(args: Any, ctx: CallContext) -> None:
        ctx.trace_id = args

    async def deeper(args: Any, ctx: CallContext) -> None:
        ctx.depth += 1

    async def rename(args: Any, ctx: CallContext) -> None:
        ctx.step = args

    async def plain(args: Any, ctx: CallContext) -> None:
        seen.append(current_write_context())

    table.register("trace", Any, trace, stamped=True)
    table.register("deeper", Any, deeper, stamped=True)
    table.register("rename", Any, rename, stamped=True)
    table.register("plain", Any, plain)
    ctx = CallContext(step="s", trace_id="t1")
    inc = {"traceId": "g", "key": "k"}
    lines = [
        _request(1, "state.increment", inc),
        _request(2, "state.increment", inc),
        _request(3, "trace", "t2"),
        _request(4, "state.set", {**inc, "value": 7}),
        _request(5, "deeper", None),
        _request(6, "state.increment", inc),
        _request(7, "rename", "s2"),
        _request(8, "state.increment", inc),
        _request(9, "plain", None),
        _request(10, "state.increment", inc),
    ]
    out = Collect()
    await Peer(ScriptedReceive([b"\n".join(lines) + b"\n"]), out, table, ctx).run()
    assert [f.get("result") for f in out.frames()] == [1, 2, None, 7, None, 8, None, 9, None, 10]
    assert seen == [(0, None)]
    records = [c async for c in state.changes(follow=False)]
    assert [(c.depth, c.origin) for c in records] == [
        (0, {"step": "s", "traceId": "t1"}),
        (0, {"step": "s", "traceId": "t1"}),
        (0, {"step": "s", "traceId": "t2"}),
        (1, {"step": "s", "traceId": "t2"}),
        (1, {"step": "s2", "traceId": "t2"}),
        (1, {"step": "s2", "traceId": "t2"}),
    ]
