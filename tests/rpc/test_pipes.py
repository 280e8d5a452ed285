"""The parent's pipe streams (rpc/pipes.py): reads, backpressure, EOF, broken pipes."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import motia_state as ms
from motia_state.rpc import Peer, state_handlers
from motia_state.rpc.pipes import (
    HIGH_WATER,
    READ_AHEAD,
    READ_BYTES,
    FdReceiveStream,
    FdSendStream,
    on_asyncio,
    open_pipe,
)


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


async def test_receive_returns_what_was_written_then_end_of_stream() -> None:
    r, w = open_pipe()
    stream = FdReceiveStream(r)
    os.write(w, b"hello ")
    os.write(w, b"world")
    got = b""
    while len(got) < 11:
        got += await stream.receive()
    assert got == b"hello world"
    os.close(w)
    with pytest.raises(anyio.EndOfStream):
        await stream.receive()
    await stream.aclose()
    assert not _fd_open(r)


async def test_receive_splits_a_chunk_at_max_bytes() -> None:
    r, w = open_pipe()
    stream = FdReceiveStream(r)
    os.write(w, b"abcdef")
    os.close(w)
    assert await stream.receive(4) == b"abcd"
    assert await stream.receive(4) == b"ef"
    with pytest.raises(anyio.EndOfStream):
        await stream.receive()
    await stream.aclose()


async def test_a_waiting_receive_wakes_on_data_and_on_close() -> None:
    r, w = open_pipe()
    stream = FdReceiveStream(r)
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, os.write, w, b"late")
    assert await stream.receive() == b"late"
    waiting = asyncio.ensure_future(stream.receive())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await stream.aclose()  # closing our end ends a receive in progress
    with pytest.raises(anyio.ClosedResourceError):
        await waiting
    os.close(w)


async def test_reads_are_at_most_a_pipe_capacity() -> None:
    # 64 KiB per read keeps the buffer on the heap (a 256 KiB one is mmap'd per read).
    r, w = open_pipe()
    stream = FdReceiveStream(r)
    writer = FdSendStream(w)
    payload = os.urandom(READ_BYTES * 5)
    writer.write(payload)  # more than the pipe holds: the rest waits in the backlog
    assert writer.backlog > 0
    chunks = []
    total = 0
    while total < len(payload):
        chunk = await stream.receive()
        chunks.append(chunk)
        total += len(chunk)
    assert b"".join(chunks) == payload
    assert max(len(c) for c in chunks) <= READ_BYTES
    await writer.aclose()
    with pytest.raises(anyio.EndOfStream):
        await stream.receive()
    await stream.aclose()


async def test_send_waits_above_the_high_water_mark_and_keeps_order() -> None:
    r, w = open_pipe()
    writer = FdSendStream(w)
    reader = FdReceiveStream(r)
    blocks = [bytes([i]) * (HIGH_WATER // 4) for i in range(8)]  # 2x HIGH_WATER in all
    received = bytearray()

    async def read_all() -> None:
        while True:
            try:
                received.extend(await reader.receive())
            except anyio.EndOfStream:
                return

    sender_waited = False
    async with anyio.create_task_group() as tg:
        for block in blocks:
            writer.write(block)
        assert writer.backlog > HIGH_WATER
        send = asyncio.ensure_future(writer.send(b"!"))  # must wait: nobody reads yet
        await asyncio.sleep(0.01)
        sender_waited = not send.done()
        tg.start_soon(read_all)
        await send
        assert writer.backlog <= HIGH_WATER
        await writer.aclose()  # closes once the backlog is written
    assert sender_waited
    assert bytes(received) == b"".join(blocks) + b"!"
    await reader.aclose()
    assert not _fd_open(w)


async def test_writing_to_a_closed_reader_raises_broken_resource() -> None:
    r, w = open_pipe()
    writer = FdSendStream(w)
    os.close(r)
    with pytest.raises(anyio.BrokenResourceError):
        writer.write(b"x")
    with pytest.raises(anyio.BrokenResourceError):
        await writer.send(b"x")
    await writer.aclose()
    assert not _fd_open(w)


async def test_a_backlog_that_breaks_still_closes_and_wakes_the_sender() -> None:
    r, w = open_pipe()
    writer = FdSendStream(w)
    writer.write(b"x" * (HIGH_WATER * 2))
    send = asyncio.ensure_future(writer.send(b"y"))
    await asyncio.sleep(0.01)
    assert not send.done()
    os.close(r)  # the worker died with our bytes unread
    with pytest.raises(anyio.BrokenResourceError):
        await send
    await writer.aclose()
    assert not _fd_open(w)


async def test_abort_closes_at_once_dropping_the_backlog() -> None:
    r, w = open_pipe()
    writer = FdSendStream(w)
    writer.write(b"x" * (READ_BYTES * 4))
    assert writer.backlog > 0
    writer.abort()
    assert not _fd_open(w)
    with pytest.raises(anyio.ClosedResourceError):
        writer.write(b"more")
    drained = b""
    os.set_blocking(r, True)
    while chunk := os.read(r, 1 << 20):
        drained += chunk
    assert 0 < len(drained) < READ_BYTES * 4  # what the pipe held, nothing more
    os.close(r)


async def test_a_peer_serves_requests_over_the_pipe_streams() -> None:
    # The parent's side as call_step_file builds it on asyncio, with this test as the worker.
    to_peer_r, to_peer_w = open_pipe()
    from_peer_r, from_peer_w = open_pipe()
    manager = ms.StateManager()
    peer = Peer(FdReceiveStream(to_peer_r), FdSendStream(from_peer_w), state_handlers(manager))
    requests = b"".join(
        b'{"type":"rpc_request","id":%d,"method":"state.increment","args":{"traceId":"t","key":"k"}}\n' % i
        for i in range(1, 2001)
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(peer.run)
        reader = FdReceiveStream(from_peer_r)
        writer = FdSendStream(to_peer_w)
        writer.write(requests)
        replies = b""
        while replies.count(b"\n") < 2000:
            replies += await reader.receive()
        await writer.aclose()
    lines = replies.splitlines()
    assert lines[0] == b'{"type":"rpc_response","id":1,"result":1}'
    assert lines[-1] == b'{"type":"rpc_response","id":2000,"result":2000}'
    assert await manager.get("t", "k") == 2000
    await reader.aclose()


def test_on_asyncio_tells_the_backends_apart() -> None:
    assert anyio.run(_on_asyncio, backend="asyncio") is True
    assert anyio.run(_on_asyncio, backend="trio") is False


async def _on_asyncio() -> bool:
    return on_asyncio()


async def test_reading_pauses_when_nobody_receives() -> None:
    # A worker that outruns its handlers is held back by the pipe, not buffered in the parent.
    r, w = open_pipe()
    reader = FdReceiveStream(r)
    writer = FdSendStream(w)
    total = READ_AHEAD * 4
    writer.write(b"z" * total)
    await asyncio.sleep(0.05)
    pipe_size = fcntl.fcntl(w, 1032)  # F_GETPIPE_SZ
    held = READ_AHEAD + READ_BYTES + pipe_size  # our read-ahead (plus one read) and the pipe
    assert writer.backlog >= total - held
    got = 0
    while got < READ_AHEAD * 4:
        got += len(await reader.receive())
    assert writer.backlog == 0
    await writer.aclose()
    await reader.aclose()


# -- fuzz: whatever bytes a worker writes, the parent survives and answers every real request --

VALID = st.integers(min_value=0, max_value=10**6).map(
    lambda i: b'{"type":"rpc_request","id":"v%d","method":"state.increment","args":{"traceId":"t","key":"n"}}' % i
)
JUNK = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"\xff\xfe\xfd",  # not UTF-8
            b'{"type":"rpc_request"',  # truncated
            b'{"type":"rpc_response","id":"nobody","result":1}',  # a reply to nothing
            b'{"type":"rpc_request","method":"state.increment","args":{"traceId":"t","key":"n"}}',  # a notification
            b"[]",
            b"null",
            b"\r",
            "é✓ ünïcödé".encode(),
        ]
    ),
    st.integers(min_value=5000, max_value=20000).map(lambda n: b"x" * n),  # over the frame limit
)


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(st.tuples(st.booleans(), VALID, JUNK), max_size=40),
    cuts=st.lists(st.integers(min_value=1, max_value=5000), max_size=20),
)
def test_the_peer_survives_any_bytes_and_answers_every_request(
    items: list[tuple[bool, bytes, bytes]], cuts: list[int]
) -> None:
    lines: list[bytes] = []
    expected: list[str] = []
    notifications = 0
    for n, (valid, request, junk) in enumerate(items):
        if valid:
            request = request.replace(b'"id":"v', b'"id":"v%d-' % n)  # unique ids
            expected.append(json.loads(request)["id"])
            lines.append(request)
        else:
            notifications += junk.startswith(b'{"type":"rpc_request","method":"state.increment"')
            lines.append(junk)
    data = b"\n".join(lines) + b"\n"
    replies, total = asyncio.run(_feed_a_peer(data, cuts))
    by_id = {r.get("id"): r for r in replies}
    for rid in expected:
        assert "result" in by_id[rid], by_id[rid]
    assert total == len(expected) + notifications
    results = sorted(by_id[rid]["result"] for rid in expected)
    assert len(set(results)) == len(results)  # every increment saw a distinct count


async def _feed_a_peer(data: bytes, cuts: list[int]) -> tuple[list[dict[str, Any]], int]:
    to_peer_r, to_peer_w = open_pipe()
    from_peer_r, from_peer_w = open_pipe()
    manager = ms.StateManager()
    peer_out = FdSendStream(from_peer_w)
    peer = Peer(FdReceiveStream(to_peer_r), peer_out, state_handlers(manager), max_frame_bytes=4096)
    reader = FdReceiveStream(from_peer_r)
    writer = FdSendStream(to_peer_w)
    out = bytearray()

    async def collect() -> None:
        while True:
            try:
                out.extend(await reader.receive())
            except anyio.EndOfStream:
                return

    async def run_peer() -> None:
        await peer.run()
        await peer_out.aclose()  # the parent's side is done: the collector sees EOF

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_peer)
        tg.start_soon(collect)
        start = 0
        for cut in cuts:  # written in pieces, so reads split lines (and characters) anywhere
            writer.write(data[start : start + cut])
            start += cut
            await anyio.sleep(0)
        writer.write(data[start:])
        await writer.aclose()
    await reader.aclose()
    replies = [json.loads(line) for line in bytes(out).splitlines()]
    total = await manager.get("t", "n") or 0
    return replies, total
