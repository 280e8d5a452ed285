"""Property: the feed replayed from empty reproduces the store exactly (memory and file)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import motia_state as ms

GROUPS = st.sampled_from(["a", "b"])
KEYS = st.sampled_from(["x", "y", "z"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.sampled_from(["f", "g"]), SCALARS))

RECORDS = st.one_of(
    st.builds(lambda k, v: {"type": "set", "key": k, "value": v}, KEYS, VALUES),
    st.builds(lambda k: {"type": "increment", "key": k}, KEYS),
    st.builds(lambda k: {"type": "delete", "key": k}, KEYS),
    st.builds(lambda k, v: {"type": "push", "key": k, "items": [v]}, KEYS, SCALARS),
    st.builds(lambda k: {"type": "pop", "key": k}, KEYS),
    st.builds(lambda k, v: {"type": "setField", "key": k, "field": "f", "value": v}, KEYS, SCALARS),
    st.builds(lambda k, e, v: {"type": "compareAndSwap", "key": k, "expected": e, "value": v}, KEYS, SCALARS, SCALARS),
)

OPERATIONS = st.one_of(
    st.tuples(st.just("record"), GROUPS, RECORDS),
    st.tuples(st.just("transaction"), GROUPS, st.lists(RECORDS, min_size=1, max_size=4)),
    st.tuples(st.just("batch"), GROUPS, st.lists(RECORDS, min_size=1, max_size=4)),
    st.tuples(st.just("clear"), GROUPS, st.none()),
)


async def _run(state: ms.StateAdapter, op: tuple[str, str, Any]) -> None:
    kind, group, arg = op
    if kind == "clear":
        await state.clear(group)
    elif kind == "record":
        # One record on its own, through the single-entry operation of the same name.
        call = {
            "set": lambda: state.set(group, arg["key"], arg["value"]),
            "increment": lambda: state.increment(group, arg["key"]),
            "delete": lambda: state.delete(group, arg["key"]),
            "push": lambda: state.push(group, arg["key"], *arg["items"]),
            "pop": lambda: state.pop(group, arg["key"]),
            "setField": lambda: state.set_field(group, arg["key"], "f", arg["value"]),
            "compareAndSwap": lambda: state.compare_and_swap(group, arg["key"], arg["expected"], arg["value"]),
        }[arg["type"]]
        with contextlib.suppress(ms.TypeMismatchError):  # stores nothing, records nothing
            await call()
    else:
        await getattr(state, kind)(group, arg)


async def _snapshot(state: ms.StateAdapter) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for group in await state.groups():
        keys = await state.keys(group)
        out[group] = dict(zip(keys, await state.get_group(group), strict=True))
    return out


def _replay(changes: list[ms.Change]) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = {}
    for c in changes:
        if c.event == "deleted":
            entries = data[c.group]
            del entries[c.key]
            if not entries:
                del data[c.group]
        else:
            assert (c.key in data.get(c.group, {})) == (c.event == "updated")
            data.setdefault(c.group, {})[c.key] = c.new_value
    return data


async def _check(make: Callable[[], ms.StateAdapter], ops: list[tuple[str, str, Any]]) -> None:
    state = make()
    try:
        for op in ops:
            await _run(state, op)
        changes = [c async for c in state.changes(follow=False)]
        assert [int(c.cursor.split(".")[1]) for c in changes] == list(range(1, len(changes) + 1))
        assert _replay(changes) == await _snapshot(state)
    finally:
        await state.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPERATIONS, max_size=25))
def test_memory_feed_replayed_from_empty_reproduces_the_store(ops: list[tuple[str, str, Any]]) -> None:
    asyncio.run(_check(ms.MemoryStateAdapter, ops))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPERATIONS, max_size=25), st.booleans())
def test_file_feed_replayed_from_empty_reproduces_the_store(ops: list[tuple[str, str, Any]], reopen: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:

        async def main() -> None:
            if reopen:
                # Half the operations before a compaction and a reopen: the feed survives both.
                first = ms.FileStateAdapter(directory, "never")
                for op in ops[: len(ops) // 2]:
                    await _run(first, op)
                await first.compact()
                await first.close()
                rest = ops[len(ops) // 2 :]
            else:
                rest = ops
            await _check(lambda: ms.FileStateAdapter(directory, "never"), rest)

        asyncio.run(main())
