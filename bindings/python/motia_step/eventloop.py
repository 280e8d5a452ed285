"""The worker's event loop: asyncio's own, with a short adaptive spin.

A sequential ``await ctx.state.increment(...)`` spends most of its time
asleep: the worker sleeps in ``epoll_wait`` until the parent's reply
arrives, and waking a sleeping process on another core takes an
inter-processor interrupt, about 20 us on a virtual machine (a blocking
pipe echo runs at ~150k round trips/s with both ends on one core and
~22k/s across two). While a reply to one of our requests is due, this
selector first polls without sleeping for up to ``MOTIA_STEP_SPIN_US``
microseconds (default 50), so a reply that comes back fast is picked up
without a wake-up. That halves the latency of sequential state calls.

The spin is bounded three ways, so it costs CPU only when it pays:

- it runs only while a state request is in flight and the loop has nothing
  else to do (asyncio asks the selector to block only then), and never past
  the next timer;
- it is adaptive: a spin that ends without a reply (a slow adapter, a busy
  machine) makes the next ones skip, 2, 4, ... up to 256 waits, until a
  spin pays off again;
- it is off on a single CPU, where it would only delay the parent, and
  with ``MOTIA_STEP_SPIN_US=0``.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import time
from collections.abc import Coroutine, Sized
from typing import Any, List, Tuple

SelectResult = List[Tuple[selectors.SelectorKey, int]]  # typing generics: Python 3.8

#: Skipped waits after a spin found nothing, at most (the backoff's cap).
MAX_SKIP = 256


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def spin_budget() -> float:
    """Seconds to spin before sleeping (0 = never), from ``MOTIA_STEP_SPIN_US``."""
    try:
        micros = float(os.environ.get("MOTIA_STEP_SPIN_US", "50"))
    except ValueError:
        micros = 50.0
    if micros != micros:  # NaN would make the spin's deadline unreachable
        micros = 50.0
    if micros <= 0 or _cpus() < 2:
        return 0.0
    return min(micros, 10_000.0) / 1e6  # a typo must not make a worker spin for seconds


class SpinSelector(selectors.DefaultSelector):
    """A selector that polls briefly before sleeping while ``watched`` is non-empty."""

    def __init__(self, budget: float) -> None:
        super().__init__()
        self.budget = budget
        self.watched: Sized = ()
        self.spins = 0  # spins that ran, and those that found something (for tests)
        self.hits = 0
        self._skip = 0
        self._misses = 0

    def select(self, timeout: float | None = None) -> SelectResult:
        if timeout == 0 or not self.budget or not self.watched:
            return super().select(timeout)
        if self._skip:
            self._skip -= 1
            return super().select(timeout)
        poll = super().select
        budget = self.budget if timeout is None else min(self.budget, timeout)
        end = time.perf_counter() + budget
        self.spins += 1
        while True:
            events: SelectResult = poll(0)
            if events:
                self.hits += 1
                self._misses = 0
                return events
            if time.perf_counter() >= end:
                break
        if timeout is None or timeout > budget:
            # Nothing came in time: back off, then sleep as usual.
            self._misses += 1
            self._skip = min(1 << self._misses, MAX_SKIP)
        remaining = None if timeout is None else max(0.0, timeout - budget)
        return super().select(remaining)


def run(main: Coroutine[Any, Any, Any], selector: SpinSelector) -> Any:
    """``asyncio.run(main)`` on a loop that uses ``selector``."""

    def factory() -> asyncio.AbstractEventLoop:
        loop = asyncio.SelectorEventLoop(selector)
        # asyncio.run makes its loop the thread's current one; a Runner
        # given a factory does not, so do it here (get_event_loop() callers).
        asyncio.set_event_loop(loop)
        return loop

    runner_class = getattr(asyncio, "Runner", None)
    if runner_class is not None:  # Python >= 3.11
        with runner_class(loop_factory=factory) as runner:
            return runner.run(main)

    class _Policy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return factory()

    asyncio.set_event_loop_policy(_Policy())  # Python 3.8-3.10: how asyncio.run picks a loop
    return asyncio.run(main)
