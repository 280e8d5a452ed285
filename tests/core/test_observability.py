"""Observers: one record per operation; a failing observer changes nothing."""

from __future__ import annotations

import logging

import pytest

import motia_state as ms


async def test_every_operation_yields_a_record() -> None:
    records: list[ms.OperationRecord] = []
    manager = ms.StateManager(observers=[records.append], metrics=True)
    await manager.set("g", "k", "x")
    with pytest.raises(ms.TypeMismatchError):
        await manager.increment("g", "k")
    await manager.transaction("g", [{"type": "compareAndSwap", "key": "k", "expected": 1, "value": 2}])
    await manager.batch("g", [{"type": "get", "key": "k"}, {"type": "get", "key": "k"}])
    await manager.groups()
    assert [(r.op, r.trace_id, r.key, r.key_count, r.code) for r in records] == [
        ("set", "g", "k", 1, "OK"),
        ("increment", "g", "k", 1, "TYPE_MISMATCH"),
        ("transaction", "g", None, 1, "CONFLICT"),
        ("batch", "g", None, 2, "OK"),
        ("groups", None, None, 0, "OK"),
    ]
    assert all(r.duration >= 0 for r in records)
    assert manager.metrics is not None
    summary = manager.metrics.snapshot()
    assert summary["increment"]["codes"] == {"TYPE_MISMATCH": 1}
    assert summary["set"]["count"] == 1 and summary["set"]["p99"] >= summary["set"]["p50"] > 0


async def test_a_failing_observer_does_not_fail_the_operation(caplog: pytest.LogCaptureFixture) -> None:
    def broken(record: ms.OperationRecord) -> None:
        raise RuntimeError("observer bug")

    manager = ms.StateManager()
    remove = manager.add_observer(broken)
    with caplog.at_level(logging.ERROR, logger="motia_state"):
        assert await manager.increment("g", "n") == 1
    assert "observer bug" in caplog.text
    remove()
    assert await manager.increment("g", "n") == 2
