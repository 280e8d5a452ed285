"""Where a trigger keeps its progress: reserved ``__motia/`` entries written through the internal handle.

One group per trigger, ``__motia/triggers/<name>``, holding:

- ``meta``: ``{"from": "now"|"start", "start": cursor|None}``, written once
  when the trigger is first registered (where a partition without a saved
  position starts);
- ``config``: ``{"trigger": the trigger's JSON, "partitions": n, "step":
  name}``, written at each registration (so a reader with no runtime knows
  what the trigger matches);
- ``pos.<p>``: partition ``p``'s position, ``{"cursor": c}`` (every
  matching change of ``p`` up to ``c`` was handled or dead-lettered);
- ``lease.<p>``: ``{"owner": runtime id, "until": ms since the epoch}``;
- ``member.<runtime id>``: ``{"until": ms}``, a heartbeat, so runtimes
  split the partitions evenly;
- ``dead.<id>``: a dead letter;
- ``retry.<id>``: a request to run dead letter ``id`` again, made from
  outside a runtime (the CLI): ``{"state": "requested"}``, then
  ``{"state": "running", "owner": runtime id}`` once a runtime claimed it,
  then ``{"state": "succeeded"|"failed", "error"?}``;
- ``reset``: the latest reset, ``{"id", "to", "cursor", "at"}``; a running
  runtime that has not applied this id moves its partitions to ``cursor``.

The group ``__motia/triggers`` indexes the triggers a store has seen (one
key per name). The internal handle writes without change events nor feed
records, so a trigger's bookkeeping never triggers anything.

:class:`TriggerStore` reads and edits this layout. The runner uses it for
what it shares with a reader that runs no trigger (the CLI), and every edit
is a compare-and-swap or a transaction, safe while runtimes run.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import msgspec

from ..errors import CursorExpiredError, InvalidArgumentError, NotFoundError
from ..records import Change
from .spec import TriggerSpec, parse_trigger, partition_of

__all__ = [
    "GROUP_PREFIX",
    "INDEX_GROUP",
    "DeadLetter",
    "InternalHandle",
    "TriggerStore",
    "group_of",
    "now_ms",
    "oldest_cursor",
    "seq",
]

GROUP_PREFIX = "__motia/triggers/"
#: One key per trigger the store has seen.
INDEX_GROUP = "__motia/triggers"
#: Records a status reads at most to find the oldest pending change.
SCAN_LIMIT = 100_000
#: How long a retry's outcome waits for its requester to read it.
OUTCOME_KEPT_MS = 3_600_000


class InternalHandle(Protocol):
    """The part of an adapter's ``internal`` handle the triggers use."""

    async def get(self, group: str, key: str) -> Any: ...

    async def set(self, group: str, key: str, value: Any) -> Any: ...

    async def delete(self, group: str, key: str) -> Any: ...

    async def compare_and_swap(self, group: str, key: str, expected: Any, new_value: Any) -> bool: ...

    async def keys(self, group: str) -> list[str]: ...

    async def transaction(self, group: str, operations: list[dict[str, Any]]) -> Any: ...


def group_of(trigger: str) -> str:
    """The reserved group that holds one trigger's positions, leases and dead letters."""
    return GROUP_PREFIX + trigger


def now_ms() -> int:
    """Milliseconds since the epoch (leases, heartbeats and requests are stamped so)."""
    return int(time.time() * 1000)


def seq(cursor: str | None) -> int | None:
    """A cursor's sequence number when it is one (memory, file: ``<prefix>.<n>``); None otherwise."""
    if cursor is None:
        return None
    _, _, tail = cursor.partition(".")
    return int(tail) if tail.isdigit() else None


@dataclass(frozen=True)
class DeadLetter:
    """A change whose handler (or native condition) failed every attempt."""

    id: str
    trigger: str
    change: Change
    error: str
    attempts: int

    def as_dict(self) -> dict[str, Any]:
        """The dead letter as JSON (the change in its wire shape)."""
        return {
            "id": self.id,
            "trigger": self.trigger,
            "change": self.change.to_wire(),
            "error": self.error,
            "attempts": self.attempts,
        }

    @classmethod
    def from_json(cls, trigger: str, raw: Any) -> DeadLetter | None:
        """A stored dead letter, or None when ``raw`` is not one."""
        try:
            return cls(
                str(raw["id"]),
                trigger,
                msgspec.convert(raw["change"], Change),
                str(raw["error"]),
                int(raw["attempts"]),
            )
        except (KeyError, TypeError, ValueError, msgspec.ValidationError):
            return None


def _live(value: Any, now: int) -> bool:
    return isinstance(value, dict) and isinstance(value.get("until"), int) and value["until"] > now


class TriggerStore:
    """The stored side of state triggers: read and edited with no runtime running, or beside running ones.

    ``adapter`` is a store with a change feed and an ``internal`` handle.
    Retries and resets made here are requests that a running runtime picks
    up within its lease renewal (a third of ``lease`` seconds); with none
    running, a retry waits for the next runtime that runs the trigger,
    and a reset's positions are where it starts.
    """

    def __init__(self, adapter: Any) -> None:
        internal = getattr(adapter, "internal", None)
        if internal is None:
            raise InvalidArgumentError(f"{type(adapter).__name__} has no internal handle for trigger positions")
        self.adapter = adapter
        self.internal: InternalHandle = internal

    # -- registration -------------------------------------------------------------

    async def register(self, name: str, spec: TriggerSpec, partitions: int, step: str) -> dict[str, Any]:
        """Record a trigger (its meta once, its config and index entry each time); returns its meta."""
        group = group_of(name)
        meta = await self.internal.get(group, "meta")
        if not isinstance(meta, dict):
            last = (await self.adapter.feed_info())["last"] if spec.start == "now" else None
            proposed = {"from": spec.start, "start": last}
            if await self.internal.compare_and_swap(group, "meta", meta, proposed):
                meta = proposed
            else:
                meta = await self.internal.get(group, "meta")  # another runtime registered it first
        config = {"trigger": spec.raw, "partitions": partitions, "step": step}
        if await self.internal.get(group, "config") != config:
            await self.internal.set(group, "config", config)
        if await self.internal.get(INDEX_GROUP, name) is None:
            await self.internal.set(INDEX_GROUP, name, {"registeredAt": now_ms()})
        return meta if isinstance(meta, dict) else {}

    async def names(self) -> list[str]:
        """The triggers the store has seen, sorted."""
        return await self.internal.keys(INDEX_GROUP)

    async def require(self, name: str) -> None:
        """NotFoundError unless the store has seen a trigger named ``name``."""
        if await self.internal.get(INDEX_GROUP, name) is None and not await self.internal.keys(group_of(name)):
            raise NotFoundError(f"no trigger named {name!r} in this store")

    # -- dead letters -------------------------------------------------------------

    async def dead_letters(self, name: str, keys: Iterable[str] | None = None) -> list[DeadLetter]:
        """A trigger's dead letters, oldest change first (``keys``: the group's keys, when already listed)."""
        group = group_of(name)
        out = []
        for key in keys if keys is not None else await self.internal.keys(group):
            if key.startswith("dead."):
                dead = DeadLetter.from_json(name, await self.internal.get(group, key))
                if dead is not None:
                    out.append(dead)
        return sorted(out, key=lambda d: (d.change.at, d.id))

    async def add_dead(self, dead: DeadLetter) -> None:
        """Keep a dead letter."""
        await self.internal.set(group_of(dead.trigger), f"dead.{dead.id}", dead.as_dict())

    async def drop(self, name: str, dead_id: str) -> None:
        """Forget a dead letter (and a retry asked for it and not yet taken); NotFoundError when there is none.

        A retry a runtime is running stays: its outcome is for whoever asked.
        """
        group = group_of(name)
        if not await self._delete_current(group, f"dead.{dead_id}"):
            raise NotFoundError(f"trigger {name!r} has no dead letter {dead_id!r}")
        request = await self.internal.get(group, f"retry.{dead_id}")
        if isinstance(request, dict) and request.get("state") == "requested":
            await self.close_retry(name, dead_id, request)

    async def _delete_current(self, group: str, key: str) -> bool:
        # Delete what is there now, not what another writer put there meanwhile.
        for _ in range(10):
            current = await self.internal.get(group, key)
            if current is None:
                return False
            ops = [
                {"type": "compareAndSwap", "key": key, "expected": current, "value": current},
                {"type": "delete", "key": key},
            ]
            if getattr(await self.internal.transaction(group, ops), "success", False):
                return True
        return False

    async def request_retry(self, name: str, dead_id: str) -> dict[str, Any]:
        """Ask the runtimes to run a dead letter again; returns the request (an earlier one still open is kept)."""
        group = group_of(name)
        if await self.internal.get(group, f"dead.{dead_id}") is None:
            raise NotFoundError(f"trigger {name!r} has no dead letter {dead_id!r}")
        request = {"state": "requested", "id": uuid.uuid4().hex[:12], "at": now_ms()}
        for _ in range(10):
            current = await self.internal.get(group, f"retry.{dead_id}")
            if isinstance(current, dict) and current.get("state") in ("requested", "running"):
                return current
            if await self.internal.compare_and_swap(group, f"retry.{dead_id}", current, request):
                return request
        return request

    async def retry_request(self, name: str, dead_id: str) -> Any:
        """The retry asked for a dead letter and how far it got (None when none was asked)."""
        return await self.internal.get(group_of(name), f"retry.{dead_id}")

    async def claim_retry(self, name: str, dead_id: str, request: Any, runtime_id: str) -> dict[str, Any] | None:
        """Take an open retry request for ``runtime_id``; None when another runtime has it or it is closed."""
        if not isinstance(request, dict):
            return None
        state = request.get("state")
        done = request.get("done")
        if isinstance(done, int) and done < now_ms() - OUTCOME_KEPT_MS:
            await self.close_retry(name, dead_id, request)  # its requester stopped waiting long ago
            return None
        if state == "running":
            owner = request.get("owner")
            if owner == runtime_id or _live(await self.internal.get(group_of(name), f"member.{owner}"), now_ms()):
                return None  # its runtime is alive: it finishes it
        elif state != "requested":
            return None
        claim = {**request, "state": "running", "owner": runtime_id}
        if await self.internal.compare_and_swap(group_of(name), f"retry.{dead_id}", request, claim):
            return claim
        return None

    async def finish_retry(self, name: str, dead_id: str, claim: dict[str, Any], error: str | None) -> None:
        """Record how a claimed retry ended (its requester reads it, then removes it)."""
        outcome = {**claim, "state": "failed" if error else "succeeded", "done": now_ms()}
        if error:
            outcome["error"] = error
        await self.internal.compare_and_swap(group_of(name), f"retry.{dead_id}", claim, outcome)

    async def await_retry(self, name: str, dead_id: str, request: Any, wait: float, poll: float) -> Any:
        """Wait up to ``wait`` seconds for the retry ``request`` to finish; its last known state.

        A finished outcome (state "succeeded" or "failed") is closed here, as
        its requester read it. When the request vanished or was replaced
        meanwhile (another requester read and closed it, a retry through the
        API succeeded, or the dead letter was dropped), the answer is
        ``{"state": "gone"}`` if the dead letter has left the list, so a
        waiter never reports a retry as pending when nothing is left to run.
        """
        mine = request.get("id") if isinstance(request, dict) else None
        with anyio.move_on_after(wait):
            while not retry_finished(request):
                await anyio.sleep(poll)
                current = await self.retry_request(name, dead_id)
                if current is None or (isinstance(current, dict) and current.get("id") != mine):
                    if await self.internal.get(group_of(name), f"dead.{dead_id}") is None:
                        return {"state": "gone"}
                    if current is None:
                        return request  # closed by another requester; the dead letter stays
                request = current
        if retry_finished(request):
            await self.close_retry(name, dead_id, request)
        return request

    async def close_retry(self, name: str, dead_id: str, outcome: Any) -> None:
        """Remove a finished retry request once its outcome was read."""
        group = group_of(name)
        ops = [
            {"type": "compareAndSwap", "key": f"retry.{dead_id}", "expected": outcome, "value": outcome},
            {"type": "delete", "key": f"retry.{dead_id}"},
        ]
        await self.internal.transaction(group, ops)

    # -- positions, members, resets --------------------------------------------------

    async def live_members(self, name: str, keys: Iterable[str] | None = None) -> list[str]:
        """The runtimes running the trigger now (their heartbeat has not lapsed)."""
        group = group_of(name)
        now = now_ms()
        out = []
        for key in keys if keys is not None else await self.internal.keys(group):
            if key.startswith("member.") and _live(await self.internal.get(group, key), now):
                out.append(key[len("member.") :])
        return out

    async def position(self, name: str, partition: int, start: str | None) -> str | None:
        """Where a partition resumes: its saved position, else the trigger's start."""
        saved = await self.internal.get(group_of(name), f"pos.{partition}")
        return saved.get("cursor") if isinstance(saved, dict) else start

    async def save_position(self, name: str, partition: int, cursor: str | None) -> None:
        """Record a partition's position."""
        await self.internal.set(group_of(name), f"pos.{partition}", {"cursor": cursor})

    async def request_reset(self, name: str, to: str, partitions: int) -> dict[str, Any]:
        """Move every partition to the feed's end (``"now"``) or its oldest record (``"start"``).

        Writes each partition's position, then the reset request that
        running runtimes apply to the partitions they hold (so a stop by
        CURSOR_EXPIRED ends there too). In that order: a runtime that saves
        its old position meanwhile moves it when it applies the request,
        and one that applied the request never sees its newer position
        moved back. Returns the request.
        """
        if to not in ("now", "start"):
            raise InvalidArgumentError(f'to: expected "now" or "start", got {to!r}')
        cursor = (await self.adapter.feed_info())["last"] if to == "now" else None
        request = {"id": uuid.uuid4().hex[:12], "to": to, "cursor": cursor, "at": now_ms()}
        for p in range(partitions):
            await self.save_position(name, p, cursor)
        await self.internal.set(group_of(name), "reset", request)
        return request

    async def reset_request(self, name: str) -> Any:
        """The latest reset of the trigger (None when it was never reset)."""
        return await self.internal.get(group_of(name), "reset")

    # -- what a reader sees ---------------------------------------------------------

    async def config(self, name: str) -> tuple[TriggerSpec | None, int | None]:
        """The trigger's definition and partition count as its last runtime recorded them."""
        raw = await self.internal.get(group_of(name), "config")
        if not isinstance(raw, dict):
            return None, None
        spec = None
        with contextlib.suppress(InvalidArgumentError):  # written by a version that read it otherwise
            spec = parse_trigger(raw.get("trigger"))
        partitions = raw.get("partitions")
        return spec, partitions if isinstance(partitions, int) and partitions >= 1 else None

    async def status(self, name: str) -> dict[str, Any]:
        """One trigger as the store holds it: position, records behind, oldest pending age, dead letters, state.

        ``state`` is ``CURSOR_EXPIRED`` when a partition's position is older
        than the feed retains (the trigger is stopped until reset),
        ``running`` while a runtime's heartbeat is live, else ``idle``.
        The position is the oldest partition's; positions are saved within
        a second of the handling, so a running trigger may be a little
        further than shown.
        """
        group = group_of(name)
        keys = await self.internal.keys(group)
        meta = await self.internal.get(group, "meta")
        start = meta.get("start") if isinstance(meta, dict) else None
        spec, partitions = await self.config(name)
        if partitions is None:  # recorded by no runtime of this version: the partitions it saved
            saved = [int(k[4:]) for k in keys if k.startswith("pos.") and k[4:].isdigit()]
            partitions = max(saved, default=-1) + 1 or 1
        positions = [await self.position(name, p, start) for p in range(partitions)]
        members = await self.live_members(name, keys)
        dead = [k for k in keys if k.startswith("dead.")]
        info = await self.adapter.feed_info()
        expired = False
        for cursor in set(positions):
            if await self._expired(cursor):
                expired = True
                break
        oldest = oldest_cursor(positions)
        behind, pending_at = await self._backlog(positions, oldest, info, spec, partitions, expired)
        return {
            "name": name,
            "state": "CURSOR_EXPIRED" if expired else "running" if members else "idle",
            "position": oldest,
            "behind": behind,
            "oldestPendingAge": None if pending_at is None else max(time.time() - pending_at / 1000, 0.0),
            "deadLetters": len(dead),
            "runtimes": len(members),
            "partitions": partitions,
            "trigger": None if spec is None else spec.raw,
        }

    async def _expired(self, cursor: str | None) -> bool:
        if cursor is None:
            return False
        try:
            async for _ in self.adapter.changes(after=cursor, follow=False):
                break
        except CursorExpiredError:
            return True
        return False

    async def _backlog(
        self,
        positions: list[str | None],
        oldest: str | None,
        info: dict[str, Any],
        spec: TriggerSpec | None,
        partitions: int,
        expired: bool,
    ) -> tuple[int | None, int | None]:
        """Records behind the oldest position, and the commit time of the oldest change still to handle."""
        if expired:
            return None, None
        last, mine = seq(info.get("last")), seq(oldest)
        counted = last is not None and (oldest is None or mine is not None)
        behind: int | None = None
        if info.get("last") is None or oldest == info.get("last"):
            return 0, None
        if counted and last is not None:
            behind = max(last - (mine if mine is not None else (seq(info.get("first")) or 1) - 1), 0)
        marks = [seq(p) for p in positions]
        scanned = 0
        pending_at = None
        async for change in self.adapter.changes(after=oldest, follow=False):
            scanned += 1
            if pending_at is None and (spec is None or (spec.matches(change) and spec.holds(change))):
                p = partition_of(change.group, change.key, partitions)
                at, own = seq(change.cursor), marks[p]
                if spec is None or own is None or at is None or at > own:
                    pending_at = change.at
            if (pending_at is not None and behind is not None) or scanned >= SCAN_LIMIT:
                break
        if behind is None:
            behind = scanned
        return behind, pending_at


def oldest_cursor(cursors: list[str | None]) -> str | None:
    """The position furthest back (None, the feed's start, before any cursor)."""
    if not cursors or any(c is None for c in cursors):
        return None
    seqs = [seq(c) for c in cursors]
    if all(s is not None for s in seqs):
        return cursors[seqs.index(min(s for s in seqs if s is not None))]
    return cursors[0]


def retry_finished(request: Any) -> bool:
    """Whether a retry request holds its outcome."""
    return isinstance(request, dict) and request.get("state") in ("succeeded", "failed")
