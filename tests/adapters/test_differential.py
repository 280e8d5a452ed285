"""Differential: random operation sequences give the same results on every adapter.

The memory adapter applies ops.py; the file adapter adds a log; the Redis
adapter re-implements every rule in Lua over JSON text. Values here are the
nasty ones for a text scanner: quotes, backslashes and brackets inside
strings, escaped keys, nested containers, floats, integers past 2^53, and
1 vs 1.0.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import motia_state as ms

from ..conformance import same
from ..helpers import RedisServer

KEYS = st.sampled_from(["a", "b"])
TEXT = st.sampled_from(["", "x", '"', "\\", '\\"', "a,b]", "{}", "[1,2]", '"}', "é✓", "\n\t", "null"])
NUMBERS = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([2**53 + 1, -(2**70), 10**30]),
    st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e6, max_value=1e6),
    st.sampled_from([0.1, 0.2, 1.0, -0.0, 2.5, 1e-7]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6,
)
FIELDS = st.one_of(st.sampled_from(["f", "g"]), TEXT.filter(bool))

OPS = st.one_of(
    st.tuples(st.just("set"), KEYS, VALUES),
    st.tuples(st.just("get"), KEYS),
    st.tuples(st.just("delete"), KEYS),
    st.tuples(st.just("exists"), KEYS),
    st.tuples(st.just("increment"), KEYS, NUMBERS),
    st.tuples(st.just("decrement"), KEYS, NUMBERS),
    st.tuples(st.just("push"), KEYS, st.lists(VALUES, max_size=2)),
    st.tuples(st.just("unshift"), KEYS, st.lists(VALUES, max_size=2)),
    st.tuples(st.just("pop"), KEYS),
    st.tuples(st.just("shift"), KEYS),
    st.tuples(st.just("compare_and_swap"), KEYS, VALUES, VALUES),
    st.tuples(st.just("set_field"), KEYS, FIELDS, VALUES),
    st.tuples(st.just("delete_field"), KEYS, FIELDS),
    st.tuples(
        st.just("transaction"), st.lists(st.tuples(st.sampled_from(["increment", "push", "pop"]), KEYS), max_size=3)
    ),
    st.tuples(st.just("get_group")),
    st.tuples(st.just("clear")),
    st.tuples(st.sampled_from(["records_transaction", "records_batch"]), st.lists(st.deferred(lambda: RECORDS))),
)

# Every record type, in transactions and batches: the Lua working copies
# (arrays as runs of elements, objects as members) against ops.py.
RECORDS = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["get", "exists", "delete", "pop", "shift"]), "key": KEYS}),
    st.fixed_dictionaries({"type": st.just("set"), "key": KEYS, "value": VALUES}),
    st.fixed_dictionaries({"type": st.sampled_from(["increment", "decrement"]), "key": KEYS, "delta": NUMBERS}),
    st.fixed_dictionaries({"type": st.just("compareAndSwap"), "key": KEYS, "expected": VALUES, "value": VALUES}),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["push", "unshift"]), "key": KEYS, "items": st.lists(VALUES, max_size=3)}
    ),
    st.fixed_dictionaries({"type": st.just("setField"), "key": KEYS, "field": FIELDS, "value": VALUES}),
    st.fixed_dictionaries({"type": st.just("deleteField"), "key": KEYS, "field": FIELDS}),
)

_counter = itertools.count()


async def outcome(adapter: ms.StateAdapter, op: tuple[Any, ...]) -> Any:
    name, args = op[0], op[1:]
    try:
        if name == "get_group":
            return await adapter.get_group("g")
        if name == "clear":
            return await adapter.clear("g")
        if name == "transaction":
            records: list[dict[str, Any]] = []
            for kind, key in args[0]:
                record: dict[str, Any] = {"type": kind, "key": key}
                if kind == "push":
                    record["value"] = key
                records.append(record)
            return (await adapter.transaction("g", records)).to_wire() | {"error": None}
        # Messages are worded per adapter; codes, values and indexes must agree.
        if name == "records_transaction":
            return (await adapter.transaction("g", args[0])).to_wire() | {"error": None}
        if name == "records_batch":
            return [item.to_wire() | {"error": None} for item in (await adapter.batch("g", args[0])).results]
        if name in ("push", "unshift"):
            return await getattr(adapter, name)("g", args[0], *args[1])
        return await getattr(adapter, name)("g", *args)
    except ms.StateError as e:
        return ("error", e.code)


def agree(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return same(a, b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=1, max_size=12))
def test_every_adapter_gives_the_same_results(
    ops: list[tuple[Any, ...]], redis_server: RedisServer, tmp_path: Path
) -> None:
    run = next(_counter)

    async def main() -> None:
        adapters: list[ms.StateAdapter] = [
            ms.MemoryStateAdapter(),
            ms.FileStateAdapter(tmp_path / f"s{run}", fsync="never"),
            ms.RedisStateAdapter(redis_server.url, key_prefix=f"diff:{run}:"),
        ]
        # The change events of each step too: one per written entry (per
        # record in a batch), in commit order.
        events: list[list[Any]] = [[] for _ in adapters]
        for adapter, seen in zip(adapters, events):
            adapter.add_change_sink(lambda changes, seen=seen: seen.extend(c.to_wire() for c in changes))
        try:
            for i, op in enumerate(ops):
                for seen in events:
                    seen.clear()
                results = [await outcome(a, op) for a in adapters]
                for adapter, result, seen in zip(adapters[1:], results[1:], events[1:]):
                    assert agree(results[0], result), (
                        f"step {i} {op!r}: memory gave {results[0]!r}, {type(adapter).__name__} gave {result!r}"
                    )
                    assert agree(events[0], seen), (
                        f"step {i} {op!r}: memory's events {events[0]!r}, {type(adapter).__name__}'s {seen!r}"
                    )
            finals = [await a.get_group("g") for a in adapters]
            assert all(agree(finals[0], f) for f in finals[1:]), finals
        finally:
            for a in adapters:
                await a.close()

    anyio.run(main)
