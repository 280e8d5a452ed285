"""Input no JSON text can carry is refused the same way by every adapter.

Lone surrogates have no UTF-8 encoding and integers past 4,300 digits no
JSON text that Python or msgspec will convert; the vectors cannot express
the first, so these run from Python against each adapter.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
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


UNUSABLE_IDS = [float("nan"), float("-inf"), {1, 2}, "x\ud800", datetime.date(2026, 1, 1), [object()]]


@pytest.mark.parametrize(
    "bad_id", UNUSABLE_IDS, ids=["NaN", "-inf", "a set", "a lone surrogate", "a date", "an object"]
)
async def test_a_batch_never_echoes_an_id_that_json_cannot_carry(adapter: ms.StateAdapter, bad_id: Any) -> None:
    """The record fails with INVALID_ARGUMENT, and its result item carries no id rather than the bad one."""
    result = await adapter.batch(
        "g",
        [{"type": "set", "key": "a", "value": 1, "id": bad_id}, {"type": "set", "key": "b", "value": 2, "id": "ok"}],
    )
    first = result.results[0]
    assert (first.code, first.id) == ("INVALID_ARGUMENT", None)
    assert "id" in (first.error or "")
    wire = result.to_wire()
    assert wire["results"] == [{"error": first.error, "code": "INVALID_ARGUMENT"}, {"id": "ok", "value": 2}]
    assert msgspec.json.decode(msgspec.json.encode(wire)) == wire
    assert await adapter.keys("g") == ["b"]


async def test_a_failed_batch_record_echoes_its_id_as_plain_json(adapter: ms.StateAdapter) -> None:
    """An id that is JSON is echoed even when the record fails, as the copy a good record's id would be."""
    shared = ["x"]
    result = await adapter.batch(
        "g",
        [
            {"type": "set", "key": "a", "id": Level.TWO},  # no value: the record fails, the id is fine
            {"type": "push", "key": "a", "items": 5, "id": shared},
        ],
    )
    ids = [item.id for item in result.results]
    assert [item.code for item in result.results] == ["INVALID_ARGUMENT", "INVALID_ARGUMENT"]
    assert ids == [2, ["x"]] and type(ids[0]) is int and ids[1] is not shared
    assert await adapter.groups() == []


class Plain(str):
    """A str subclass with nothing of its own."""


class Shade(enum.StrEnum):
    RED = "red"


class Mixed(str, enum.Enum):
    """A str-mixed Enum: its ``str()`` is its qualified name, not the string it is."""

    BLUE = "blue"


NAMES = [(Plain("g:1"), "g:1"), (Shade.RED, "red"), (Mixed.BLUE, "blue")]


@pytest.mark.parametrize(("name", "plain"), NAMES, ids=["str subclass", "StrEnum", "(str, Enum)"])
async def test_a_str_subclass_is_the_plain_name_it_holds(adapter: ms.StateAdapter, name: str, plain: str) -> None:
    """As a group, key or field name, as it is as a value: the plain str, stored as such."""
    assert await adapter.set(name, name, name) == plain
    assert await adapter.get(plain, plain) == plain
    assert type(await adapter.get(name, name)) is str
    assert await adapter.increment(name, "n") == 1
    assert await adapter.increment(name, "n", 2) == 3  # the inlined path of a known group
    assert await adapter.exists(name, "n")
    assert await adapter.set_field(name, "o", name, 1) == {plain: 1}
    assert await adapter.set_field(plain, "o", "x", {name: name}) == {plain: 1, "x": {plain: plain}}
    assert await adapter.delete_field(name, "o", name) == {"x": {plain: plain}}
    assert await adapter.push(name, "l", name) == [plain]
    transaction = await adapter.transaction(
        name, [{"type": "set", "key": name, "value": 2}, {"type": "setField", "key": "o", "field": name, "value": 3}]
    )
    assert transaction.success, transaction
    batch = await adapter.batch(name, [{"type": "increment", "key": name, "id": name}])
    assert batch.to_wire() == {"results": [{"id": plain, "value": 3}]}
    groups, keys = await adapter.groups(), await adapter.keys(name)
    assert groups == [plain] and keys == sorted([plain, "n", "o", "l"])
    assert all(type(n) is str for n in groups + keys)
    assert await adapter.get_group(name) == [await adapter.get(plain, k) for k in keys]
    await adapter.clear(name)
    assert await adapter.groups() == []


async def test_a_str_subclass_is_still_held_to_the_name_rules(adapter: ms.StateAdapter) -> None:
    with pytest.raises(ms.InvalidArgumentError):
        await adapter.set(Plain(""), "k", 1)
    with pytest.raises(ms.InvalidArgumentError, match="reserved"):
        await adapter.increment(Plain("__motia/x"), "k")
    with pytest.raises(ms.InvalidArgumentError):
        await adapter.set_field("g", "k", Plain(""), 1)
    with pytest.raises(ms.LimitExceededError):
        await adapter.set("g", Plain("k" * 1025), 1)
    assert await adapter.groups() == []


async def test_number_and_string_subclasses_inside_records_are_stored_plain(adapter: ms.StateAdapter) -> None:
    """In a transaction and a batch, as on their own: values of subclasses become the plain JSON they are."""
    transaction = await adapter.transaction(
        "g",
        [
            {"type": "set", "key": "a", "value": [Level.TWO, Ratio(0.5), Mixed.BLUE]},
            {"type": "compareAndSwap", "key": "b", "expected": None, "newValue": Level.TWO},
            {"type": "push", "key": "c", "items": [Ratio(1.5)]},
            {"type": "setField", "key": "d", "field": "f", "value": Level.TWO},
        ],
    )
    assert transaction.to_wire() == {
        "success": True,
        "results": [[2, 0.5, "blue"], True, [1.5], {"f": 2}],
    }
    batch = await adapter.batch(
        "g",
        [
            {"type": "set", "key": "e", "value": Ratio(2.5), "id": Level.TWO},
            {"type": "compareAndSwap", "key": "b", "expected": Ratio(2.0), "value": Mixed.BLUE},
            {"type": "increment", "key": "b", "delta": 1},
        ],
    )
    assert batch.to_wire() == {
        "results": [
            {"id": 2, "value": 2.5},
            {"value": True},
            {"error": batch.results[2].error, "code": "TYPE_MISMATCH"},
        ]
    }
    stored = {key: await adapter.get("g", key) for key in await adapter.keys("g")}
    assert stored == {"a": [2, 0.5, "blue"], "b": "blue", "c": [1.5], "d": {"f": 2}, "e": 2.5}
    plain_types = {int, float, str}
    assert type(stored["e"]) is float and {type(v) for v in stored["a"]} == plain_types
    assert type(stored["b"]) is str and type(stored["d"]["f"]) is int and type(batch.results[0].id) is int


async def test_a_bad_group_of_get_group_is_named_as_its_argument(adapter: ms.StateAdapter) -> None:
    # getGroup's argument is groupId: its error says so, where the other operations say traceId.
    with pytest.raises(ms.InvalidArgumentError, match="groupId"):
        await adapter.get_group("")
    with pytest.raises(ms.InvalidArgumentError, match="traceId"):
        await adapter.get("", "k")
