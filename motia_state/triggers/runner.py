"""TriggerRunner: state triggers that never miss a change (docs/triggers.md).

Each trigger's matching changes are split into ``partitions`` by a hash of
group and key. A runtime works on a partition only while it holds the
partition's lease (an entry in the store, taken and renewed with
compare-and-swap); it reads the feed from the partitions' saved positions
(one reader for all of them when cursors are single sequence numbers),
hands each matching change to a queue per entry (so one entry's changes
run one at a time, in commit order), and saves each partition's position
(the cursor before its oldest change not yet finished) twice a second.
Runtimes sharing a store split the partitions evenly; one that dies loses
its leases when they lapse and another resumes from the saved positions,
so a change is handled at least once.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup

from ..adapters.base import StateAdapter
from ..errors import CursorExpiredError, InvalidArgumentError, NotFoundError, StateError, StepError, UnavailableError
from ..manager import StateManager
from ..records import Change
from ..runtime.checks import check_timeout
from .spec import TriggerSpec, handler_input, parse_trigger, partition_of
from .store import DeadLetter, InternalHandle, TriggerStore, group_of, now_ms, oldest_cursor
from .store import seq as _seq

__all__ = ["DeadLetter", "TriggerRunner"]

log = logging.getLogger("motia_state.triggers")

Handler = Callable[[Change], Any]  # async, or a plain function
EmitHook = Callable[..., Any]
InvokeHook = Callable[[str, dict[str, Any], int], Awaitable[Any]]

SAVE_EVERY = 0.5  # seconds between position saves: "within a second of the handling"
MAX_PENDING = 1000  # changes read ahead per partition before its reader waits


class _Item:
    __slots__ = ("abandoned", "at", "change", "done", "prev")

    def __init__(self, change: Change, prev: str | None) -> None:
        self.change = change
        self.prev = prev  # the cursor read just before this change: the position while it is pending
        self.done = False  # handled (or kept as a dead letter): the position may move past it
        self.abandoned = False  # its handling was cancelled: it stays pending, to be handled after a restart
        self.at = time.time()


@dataclass
class _Partition:
    index: int
    lease: Any = None  # the lease value we wrote (for compare-and-swap)
    scope: anyio.CancelScope | None = None
    last_read: str | None = None
    saved: str | None = None
    pending: deque[_Item] = field(default_factory=deque)
    queues: dict[tuple[str, str], deque[_Item]] = field(default_factory=dict)
    wake: anyio.Event = field(default_factory=anyio.Event)
    lost: bool = False
    releasing: bool = False
    started: bool = False  # its position was read from the store
    joined: bool = False  # served by the trigger's shared reader
    skip_to: int = -1  # the shared reader's records up to this sequence number are not this partition's to handle

    def position(self) -> str | None:
        while self.pending and self.pending[0].done:
            self.pending.popleft()
        return self.pending[0].prev if self.pending else self.last_read


@dataclass
class _Trigger:
    name: str
    spec: TriggerSpec
    handler: Handler | str
    condition_index: int | None
    step: str
    partitions: dict[int, _Partition] = field(default_factory=dict)
    dead: dict[str, DeadLetter] = field(default_factory=dict)
    error: str | None = None  # CURSOR_EXPIRED: stopped until reset
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    start_cursor: str | None = None
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    shared: bool = True  # one reader for every partition held (cursors are single sequence numbers)
    reader: anyio.CancelScope | None = None
    read_point: int = -1  # the sequence number the shared reader has reached (-1: before the oldest record)
    native_fallback: bool = False  # the trigger's config holds no function: ask the step's exported condition
    handled: int = 0
    reset_seen: str | None = None  # the id of the latest reset request applied (or already in the positions)
    reset_applying: str | None = None  # the id of the reset request being applied
    unsaved: set[str] = field(default_factory=set)  # dead letters the store refused to keep: never synced away

    @property
    def group(self) -> str:
        return group_of(self.name)


class TriggerRunner:
    """Runs state triggers over a store's change feed (docs/triggers.md). An async context manager.

    ``state`` is a StateManager or an adapter with a change feed; ``pool``
    a running WorkerPool for step-file handlers (None when every handler
    is a coroutine). ``max_depth`` stops loops: a change written at that
    depth or deeper triggers nothing. ``max_concurrency`` bounds the
    handlers running at once across triggers; ``attempts`` counts every
    try of a failing handler (``backoff`` seconds before the first retry,
    doubling after); ``lease`` is how long a partition stays with a
    runtime that stopped renewing it. ``on_emit(event, depth=, step=)``
    receives the emits of the steps it invokes (an App's router).
    ``invoke(step, data, depth)``, when given, runs a step-file handler
    instead of the pool (an App runs it as its own invocations: logged,
    limited and timed like the others); ``step`` is the trigger's name
    up to any ``#``. ``timeout`` bounds each handler run through the pool.
    ``partitions`` is how many parts a trigger's work is split into between
    runtimes; every runtime sharing a store must use the same number.
    """

    def __init__(
        self,
        state: StateManager | StateAdapter,
        pool: Any = None,
        *,
        max_depth: int = 10,
        max_concurrency: int = 8,
        attempts: int = 3,
        backoff: float = 1.0,
        lease: float = 5.0,
        partitions: int = 8,
        on_emit: EmitHook | None = None,
        invoke: InvokeHook | None = None,
        timeout: float | None = None,
    ) -> None:
        for name, value, low in (
            ("max_depth", max_depth, 1),
            ("max_concurrency", max_concurrency, 1),
            ("attempts", attempts, 1),
            ("partitions", partitions, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidArgumentError(f"{name}: expected an integer >= {low}, got {value!r}")
        for name, number in (("backoff", backoff), ("lease", lease)):
            if (
                isinstance(number, bool)
                or not isinstance(number, (int, float))
                or not number >= 0
                or math.isinf(number)
            ):
                raise InvalidArgumentError(f"{name}: expected a non-negative number of seconds, got {number!r}")
        if lease <= 0:
            raise InvalidArgumentError(f"lease: expected a positive number of seconds, got {lease!r}")
        check_timeout(timeout)  # refused here, not as every handler run's failure
        self.state = state
        self.adapter: StateAdapter = state.adapter if isinstance(state, StateManager) else state
        internal = getattr(self.adapter, "internal", None)
        if internal is None:
            raise InvalidArgumentError(f"{type(self.adapter).__name__} has no internal handle for trigger positions")
        self._internal: InternalHandle = internal
        #: The stored side (positions, dead letters, requests), shared with readers that run no trigger.
        self.store = TriggerStore(self.adapter)
        self.pool = pool
        self.max_depth = max_depth
        self.attempts = attempts
        self.backoff = float(backoff)
        self.lease = float(lease)
        self.partitions = partitions
        self.timeout = timeout
        self.on_emit = on_emit
        self.invoke = invoke
        #: This runtime's id in leases (unique per runner).
        self.runtime_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._limit = anyio.CapacityLimiter(max_concurrency)
        self._triggers: dict[str, _Trigger] = {}
        self._tg: TaskGroup | None = None
        self._closing = False
        self._last: str | None = None  # the feed's newest cursor, refreshed by the saver (for status)

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> TriggerRunner:
        if self._tg is not None or self._closing:
            # Its triggers' readers and leases ended with its first run: entered
            # again, it would list them as running and take no partition.
            raise UnavailableError("a TriggerRunner runs once: create a new one instead of entering it again")
        try:
            await self.adapter.feed_info()
        except StateError as e:
            raise type(e)(f"state triggers need the change feed: {e.message}") from None
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._saver)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg, self._tg = self._tg, None
        if tg is None:
            return None
        self._closing = True
        with anyio.CancelScope(shield=True):
            # Stop reading, let handlers finish, save every position, give the leases up.
            for trigger in self._triggers.values():
                self._stop_reading(trigger)
            if exc is not None and not isinstance(exc, Exception):
                # Interrupted (cancelled, Ctrl-C, SystemExit): the handlers
                # stop now rather than being waited for. What they had not
                # finished stays pending, so the positions saved below stay
                # before it and it is handled again after a restart.
                tg.cancel_scope.cancel()
            with anyio.move_on_after(30):
                for trigger in self._triggers.values():
                    for part in list(trigger.partitions.values()):
                        await self._drain(part)
            for trigger in self._triggers.values():
                trigger.scope.cancel()
                for part in list(trigger.partitions.values()):
                    with contextlib.suppress(StateError):
                        await self._save(trigger, part, last=True)
                        if part.lease is not None and not part.lost:
                            await self._internal.compare_and_swap(
                                trigger.group, f"lease.{part.index}", part.lease, {"owner": None, "until": 0}
                            )
                with contextlib.suppress(StateError):
                    await self._internal.delete(trigger.group, f"member.{self.runtime_id}")
        tg.cancel_scope.cancel()
        # The body's own exception reaches the caller as raised, never in an exception group.
        await tg.__aexit__(None, None, None)
        return None

    # -- the public API ------------------------------------------------------------

    async def add(
        self,
        name: str,
        trigger: dict[str, Any],
        handler: Handler | str | os.PathLike[str],
        *,
        index: int | None = None,
    ) -> None:
        """Register a state trigger; returns once changes committed from now on will be handled.

        ``handler`` is a step file (run through the pool with the change as
        its input, at the change's depth + 1) or a callable (async or plain) taking
        the :class:`~motia_state.Change`. ``index`` is the trigger's place in
        the step's ``config.triggers``, where a native condition
        (``{"native": true}``) is looked up first; without it, or when
        that trigger holds no function, the step's exported ``condition``
        is asked.
        """
        if self._tg is None:
            raise UnavailableError("the trigger runner is not running (use it with 'async with')")
        if not isinstance(name, str) or not name or "/" in name:
            raise InvalidArgumentError(f"name: expected a non-empty trigger name without '/', got {name!r}")
        if name in self._triggers:
            raise InvalidArgumentError(f"a trigger named {name!r} is already registered")
        spec = parse_trigger(trigger)
        if isinstance(handler, (str, os.PathLike)):
            if self.pool is None:
                raise InvalidArgumentError(f"trigger {name!r}: a step-file handler needs a WorkerPool")
            path = os.fspath(handler)
            target: Handler | str = path
            step = Path(path).name
        elif callable(handler):
            if spec.native:
                raise InvalidArgumentError(f"trigger {name!r}: a native condition needs a step-file handler")
            target = handler
            step = getattr(handler, "__name__", name)
        else:
            raise InvalidArgumentError(f"handler: expected a step file path or an async callable, got {handler!r}")
        t = _Trigger(name, spec, target, index, name.split("#", 1)[0] if isinstance(target, str) else step)
        await self._register(t)
        self._triggers[name] = t
        self._tg.start_soon(self._run_trigger, t)
        # "From now" means after add returns: hold the partitions this runtime
        # can take before returning, so a change committed next is read.
        await self._balance(t)

    def status(self) -> list[dict[str, Any]]:
        """Per trigger: its position, the records behind, the oldest pending age, dead letters, state."""
        out = []
        now = time.time()
        for t in self._triggers.values():
            positions = {p.index: p.position() for p in t.partitions.values()}
            oldest = min((p.pending[0].at for p in t.partitions.values() if p.pending), default=None)
            behind = [self._behind(c) for c in positions.values()]
            out.append(
                {
                    "name": t.name,
                    "state": t.error or "running",
                    "position": oldest_cursor(list(positions.values())),
                    "partitions": sorted(positions),
                    "behind": max((b for b in behind if b is not None), default=0 if positions else None),
                    "oldestPendingAge": None if oldest is None else now - oldest,
                    "deadLetters": len(t.dead),
                    "handled": t.handled,
                }
            )
        return out

    def dead_letters(self, name: str) -> list[DeadLetter]:
        """The dead letters of one trigger, oldest first."""
        return list(self._trigger(name).dead.values())

    async def retry(self, name: str, dead_id: str) -> bool:
        """Run a dead letter's change once more; True (and it leaves the list) when it succeeds."""
        t = self._trigger(name)
        dead = t.dead.get(dead_id)
        if dead is None:
            raise NotFoundError(f"trigger {name!r} has no dead letter {dead_id!r}")
        return await self._retry(t, dead) is None

    async def _retry(self, t: _Trigger, dead: DeadLetter) -> str | None:
        """Run a dead letter's change once more: None when it succeeded (it leaves the list), else the error."""
        try:
            await self._attempt(t, dead.change)
        except Exception as e:
            log.warning("[%s] trigger %s: retrying dead letter %s failed: %s", t.step, t.name, dead.id, _describe(e))
            return _describe(e)
        with contextlib.suppress(NotFoundError):  # dropped meanwhile
            await self.drop(t.name, dead.id)
        return None

    async def drop(self, name: str, dead_id: str) -> None:
        """Forget a dead letter."""
        t = self._trigger(name)
        if t.dead.pop(dead_id, None) is None:
            raise NotFoundError(f"trigger {name!r} has no dead letter {dead_id!r}")
        t.unsaved.discard(dead_id)
        with contextlib.suppress(NotFoundError):  # only in memory: the store refused to keep it
            await self.store.drop(name, dead_id)

    async def reset(self, name: str, to: str = "now") -> None:
        """Move a trigger to the feed's end (``"now"``) or its oldest record (``"start"``) and run it again.

        This clears a CURSOR_EXPIRED stop. Changes between the old
        position and the new one are not handled (``"now"``) or handled
        again (``"start"``).
        """
        if to not in ("now", "start"):
            raise InvalidArgumentError(f'to: expected "now" or "start", got {to!r}')
        t = self._trigger(name)
        if self._tg is None:
            raise UnavailableError("the trigger runner is not running (use it with 'async with')")
        request = await self.store.request_reset(name, to, self.partitions)  # other runtimes follow it
        t.reset_applying = request["id"]
        await self._apply_reset(t, request["cursor"], request["id"])

    async def _apply_reset(self, t: _Trigger, cursor: str | None, reset_id: str | None) -> None:
        """Move the partitions this runtime holds to ``cursor`` and read on from there.

        ``reset_id`` counts as applied once the positions are moved: until
        then, a position this runtime saves is the reset's (see ``_save``).
        """
        self._stop_reading(t)
        for part in list(t.partitions.values()):
            await self._drain(part)
        for part in list(t.partitions.values()):
            await self.store.save_position(t.name, part.index, cursor)
        for part in t.partitions.values():
            part.pending.clear()
            part.queues.clear()
            part.last_read = part.saved = cursor
            part.started = True
        t.reset_seen = reset_id
        t.error = None
        for part in t.partitions.values():
            self._start_reader(t, part)

    # -- registration, leases, balance -----------------------------------------------

    def _trigger(self, name: str) -> _Trigger:
        t = self._triggers.get(name)
        if t is None:
            raise NotFoundError(f"no trigger named {name!r}")
        return t

    async def _register(self, t: _Trigger) -> None:
        meta = await self.store.register(t.name, t.spec, self.partitions, t.step)
        t.start_cursor = meta.get("start")
        for dead in await self.store.dead_letters(t.name):
            t.dead[dead.id] = dead
        reset = await self.store.reset_request(t.name)
        # The positions already hold a reset made before this runtime started.
        t.reset_seen = reset.get("id") if isinstance(reset, dict) else None

    async def _run_trigger(self, t: _Trigger) -> None:
        with t.scope:
            while True:
                await anyio.sleep(self.lease / 3)
                try:
                    await self._balance(t)
                except StateError as e:
                    log.warning("trigger %s: renewing leases failed: %s", t.name, e.message)

    async def _balance(self, t: _Trigger) -> None:
        async with t.lock:
            await self._balance_locked(t)

    async def _balance_locked(self, t: _Trigger) -> None:
        now = now_ms()
        until = now + int(self.lease * 1000)
        await self._internal.set(t.group, f"member.{self.runtime_id}", {"until": until})
        live = 0
        known = set(t.dead)  # before listing: a dead letter added meanwhile is not taken for a dropped one
        keys = await self._internal.keys(t.group)
        for key in keys:
            if key.startswith("member."):
                member = await self._internal.get(t.group, key)
                if isinstance(member, dict) and isinstance(member.get("until"), int) and member["until"] > now:
                    live += 1
                elif member is not None:
                    await self._internal.compare_and_swap(t.group, key, member, None)
        fair = math.ceil(self.partitions / max(live, 1))
        # Renew what we hold, however long its handlers run.
        for part in list(t.partitions.values()):
            mine = {"owner": self.runtime_id, "until": until}
            if await self._internal.compare_and_swap(t.group, f"lease.{part.index}", part.lease, mine):
                part.lease = mine
            else:
                log.warning("trigger %s: partition %d was taken over; leaving it", t.name, part.index)
                part.lost = True
                self._stop_reading(t, part)
                t.partitions.pop(part.index, None)
        held = [p for p in t.partitions.values() if not p.releasing]
        if self._tg is None:
            # Closing: the leases above are renewed while handlers drain, but
            # nothing new starts (closing saves and gives up every partition).
            return
        if len(held) > fair:
            for part in sorted(held, key=lambda p: -p.index)[: len(held) - fair]:
                part.releasing = True
                self._tg.start_soon(self._release, t, part)
        elif len(held) < fair and t.error is None and not self._closing:
            for p in range(self.partitions):
                if len(held) >= fair:
                    break
                if p in t.partitions:
                    continue
                current = await self._internal.get(t.group, f"lease.{p}")
                if isinstance(current, dict) and isinstance(current.get("until"), int) and current["until"] > now:
                    continue
                mine = {"owner": self.runtime_id, "until": until}
                if await self._internal.compare_and_swap(t.group, f"lease.{p}", current, mine):
                    if self._tg is None:
                        break  # closed meanwhile: the lease expires as a crashed runtime's would
                    part = _Partition(p, lease=mine)
                    saved = await self._internal.get(t.group, f"pos.{p}")
                    cursor = saved.get("cursor") if isinstance(saved, dict) else t.start_cursor
                    part.last_read = part.saved = cursor
                    part.started = True
                    t.partitions[p] = part
                    held.append(part)
                    self._start_reader(t, part)
        await self._sync(t, keys, known)

    async def _sync(self, t: _Trigger, keys: list[str], known: set[str]) -> None:
        """Follow what was changed in the store from outside: dead letters, retry and reset requests."""
        stored = {key[len("dead.") :] for key in keys if key.startswith("dead.")}
        if stored - set(t.dead):
            for dead in await self.store.dead_letters(t.name, [f"dead.{i}" for i in stored - set(t.dead)]):
                t.dead[dead.id] = dead
        for gone in (known & set(t.dead)) - stored - t.unsaved:
            t.dead.pop(gone, None)  # dropped by another runtime or the CLI
        tg = self._tg
        for key in keys:
            if key.startswith("retry."):
                dead_id = key[len("retry.") :]
                request = await self.store.retry_request(t.name, dead_id)
                if tg is None or self._closing:
                    return  # closing: requests wait for a runtime that runs
                claim = await self.store.claim_retry(t.name, dead_id, request, self.runtime_id)
                if claim is not None:
                    tg.start_soon(self._requested_retry, t, dead_id, claim)
        reset = await self.store.reset_request(t.name) if "reset" in keys else None
        if tg is None or self._closing:
            return
        if isinstance(reset, dict) and reset.get("id") not in (t.reset_seen, t.reset_applying):
            t.reset_applying = reset.get("id")
            tg.start_soon(self._apply_reset, t, reset.get("cursor"), reset.get("id"))

    async def _requested_retry(self, t: _Trigger, dead_id: str, claim: dict[str, Any]) -> None:
        # A retry asked from outside this runtime (the CLI): the same run as the API's, its outcome recorded.
        dead = t.dead.get(dead_id)
        error = f"trigger {t.name!r} has no dead letter {dead_id!r}" if dead is None else await self._retry(t, dead)
        with contextlib.suppress(StateError):
            await self.store.finish_retry(t.name, dead_id, claim, error)

    async def _release(self, t: _Trigger, part: _Partition) -> None:
        # Give a partition up for another runtime: finish its work, save its position, then the lease.
        self._stop_reading(t, part)
        await self._drain(part)
        if part.lost:
            return
        async with t.lock:  # not while a renewal is under way
            await self._save(t, part, last=True)
            released = {"owner": None, "until": 0}
            if await self._internal.compare_and_swap(t.group, f"lease.{part.index}", part.lease, released):
                t.partitions.pop(part.index, None)

    async def _drain(self, part: _Partition) -> None:
        while part.pending and not all(item.done or item.abandoned for item in part.pending):
            await part.wake.wait()

    # -- reading and handling ------------------------------------------------------------

    def _stop_reading(self, t: _Trigger, part: _Partition | None = None) -> None:
        """Stop reading for one partition (None: for the whole trigger); what was dispatched runs on."""
        parts = list(t.partitions.values()) if part is None else [part]
        for p in parts:
            p.joined = False
            if p.scope is not None:
                p.scope.cancel()
        if part is None and t.reader is not None:
            t.reader.cancel()
            t.reader = None

    def _start_reader(self, t: _Trigger, part: _Partition) -> None:
        """Read the feed for a partition from its ``last_read``.

        Cursors that are single sequence numbers (memory, file, one Redis
        shard) let one reader serve every partition the trigger holds; each
        partition ignores what it already dispatched (``skip_to``). Other
        cursors get one reader per partition.
        """
        if t.shared:
            point = -1 if part.last_read is None else _seq(part.last_read)
            if point is not None:
                part.skip_to, part.joined = point, True
                if t.reader is None or point < t.read_point:
                    self._restart_shared(t)  # it is behind what the reader has read: read again from there
                return
            # Not one sequence number (a sharded Redis): a reader per
            # partition, this one's included (it is not joined yet, so
            # _unshare does not start it).
            self._unshare(t)
        part.scope = anyio.CancelScope()
        assert self._tg is not None
        self._tg.start_soon(self._read, t, part, part.scope)

    def _unshare(self, t: _Trigger) -> None:
        # A cursor that is not one sequence number (a sharded Redis): a reader per partition.
        t.shared = False
        if t.reader is not None:
            t.reader.cancel()
            t.reader = None
        for part in t.partitions.values():
            if part.joined and not part.lost:
                part.joined = False
                self._start_reader(t, part)

    def _restart_shared(self, t: _Trigger) -> None:
        if t.reader is not None:
            t.reader.cancel()
        joined = [p for p in t.partitions.values() if p.joined and not p.lost]
        for part in joined:
            part.skip_to = -1 if part.last_read is None else (_seq(part.last_read) or 0)
        if not joined:
            t.reader = None
            return
        first = min(joined, key=lambda p: p.skip_to)
        t.read_point = first.skip_to
        t.reader = anyio.CancelScope()
        assert self._tg is not None
        self._tg.start_soon(self._read_shared, t, t.reader, first.last_read)

    async def _read_shared(self, t: _Trigger, scope: anyio.CancelScope, start: str | None) -> None:
        def restart() -> bool:
            nonlocal start
            joined = [p for p in t.partitions.values() if p.joined and not p.lost]
            if not joined:
                return False
            for part in joined:  # each partition skips what it dispatched already
                part.skip_to = -1 if part.last_read is None else (_seq(part.last_read) or 0)
            first = min(joined, key=lambda p: p.skip_to)
            t.read_point, start = first.skip_to, first.last_read
            return True

        try:
            with scope:
                await self._keep_reading(t, lambda: self._read_shared_from(t, scope, start), restart)
        finally:
            if t.reader is scope:
                # It ended (no partition to read for after a failed read, an
                # expired cursor): the next partition to join starts a reader
                # instead of joining one that no longer reads.
                t.reader = None

    async def _read_shared_from(self, t: _Trigger, scope: anyio.CancelScope, start: str | None) -> None:
        spec = t.spec
        partitions = self.partitions
        async for change in self.adapter.changes(after=start):
            if scope.cancel_called:
                # Replaced or stopped. A cancellation ends a task only at its
                # next wait, so a reader whose read had already returned (and
                # the records it read in one batch) still comes through here.
                # The partitions are the new reader's now, from the positions
                # it was given: moving them on or dispatching here would make
                # the next restart skip what the new reader had not read yet.
                return
            seq = _seq(change.cursor)
            if seq is None:
                self._unshare(t)
                return
            t.read_point = seq
            mine = None
            if spec.matches(change):
                index = partition_of(change.group, change.key, partitions)
                mine = t.partitions.get(index)
            for part in t.partitions.values():
                if not part.joined or seq <= part.skip_to:
                    continue
                if part is mine and spec.holds(change):
                    if change.depth >= self.max_depth:
                        _loop_warning(t, change, self.max_depth)
                    else:
                        self._dispatch(t, part, change)
                part.last_read = change.cursor
            if mine is not None:
                while len(mine.pending) >= MAX_PENDING and not scope.cancel_called and mine.joined:
                    mine.position()  # drops what is done from the head
                    if len(mine.pending) < MAX_PENDING:
                        break
                    await mine.wake.wait()

    def _expired(self, t: _Trigger, e: CursorExpiredError) -> None:
        t.error = "CURSOR_EXPIRED"
        log.error(
            "trigger %s stopped: its position is older than the change feed retains (%s); "
            "reset it with 'triggers reset %s --to now|start'",
            t.name,
            e.message,
            t.name,
        )

    async def _read(self, t: _Trigger, part: _Partition, scope: anyio.CancelScope) -> None:
        with scope:
            # Each try reads again from the partition's last record seen.
            await self._keep_reading(t, lambda: self._read_from(t, part, scope), lambda: True)

    async def _keep_reading(
        self, t: _Trigger, read: Callable[[], Awaitable[None]], restart: Callable[[], bool]
    ) -> None:
        """Run ``read`` until it ends; a store that is briefly unreachable is read again after 1 s.

        ``restart`` prepares the next try and says whether there is one; a
        cursor past the feed's retention stops the trigger (CURSOR_EXPIRED).
        """
        while True:
            try:
                await read()
                return
            except CursorExpiredError as e:
                self._expired(t, e)
                return
            except (StateError, OSError) as e:
                if self._closing:
                    return
                log.warning("trigger %s: reading the change feed failed (%s); retrying in 1 s", t.name, e)
                await anyio.sleep(1.0)
                if not restart():
                    return

    async def _read_from(self, t: _Trigger, part: _Partition, scope: anyio.CancelScope) -> None:
        async for change in self.adapter.changes(after=part.last_read):
            if scope.cancel_called:
                return  # replaced or stopped: the partition is no longer this reader's (see _read_shared_from)
            if (
                partition_of(change.group, change.key, self.partitions) == part.index
                and t.spec.matches(change)
                and t.spec.holds(change)
            ):
                if change.depth >= self.max_depth:
                    _loop_warning(t, change, self.max_depth)
                else:
                    self._dispatch(t, part, change)
            part.last_read = change.cursor
            while len(part.pending) >= MAX_PENDING and not scope.cancel_called:
                part.position()  # drops what is done from the head
                if len(part.pending) < MAX_PENDING:
                    break
                await part.wake.wait()

    def _dispatch(self, t: _Trigger, part: _Partition, change: Change) -> None:
        item = _Item(change, part.last_read)
        part.pending.append(item)
        entry = (change.group, change.key)
        queue = part.queues.get(entry)
        if queue is None:
            queue = part.queues[entry] = deque()
            assert self._tg is not None
            self._tg.start_soon(self._drain_entry, t, part, entry, queue)
        queue.append(item)

    async def _drain_entry(self, t: _Trigger, part: _Partition, entry: tuple[str, str], queue: deque[_Item]) -> None:
        # One entry's changes, one at a time, in commit order.
        try:
            while queue:
                item = queue[0]
                await self._handle(t, item.change)  # raises only when cancelled
                queue.popleft()
                item.done = True
                if not queue:
                    part.queues.pop(entry, None)
                self._progress(part)
        finally:
            if queue:
                # Cancelled (the runner's host was, or the runner stops): what
                # was not handled is not done, so the saved position stays
                # before it and it is handled again after a restart.
                for item in queue:
                    item.abandoned = True
                if part.queues.get(entry) is queue:
                    part.queues.pop(entry, None)
                self._progress(part)

    @staticmethod
    def _progress(part: _Partition) -> None:
        # Wake whoever waits for progress (a drain, the reader when it is far ahead).
        wake, part.wake = part.wake, anyio.Event()
        wake.set()

    async def _handle(self, t: _Trigger, change: Change) -> None:
        error: BaseException | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                async with self._limit:
                    await self._attempt(t, change)
                t.handled += 1
                return
            except Exception as e:
                error = e
                log.warning(
                    "[%s] trigger %s: attempt %d/%d for %s/%s (%s) failed: %s",
                    t.step,
                    t.name,
                    attempt,
                    self.attempts,
                    change.group,
                    change.key,
                    change.cursor,
                    _describe(e),
                )
                if attempt < self.attempts:
                    await anyio.sleep(self.backoff * 2 ** (attempt - 1))
        dead = DeadLetter(uuid.uuid4().hex[:12], t.name, change, _describe(error), self.attempts)
        try:
            await self.store.add_dead(dead)  # kept before it is listed: a sync never takes it for a dropped one
        except StateError:
            t.unsaved.add(dead.id)
        t.dead[dead.id] = dead
        log.error(
            "[%s] trigger %s: %s/%s (%s) is a dead letter %s",
            t.step,
            t.name,
            change.group,
            change.key,
            change.cursor,
            dead.id,
        )

    async def _attempt(self, t: _Trigger, change: Change) -> None:
        handler = t.handler
        if not isinstance(handler, str):
            result = handler(change)
            if inspect.isawaitable(result):  # a plain function is a handler too, as for on_change
                await result
            return
        data = handler_input(change)
        if change.old_value is not None and len(msgspec.json.encode(data)) > self._frame_room():
            # Both values would not fit in one frame: the handler can read the old one from history.
            data["oldValue"] = None
            data["oldValueOmitted"] = True
        depth = change.depth + 1
        if t.spec.native and not await self._native(t, handler, data, depth):
            return
        if self.invoke is not None:
            await self.invoke(t.step, data, depth)
            return
        on_emit = None
        if self.on_emit is not None:
            hook = self.on_emit

            def on_emit(event: dict[str, Any]) -> None:
                hook(event, depth=depth, step=t.step)

        await self.pool.call(
            handler, data=data, trace_id=change.group, timeout=self.timeout, on_emit=on_emit, depth=depth
        )

    def _frame_room(self) -> int:
        # What an invocation's input may take of a frame, leaving room for the envelope.
        limit = getattr(self.pool, "_max_frame_bytes", None)
        return (limit if isinstance(limit, int) else 16 * 1024 * 1024) - 64 * 1024

    async def _native(self, t: _Trigger, path: str, data: dict[str, Any], depth: int) -> bool:
        # The condition is part of handling the change: what it writes carries
        # the handler's depth (the change's + 1), so the loop guard holds for it.
        if t.condition_index is not None and not t.native_fallback:
            try:
                return bool(
                    await self.pool.condition(
                        path,
                        value=data["value"],
                        change=data,
                        trace_id=data["traceId"],
                        trigger=t.condition_index,
                        depth=depth,
                    )
                )
            except StepError as e:
                if "defines no function config.triggers" not in e.message:
                    raise
                t.native_fallback = True  # {"native": true} written in the config: the exported condition
        return bool(
            await self.pool.condition(path, value=data["value"], change=data, trace_id=data["traceId"], depth=depth)
        )

    # -- positions -------------------------------------------------------------------

    async def _saver(self) -> None:
        while True:
            await anyio.sleep(SAVE_EVERY)
            with contextlib.suppress(StateError):
                self._last = (await self.adapter.feed_info())["last"]
            for t in list(self._triggers.values()):
                for part in list(t.partitions.values()):
                    if part.lost or not part.started:
                        continue
                    try:
                        await self._save(t, part)
                    except StateError as e:
                        log.warning(
                            "trigger %s: saving the position of partition %d failed: %s", t.name, part.index, e.message
                        )

    async def _save(self, t: _Trigger, part: _Partition, last: bool = False) -> None:
        """Record a partition's position when it moved (``last``: this runtime is giving the partition up)."""
        position = part.position()
        if position == part.saved and not last:
            return
        # A reset made from outside that this runtime has not applied yet
        # wrote its own positions: they stand. Saving ours over them would
        # lose the reset when this runtime closes or gives the partition up
        # before applying it; on the way out, the reset's position is
        # written again in case a save of ours landed between its writes.
        reset = await self.store.reset_request(t.name)
        pending = isinstance(reset, dict) and reset.get("id") != t.reset_seen
        if pending:
            position = reset.get("cursor")
        if position != part.saved or pending:
            await self._internal.set(t.group, f"pos.{part.index}", {"cursor": position})
            part.saved = position

    def _behind(self, cursor: str | None) -> int | None:
        last = _seq(self._last)
        if last is None:
            return None if self._last is not None else 0
        mine = _seq(cursor) if cursor is not None else 0
        return None if mine is None else max(last - mine, 0)


def _describe(e: BaseException | None) -> str:
    if isinstance(e, StateError):
        return f"{e.code}: {e.message}"
    return repr(e)


def _loop_warning(t: _Trigger, change: Change, max_depth: int) -> None:
    origin = change.origin or {}
    log.warning(
        "trigger %s: %s/%s (%s) was written at depth %d by step %s (traceId %s), at or past max_depth %d: "
        "nothing runs for it (a loop of triggers or events?)",
        t.name,
        change.group,
        change.key,
        change.cursor,
        change.depth,
        origin.get("step", "?"),
        origin.get("traceId", "?"),
        max_depth,
    )
