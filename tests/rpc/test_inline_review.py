"""The peer's inline request path and the fast state handlers, under hostile review."""

from __future__ import annotations

import json
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream

import motia_state as ms
from motia_state.rpc import LineReader, Peer, state_handlers
from motia_state.rpc.frames import Oversized

from .test_rpc import Collect, ScriptedReceive


def _request(rid: int, method: str, args: Any) -> bytes:
    return json.dumps({"type": "rpc_request", "id": rid, "method": method, "args": args}).encode()


class BytearrayReceive(ByteReceiveStream):
    """Yields the given chunks as bytearrays (what a buffered stream may hand out), then end of stream."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = [bytearray(c) for c in chunks]

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self.chunks:
            raise anyio.EndOfStream
        return self.chunks.pop(0)  # type: ignore[return-value]

    async def aclose(self) -> None:
        self.chunks.clear()


async def test_the_reader_splits_chunks_that_are_not_bytes() -> None:
    reader = LineReader(BytearrayReceive([b"a\nb\n", b"c", b"d\ne\n"]))
    out: list[bytes | Oversized] = []
    while (batch := await reader.receive_batch()) is not None:
        out.extend(batch)
    assert out == [b"a", b"b", b"cd", b"e"]


async def test_a_peer_on_a_stream_of_bytearrays_answers_every_request() -> None:
    state = ms.StateManager()
    lines = [_request(i, "state.increment", {"traceId": "g", "key": "k"}) for i in range(1, 4)]
    out = Collect()
    await Peer(BytearrayReceive([b"\n".join(lines) + b"\n"]), out, state_handlers(state)).run()
    assert [(f["id"], f.get("result")) for f in out.frames()] == [(1, 1), (2, 2), (3, 3)]


async def test_a_manager_method_replaced_on_the_instance_serves_the_workers_requests() -> None:
    # A wrapper set on the manager itself (an audit hook, a test double)
    # must see the requests it wraps, as a subclass's override does.
    state = ms.StateManager()
    table = state_handlers(state)
    seen: list[tuple[str, str, str]] = []

    def wrap(name: str) -> None:
        inner = getattr(state, name)

        async def wrapper(*args: Any) -> Any:
            seen.append((name, args[0], args[1]))
            return await inner(*args)

        setattr(state, name, wrapper)

    for name in ("get", "set", "increment", "decrement"):
        wrap(name)
    k = {"traceId": "g", "key": "k"}
    lines = [
        _request(1, "state.set", {**k, "value": 5}),
        _request(2, "state.increment", k),
        _request(3, "state.decrement", {**k, "delta": 2}),
        _request(4, "state.get", k),
    ]
    out = Collect()
    await Peer(ScriptedReceive([b"\n".join(lines) + b"\n"]), out, table).run()
    assert [f.get("result") for f in out.frames()] == [5, 6, 4, 4]
    assert seen == [("set", "g", "k"), ("increment", "g", "k"), ("decrement", "g", "k"), ("get", "g", "k")]
