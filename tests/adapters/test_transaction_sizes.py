"""A transaction's growing ops are size-checked as each would be on its own.

The transaction keeps each grown value's encoded size up to date from what
every op adds instead of encoding the whole value again; these properties
hold that bookkeeping to the real encoding and to the rule of a single op.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import motia_state as ms
from motia_state.errors import StateError
from motia_state.ops import apply_operation, run_transaction
from motia_state.records import parse_operations
from motia_state.values import MISSING, encoded_size

from ..helpers import RedisServer

TEXT = st.sampled_from(["", "x", "yy", '"', "\\", "é", "\n", "a,b]", "zzzzzzzzzz"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 2**70), st.floats(allow_nan=False, allow_infinity=False), TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=5,
)
KEYS = st.sampled_from(["a", "b"])
RECORDS = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["push", "unshift"]), "key": KEYS, "items": st.lists(VALUES, max_size=3)}
    ),
    st.fixed_dictionaries({"type": st.just("setField"), "key": KEYS, "field": TEXT.filter(bool), "value": VALUES}),
    st.fixed_dictionaries({"type": st.sampled_from(["pop", "shift", "delete"]), "key": KEYS}),
    st.fixed_dictionaries(
        {
            "type": st.just("set"),
            "key": KEYS,
            "value": st.one_of(st.none(), st.lists(SCALARS, max_size=3), st.dictionaries(TEXT, SCALARS, max_size=3)),
        }
    ),
)


def one_by_one(records: list[dict[str, Any]], limits: ms.Limits) -> tuple[int | None, dict[str, Any]]:
    """The index of the first record that fails when each runs as a single op, and the values then."""
    values: dict[str, Any] = {}
    for i, op in enumerate(parse_operations(records)):
        try:
            new, _ = apply_operation(op, values.get(op.key, MISSING), limits)
        except StateError:
            return i, values
        if new is MISSING:
            values.pop(op.key, None)
        elif new is not ms.ops.UNCHANGED:
            values[op.key] = new
    return None, values


@settings(max_examples=300, deadline=None)
@given(st.lists(RECORDS, max_size=12), st.integers(2, 120))
def test_a_transaction_fails_at_the_op_that_fails_on_its_own(records: list[dict[str, Any]], max_bytes: int) -> None:
    limits = ms.Limits(max_value_bytes=max_bytes)
    expected_index, expected_values = one_by_one(records, limits)
    # Parsed under the default limits, so that only the growth is checked against the small one.
    result, staged = run_transaction(parse_operations(records), lambda key: MISSING, limits)
    if expected_index is None:
        assert result.success, result
        written = {k: v for k, (_, v) in staged.items() if v is not MISSING}
        assert written == expected_values
        for op, value in staged.values():
            if op in ("push", "unshift", "setField"):
                assert encoded_size(value) <= max_bytes
    else:
        assert not result.success
        assert result.failed_index == expected_index, (result, records)


@pytest.fixture(params=["memory", "file", "redis"])
async def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ms.StateAdapter]:
    limits = ms.Limits(max_value_bytes=50)
    if request.param == "memory":
        a: ms.StateAdapter = ms.MemoryStateAdapter(limits=limits)
    elif request.param == "file":
        a = ms.FileStateAdapter(tmp_path / "s", limits=limits)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        a = ms.RedisStateAdapter(server.url, key_prefix=request.getfixturevalue("redis_prefix"), limits=limits)
    yield a
    await a.close()


async def test_a_transaction_with_an_update_fn_fails_where_the_value_outgrew_the_limit(
    adapter: ms.StateAdapter,
) -> None:
    """A transaction holding code runs in this process on every adapter (Redis then commits what it computed)."""
    result = await adapter.transaction(
        "g",
        [
            {"type": "push", "key": "a", "items": ["x" * 40]},
            {"type": "push", "key": "a", "items": ["y" * 40]},
            {"type": "update", "key": "a", "updateFn": lambda value: len(value)},
        ],
    )
    assert (result.success, result.failed_index, result.code) == (False, 1, "LIMIT_EXCEEDED")
    assert await adapter.groups() == []
