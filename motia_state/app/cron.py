"""The cron scheduler: runs each scheduled step at its times.

A cron expression (five fields, six with seconds first, or a macro such
as ``@hourly``) is read by croniter in local time; ``@every 10s``
runs at a fixed period from the scheduler's start. A firing whose previous
run of the same schedule is still going is skipped (and logged), so a slow
step never piles up copies of itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import anyio

from .config import CronTrigger, cron_iter

__all__ = ["CronScheduler", "next_fire"]

log = logging.getLogger("motia_state.app")

#: Runs one firing: (step name, scheduledAt as ISO-8601).
FireFn = Callable[[str, str], Awaitable[Any]]


def next_fire(trigger: CronTrigger, after: float) -> float:
    """The next time (epoch seconds) a schedule fires after ``after``."""
    period = trigger.every
    if period is not None:
        return after + period
    base = datetime.fromtimestamp(after).astimezone()  # local time, with its offset
    return float(cron_iter(trigger.expression, base).get_next(float))


#: Starts a task outside the scheduler, so that stopping the schedule never cancels a firing in progress.
SpawnFn = Callable[[Callable[[], Awaitable[None]]], None]


class CronScheduler:
    """Fires the schedules it is given until cancelled; :meth:`run` is the task.

    Each firing runs in a task started by ``spawn`` (the app's task group):
    cancelling the schedule (a reload, a shutdown) stops future firings and
    lets a running one finish.
    """

    def __init__(self, fire: FireFn, spawn: SpawnFn) -> None:
        self._fire = fire
        self._spawn = spawn

    async def run(self, schedules: list[tuple[CronTrigger, str]]) -> None:
        """Run every (trigger, step name) schedule until the surrounding scope is cancelled."""
        async with anyio.create_task_group() as tg:
            for trigger, step in schedules:
                tg.start_soon(self._one, trigger, step)

    async def _one(self, trigger: CronTrigger, step: str) -> None:
        busy = False
        next_at = self._next(trigger, step, time.time())
        if next_at is None:
            return

        async def fire(scheduled: float) -> None:
            nonlocal busy
            try:
                await self._fire(step, datetime.fromtimestamp(scheduled).astimezone().isoformat())
            except Exception:  # a failed firing is logged by the app; the schedule goes on
                log.exception("cron firing of %s failed", step)
            finally:
                busy = False

        skipped = 0  # firings skipped while the current one runs: one line for them all, not one each
        while True:
            await anyio.sleep(max(0.0, next_at - time.time()))
            if busy:
                skipped += 1
                if skipped == 1:
                    log.warning(
                        "%s: skipped the firing of %s, the previous one is still running", step, trigger.expression
                    )
            else:
                if skipped > 1:
                    log.warning("%s: skipped %d firings of %s in all while it ran", step, skipped, trigger.expression)
                skipped = 0
                busy = True  # at once: the task starts later
                self._spawn(lambda at=next_at: fire(at))  # type: ignore[misc]
            # A clock jump or a long stall: the next time after now, not a burst of missed ones.
            following = self._next(trigger, step, max(next_at, time.time()))
            if following is None:
                return
            next_at = following

    @staticmethod
    def _next(trigger: CronTrigger, step: str, after: float) -> float | None:
        # A schedule with no next time stops alone, logged: the others and the app go on.
        try:
            return next_fire(trigger, after)
        except Exception as e:
            log.error("%s: the schedule %r has no next time, it stops: %s", step, trigger.expression, e)
            return None
