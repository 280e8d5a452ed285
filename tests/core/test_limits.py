"""``Limits`` refuses, when it is built, any limit that no adapter or worker could serve.

Every limit is an integer >= 1; the depth stays within what every binding
parses; a value and a name fit what Redis keeps; and the limits fit each
other, so that what ``set`` stores can also be stored and returned by a
transaction of one record.
"""

from __future__ import annotations

import enum
from typing import Any

import pytest

import motia_state as ms
from motia_state.records import parse_operations
from motia_state.values import MAX_BYTES_CEILING, MAX_DEPTH_CEILING

FIELDS = ["max_name_bytes", "max_value_bytes", "max_operations", "max_depth", "max_result_bytes", "max_records_bytes"]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("bad", [0, -1, True, False, 1.0, 10.5, "10", None, [10], float("nan")])
def test_a_limit_that_is_not_an_integer_of_at_least_1_is_refused_naming_it(field: str, bad: Any) -> None:
    with pytest.raises(ms.InvalidArgumentError) as info:
        ms.Limits(**{field: bad})
    assert info.value.code == "INVALID_ARGUMENT"
    assert info.value.message.startswith(f"{field}: ")
    assert repr(bad) in info.value.message


def test_the_defaults_and_the_smallest_consistent_limits_are_accepted() -> None:
    assert ms.Limits() == ms.Limits(
        max_name_bytes=1024,
        max_value_bytes=8 * 1024 * 1024,
        max_operations=10_000,
        max_depth=256,
        max_result_bytes=15 * 1024 * 1024,
        max_records_bytes=16 * 1024 * 1024,
    )
    ms.Limits(
        max_name_bytes=1, max_value_bytes=1, max_operations=1, max_depth=1, max_result_bytes=3, max_records_bytes=2
    )


def test_an_int_subclass_is_kept_as_a_plain_int() -> None:
    class Size(enum.IntEnum):
        SMALL = 64

    limits = ms.Limits(max_value_bytes=Size.SMALL)
    assert limits.max_value_bytes == 64 and type(limits.max_value_bytes) is int


def test_a_depth_deeper_than_the_workers_read_is_refused() -> None:
    assert ms.Limits(max_depth=MAX_DEPTH_CEILING).max_depth == 256
    with pytest.raises(ms.InvalidArgumentError, match=r"^max_depth: 257 is over 256"):
        ms.Limits(max_depth=257)
    with pytest.raises(ms.InvalidArgumentError, match="max_depth"):
        ms.Limits(max_depth=10**100)


@pytest.mark.parametrize("field", ["max_name_bytes", "max_value_bytes"])
def test_a_name_or_value_larger_than_redis_keeps_is_refused(field: str) -> None:
    room = {"max_records_bytes": 4 * MAX_BYTES_CEILING, "max_result_bytes": 4 * MAX_BYTES_CEILING}
    assert getattr(ms.Limits(**{field: MAX_BYTES_CEILING}, **room), field) == MAX_BYTES_CEILING
    with pytest.raises(ms.InvalidArgumentError, match=rf"^{field}: {MAX_BYTES_CEILING + 1} is over"):
        ms.Limits(**{field: MAX_BYTES_CEILING + 1}, **room)


def test_records_must_hold_the_largest_set_a_transaction_can_take() -> None:
    ms.Limits(max_name_bytes=10, max_value_bytes=100, max_records_bytes=110)
    with pytest.raises(ms.InvalidArgumentError, match=r"^max_records_bytes: 109 is under .* \(110\)"):
        ms.Limits(max_name_bytes=10, max_value_bytes=100, max_records_bytes=109)
    with pytest.raises(ms.InvalidArgumentError, match="max_records_bytes"):
        ms.Limits(max_value_bytes=64 * 1024 * 1024)  # over the default records limit


def test_results_must_hold_one_value_as_large_as_the_limit() -> None:
    ms.Limits(max_value_bytes=100, max_result_bytes=102)
    with pytest.raises(ms.InvalidArgumentError, match=r"^max_result_bytes: 101 is under .* \(102\)"):
        ms.Limits(max_value_bytes=100, max_result_bytes=101)
    with pytest.raises(ms.InvalidArgumentError, match="max_result_bytes"):
        ms.Limits(max_result_bytes=1000)  # under the default value limit


async def test_at_the_tightest_valid_limits_a_transaction_stores_and_returns_what_set_stores() -> None:
    limits = ms.Limits(max_name_bytes=4, max_value_bytes=20, max_records_bytes=24, max_result_bytes=22)
    value = "x" * 18  # 20 bytes encoded: exactly the value limit
    assert len(parse_operations([{"type": "set", "key": "kkkk", "value": value}], limits=limits)) == 1
    adapter = ms.MemoryStateAdapter(limits=limits)
    assert await adapter.set("gggg", "kkkk", value) == value
    with pytest.raises(ms.LimitExceededError, match="results"):  # two values: over 22 bytes
        await adapter.transaction("gggg", [{"type": "get", "key": "kkkk"}, {"type": "get", "key": "kkkk"}])
    result = await adapter.transaction("gggg", [{"type": "set", "key": "kkkk", "value": value}])
    assert result.success and result.results == [value]
    result = await adapter.transaction("gggg", [{"type": "get", "key": "kkkk"}])
    assert result.success and result.results == [value]


def test_limits_stay_immutable_after_the_checks() -> None:
    limits = ms.Limits()
    with pytest.raises(AttributeError):
        limits.max_depth = 0  # type: ignore[misc]
