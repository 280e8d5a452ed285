"""The event router: an emitted topic runs every step subscribed to it.

Delivery is in-process: each subscriber runs in its own task with the
emitter's traceId and depth + 1, is retried with backoff, and after its
last attempt becomes a :class:`DeadLetter` kept in memory (listed, retried
or dropped through :class:`EventRouter`). Nothing here survives a restart:
state triggers (the change feed) are what does.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from ..errors import NotFoundError, StateError

__all__ = ["DeadLetter", "Delivery", "EventRouter"]

log = logging.getLogger("motia_state.app")


@dataclass(frozen=True)
class Delivery:
    """One event on its way to one subscribed step."""

    step: str
    topic: str
    data: Any
    trace_id: str
    depth: int


@dataclass(frozen=True)
class DeadLetter:
    """A delivery that failed every attempt: the event, the step, the last error."""

    id: str
    delivery: Delivery
    error: str
    code: str
    attempts: int
    at: float  # when it was dead-lettered, seconds since the epoch

    def as_dict(self) -> dict[str, Any]:
        """The dead letter as JSON (camelCase, as the endpoints show it)."""
        d = self.delivery
        return {
            "id": self.id,
            "step": d.step,
            "topic": d.topic,
            "data": d.data,
            "traceId": d.trace_id,
            "depth": d.depth,
            "error": self.error,
            "code": self.code,
            "attempts": self.attempts,
            "at": self.at,
        }


#: Runs one delivery once; raises StateError when the step fails.
DeliverFn = Callable[[Delivery], Awaitable[Any]]
#: Starts a task in the app's task group.
SpawnFn = Callable[[Callable[[], Awaitable[None]]], None]


class EventRouter:
    """Fans events out to subscribers with retries and dead letters.

    ``subscribers(topic)`` names the steps subscribed to a topic (read at
    each publish, so a reloaded app routes to its new steps); ``deliver``
    runs one delivery; ``spawn`` starts a task. ``attempts`` counts every
    try; the wait before retry n is ``backoff * 2 ** (n - 1)`` seconds.
    """

    def __init__(
        self,
        subscribers: Callable[[str], list[str]],
        deliver: DeliverFn,
        spawn: SpawnFn,
        *,
        attempts: int = 3,
        backoff: float = 0.5,
        max_depth: int = 10,
    ) -> None:
        self._subscribers = subscribers
        self._deliver = deliver
        self._spawn = spawn
        self.attempts = attempts
        self.backoff = backoff
        self.max_depth = max_depth
        self._dead: dict[str, DeadLetter] = {}
        self._ids = itertools.count(1)

    def publish(self, topic: str, data: Any, *, trace_id: str, depth: int, source: str | None = None) -> int:
        """Start a delivery to every subscriber of ``topic``; returns how many were started.

        ``depth`` is the depth of the delivered invocations (the emitter's
        + 1); at ``max_depth`` or deeper nothing runs and a warning names
        the chain's trace.
        """
        steps = self._subscribers(topic)
        if depth >= self.max_depth:
            log.warning(
                "event %r from %s at depth %d (max_depth %d) triggers nothing: a loop? traceId %s",
                topic,
                source or "outside",
                depth,
                self.max_depth,
                trace_id,
            )
            return 0
        if not steps:
            log.info("event %r from %s: no step subscribes to it", topic, source or "outside")
        for step in steps:
            delivery = Delivery(step, topic, data, trace_id, depth)
            self._spawn(lambda d=delivery: self._run(d))  # type: ignore[misc]
        return len(steps)

    async def _run(self, delivery: Delivery, attempts: int | None = None) -> None:
        total = attempts if attempts is not None else self.attempts
        error: StateError | None = None
        for attempt in range(1, total + 1):
            try:
                await self._deliver(delivery)
                return
            except StateError as e:
                error = e
                if attempt < total:
                    await anyio.sleep(self.backoff * 2 ** (attempt - 1))
        assert error is not None
        dead = DeadLetter(str(next(self._ids)), delivery, error.message, error.code, total, time.time())
        self._dead[dead.id] = dead
        log.warning(
            "event %r to %s failed %d time(s), dead-lettered as %s: %s",
            delivery.topic,
            delivery.step,
            total,
            dead.id,
            error.message,
        )

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter, oldest first."""
        return list(self._dead.values())

    def drop(self, dead_id: str) -> DeadLetter:
        """Forget a dead letter; NotFoundError when there is none with that id."""
        try:
            return self._dead.pop(dead_id)
        except KeyError:
            raise NotFoundError(f"no dead letter {dead_id!r}") from None

    async def retry(self, dead_id: str) -> bool:
        """Run a dead letter again (once); it leaves the list when it succeeds, else is kept with the new error."""
        dead = self._dead.get(dead_id)
        if dead is None:
            raise NotFoundError(f"no dead letter {dead_id!r}")
        try:
            await self._deliver(dead.delivery)
        except StateError as e:
            self._dead[dead_id] = DeadLetter(dead_id, dead.delivery, e.message, e.code, dead.attempts + 1, time.time())
            return False
        self._dead.pop(dead_id, None)
        return True
