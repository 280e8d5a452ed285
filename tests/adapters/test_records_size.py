"""The records of one transaction or batch are bounded by ``Limits.max_records_bytes``.

Over RPC a frame bounds what a worker can send; in-process nothing else
does, so every adapter (and the StateManager over it) refuses records past
the limit before anything is stored. The size is counted from the checks
the records already pass (see ``parse_operations``); the property below
holds that count to the documented rule, computed here from the encodings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import motia_state as ms
from motia_state.records import parse_operations

from ..helpers import RedisServer

TEXT = st.sampled_from(["x", "yy", '"', "\\", "é", "\n", "\u2028", "a,b]", "𝄞"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6,
)
IDS = st.one_of(TEXT, st.integers(-5, 10**20))
RECORDS = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["get", "delete", "pop"]), "key": TEXT}, optional={"id": IDS}),
    st.fixed_dictionaries({"type": st.just("set"), "key": TEXT, "value": VALUES}, optional={"id": IDS}),
    st.fixed_dictionaries(
        {"type": st.just("increment"), "key": TEXT},
        optional={"delta": st.one_of(st.integers(-(2**60), 2**60), st.floats(-1e300, 1e300))},
    ),
    st.fixed_dictionaries({"type": st.just("compareAndSwap"), "key": TEXT, "expected": VALUES, "newValue": VALUES}),
    st.fixed_dictionaries({"type": st.just("push"), "key": TEXT, "items": st.lists(VALUES, max_size=3)}),
    st.fixed_dictionaries({"type": st.just("unshift"), "key": TEXT, "value": VALUES}),
    st.fixed_dictionaries({"type": st.just("setField"), "key": TEXT, "field": TEXT, "value": VALUES}),
    st.fixed_dictionaries({"type": st.just("deleteField"), "key": TEXT, "field": TEXT}),
    st.fixed_dictionaries({"type": st.just("check"), "key": TEXT, "op": st.just("eq"), "value": VALUES}),
    st.fixed_dictionaries(
        {"type": st.just("check"), "key": TEXT, "all": st.lists(st.fixed_dictionaries({"op": st.just("exists")}))}
    ),
)


def documented_size(record: dict[str, Any]) -> int:
    """A record's size by the rule docs/state.md states, from the encodings themselves."""
    size = len(record["key"].encode()) + len(record.get("field", "").encode())
    for name in ("value", "newValue", "expected", "items", "delta", "id"):
        if name in record:
            value = [record[name]] if record["type"] in ("push", "unshift") and name == "value" else record[name]
            size += len(msgspec.json.encode(value))
    for predicate in record.get("all", []):
        size += len(predicate.get("path", "").encode())
    return size


def limits_for(records: list[dict[str, Any]], max_records_bytes: int) -> ms.Limits | None:
    """Limits that let every key and value of ``records`` in, with ``max_records_bytes``; None if none can.

    A valid ``Limits`` has room in its records for the longest key and the
    largest value together, so the names and values are held to the
    smallest limits that take them.
    """
    longest_key = max(len(r["key"].encode()) for r in records)
    largest = 1
    for record in records:
        for name in ("value", "newValue", "expected", "items", "id"):
            if name in record:
                value = [record[name]] if record["type"] in ("push", "unshift") and name == "value" else record[name]
                largest = max(largest, len(msgspec.json.encode(value)))
    if max_records_bytes < longest_key + largest:
        return None
    return ms.Limits(max_name_bytes=longest_key, max_value_bytes=largest, max_records_bytes=max_records_bytes)


# No deadline and no check of how fast examples are generated: a loaded machine slows both.
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RECORDS, min_size=1, max_size=8))
def test_the_records_size_is_what_the_docs_say(records: list[dict[str, Any]]) -> None:
    total = sum(documented_size(r) for r in records)
    exact = limits_for(records, total)
    assume(exact is not None)  # records without values (gets) may be smaller than any valid Limits
    assert exact is not None
    assert len(parse_operations(records, limits=exact)) == len(records)
    under = limits_for(records, total - 1)
    if under is None:  # one record holding both: no valid Limits is one byte short of it
        return
    with pytest.raises(ms.LimitExceededError, match="records are larger than"):
        parse_operations(records, limits=under)
    with pytest.raises(ms.LimitExceededError):
        parse_operations(records, limits=under, collect=True)


def test_a_batch_record_that_fails_its_own_validation_counts_nothing() -> None:
    records = [{"type": "set", "key": "a", "value": "x" * 40, "vaule": 1}, {"type": "set", "key": "b", "value": 1}]
    parsed = parse_operations(
        records, limits=ms.Limits(max_name_bytes=1, max_value_bytes=1, max_records_bytes=2), collect=True
    )
    assert isinstance(parsed[0], ms.InvalidArgumentError)
    assert not isinstance(parsed[1], ms.StateError)


@pytest.fixture(params=["memory", "file", "redis", "manager"])
async def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ms.StateAdapter]:
    """Every adapter under the default limits, and the StateManager over one."""
    if request.param == "memory":
        a: ms.StateAdapter = ms.MemoryStateAdapter()
    elif request.param == "file":
        a = ms.FileStateAdapter(tmp_path / "s")
    elif request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        a = ms.RedisStateAdapter(server.url, key_prefix=request.getfixturevalue("redis_prefix"))
    else:
        a = ms.StateManager(ms.MemoryStateAdapter())  # type: ignore[assignment]
    yield a
    await a.close()


# Three 6 MiB strings: each within the 8 MiB value limit, 18 MiB together.
BIG = "x" * (6 * 1024 * 1024)


async def test_a_transaction_past_the_default_records_limit_stores_nothing(adapter: ms.StateAdapter) -> None:
    records = [{"type": "set", "key": f"k{i}", "value": BIG} for i in range(3)]
    with pytest.raises(ms.LimitExceededError, match="16777216 bytes"):
        await adapter.transaction("g", records)
    assert await adapter.groups() == []
    # Two of them fit: the limit is on the records, not on the operation.
    result = await adapter.transaction("g", records[:2])
    assert result.success
    assert await adapter.keys("g") == ["k0", "k1"]


async def test_a_batch_past_the_default_records_limit_stores_nothing(adapter: ms.StateAdapter) -> None:
    records = [{"type": "push", "key": f"k{i}", "items": [BIG]} for i in range(3)]
    with pytest.raises(ms.LimitExceededError, match="16777216 bytes"):
        await adapter.batch("g", records)
    assert await adapter.groups() == []
