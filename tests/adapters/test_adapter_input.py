"""Input no JSON text can carry is refused the same way by every adapter.

Lone surrogates have no UTF-8 encoding and integers past 4,300 digits no
JSON text that Python or msgspec will convert; the vectors cannot express
the first, so these run from Python against each adapter.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import motia_state as ms

from ..helpers import RedisServer


@pytest.fixture(params=["memory", "file", "redis"])
async def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ms.StateAdapter]:
    if request.param == "memory":
        a: ms.StateAdapter = ms.MemoryStateAdapter()
    elif request.param == "file":
        a = ms.FileStateAdapter(tmp_path / "s")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        a = ms.RedisStateAdapter(server.url, key_prefix=request.getfixturevalue("redis_prefix"))
    yield a
    await a.close()


BAD: list[tuple[str, Callable[[ms.StateAdapter], Awaitable[Any]], str]] = [
    ("surrogate key", lambda a: a.set("g", "\ud800", 1), "INVALID_ARGUMENT"),
    ("surrogate group", lambda a: a.increment("\udfff", "k"), "INVALID_ARGUMENT"),
    ("surrogate value", lambda a: a.set("g", "k", "x\ud800"), "INVALID_ARGUMENT"),
    ("surrogate object key", lambda a: a.push("g", "k", {"\ud800": 1}), "INVALID_ARGUMENT"),
    ("surrogate field", lambda a: a.set_field("g", "k", "\udc00", 1), "INVALID_ARGUMENT"),
    (
        "surrogate in a transaction",
        lambda a: a.transaction("g", [{"type": "set", "key": "k", "value": ["\ud800"]}]),
        "INVALID_ARGUMENT",
    ),
    ("an int of 4,301 digits", lambda a: a.set("g", "k", 10**4300), "LIMIT_EXCEEDED"),
    ("a delta of 4,301 digits", lambda a: a.increment("g", "k", -(10**4300)), "LIMIT_EXCEEDED"),
]


@pytest.mark.parametrize(("what", "call", "code"), BAD, ids=[b[0] for b in BAD])
async def test_unencodable_input_is_refused_with_a_code_and_stores_nothing(
    adapter: ms.StateAdapter, what: str, call: Callable[[ms.StateAdapter], Awaitable[Any]], code: str
) -> None:
    try:
        result = await call(adapter)
    except ms.StateError as e:
        assert e.code == code, e
    else:
        assert isinstance(result, ms.TransactionResult) and not result.success and result.code == code
    assert await adapter.groups() == []
    assert await adapter.increment("g", "n") == 1, "the adapter works on afterwards"


async def test_the_largest_integer_round_trips(adapter: ms.StateAdapter) -> None:
    big = 10**4300 - 1  # 4,300 characters of decimal text
    low = -(10**4299 - 1)  # 4,300 characters with its sign
    assert await adapter.set("g", "k", big) == big
    assert await adapter.get("g", "k") == big
    assert await adapter.increment("g", "k", -(10**4299 - 1)) == big - (10**4299 - 1)
    assert await adapter.set("g", "k", low) == low
    assert await adapter.get("g", "k") == low
    assert await adapter.increment("g", "k", -low) == 0


async def test_an_integer_past_the_limit_counting_its_sign_is_refused(adapter: ms.StateAdapter) -> None:
    with pytest.raises(ms.LimitExceededError):
        await adapter.set("g", "k", -(10**4300 - 1))
    with pytest.raises(ms.LimitExceededError):
        await adapter.push("g", "k", {"n": -(10**4299)})
    await adapter.set("g", "k", -(10**4299 - 1))
    with pytest.raises(ms.LimitExceededError):
        await adapter.decrement("g", "k")
    assert await adapter.get("g", "k") == -(10**4299 - 1)
    assert await adapter.groups() == ["g"]


class Level(enum.IntEnum):
    TWO = 2


class Ratio(float):
    """A float subclass, as NumPy's float64 is."""


@pytest.mark.parametrize(
    ("delta", "plain"), [(Level.TWO, 2), (Ratio(0.5), 0.5)], ids=["an IntEnum member", "a float subclass"]
)
async def test_a_delta_that_subclasses_a_number_counts_as_that_number(
    adapter: ms.StateAdapter, delta: Any, plain: int | float
) -> None:
    """As a value of that type is stored as a plain number, so a delta of it is added as one."""
    for op, sign in (("increment", 1), ("decrement", -1)):
        result = await getattr(adapter, op)("g", op, delta)
        assert type(result) is type(plain) and result == sign * plain
        stored = await adapter.get("g", op)
        assert type(stored) is type(plain) and stored == sign * plain
    batch = await adapter.batch("g", [{"type": "increment", "key": "b", "delta": delta}])
    assert batch.to_wire() == {"results": [{"value": plain}]}
    assert type(batch.results[0].value) is type(plain)


async def test_a_boolean_delta_stays_refused(adapter: ms.StateAdapter) -> None:
    for op in ("increment", "decrement"):
        with pytest.raises(ms.InvalidArgumentError):
            await getattr(adapter, op)("g", "k", True)
    assert await adapter.groups() == []
