"""Observability: one record per state operation, pluggable observers.

An observer is any callable taking an :class:`OperationRecord`. The built-in
:class:`MetricsSummary` is one such observer: counts, outcome codes and a
latency histogram per operation, cheap enough to leave on in production.

Internal module: its public types are re-exported by ``motia_state``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import msgspec

__all__ = ["MetricsSummary", "Observer", "OperationRecord"]


class OperationRecord(msgspec.Struct, frozen=True):
    """What one operation did: which, on what, how long, and how it ended.

    ``code`` is "OK" or the error code it failed with (a transaction that
    rolled back reports its own code, e.g. CONFLICT). ``key`` is set for
    single-entry operations; ``key_count`` is how many entries or records
    a group operation, transaction or batch touched.
    """

    op: str
    trace_id: str | None
    key: str | None
    key_count: int
    duration: float
    code: str


Observer = Callable[[OperationRecord], None]

# Latency buckets: powers of two in microseconds, 1us .. ~17s.
_BUCKETS = 25


class _OpStats:
    __slots__ = ("codes", "count", "histogram", "max", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.codes: dict[str, int] = {}
        self.histogram = [0] * _BUCKETS


class MetricsSummary:
    """Counts, outcome codes and latency percentiles per operation."""

    def __init__(self) -> None:
        self._stats: dict[str, _OpStats] = {}
        self._lock = threading.Lock()

    def __call__(self, record: OperationRecord) -> None:
        """Account one operation (this is the observer entry point)."""
        micros = record.duration * 1e6
        bucket = 0 if micros < 1 else min(int(math.log2(micros)) + 1, _BUCKETS - 1)
        with self._lock:
            stats = self._stats.get(record.op)
            if stats is None:
                stats = self._stats[record.op] = _OpStats()
            stats.count += 1
            stats.total += record.duration
            if record.duration > stats.max:
                stats.max = record.duration
            stats.codes[record.code] = stats.codes.get(record.code, 0) + 1
            stats.histogram[bucket] += 1

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per operation: count, codes, mean/max seconds and p50/p99 upper bounds."""
        with self._lock:
            out: dict[str, dict[str, Any]] = {}
            for op, s in sorted(self._stats.items()):
                out[op] = {
                    "count": s.count,
                    "codes": dict(s.codes),
                    "mean": s.total / s.count,
                    "max": s.max,
                    "p50": _percentile(s.histogram, s.count, 0.50),
                    "p99": _percentile(s.histogram, s.count, 0.99),
                }
            return out

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            self._stats.clear()


def _percentile(histogram: list[int], count: int, q: float) -> float:
    # Upper bound of the bucket holding the q-th operation, in seconds.
    rank = math.ceil(q * count)
    seen = 0
    for i, n in enumerate(histogram):
        seen += n
        if seen >= rank:
            return float(2**i) / 1e6
    return float(2 ** (_BUCKETS - 1)) / 1e6
