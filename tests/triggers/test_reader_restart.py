"""The shared feed reader's hand-overs: to a new reader, and from one that ended.

A replaced feed reader must leave the partitions to the reader that replaced it.

When a runtime takes a partition whose saved position is behind what its
shared reader has read, it starts a new reader from there and cancels the
old one. A cancellation reaches a task only at its next wait: an old reader
whose read had just returned still runs through the records it got. Had it
dispatched them and moved the partitions on, the next restart would take
the moved position as what was already read, and the changes between the
saved position and the old reader's batch would never run.

A reader that ended (a failed read while it served no partition) must not
be joined by the next partition, which would then never be read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from typing import Any

import anyio

import motia_state as ms
from motia_state.records import Change
from motia_state.triggers import TriggerRunner
from motia_state.triggers.spec import partition_of
from motia_state.triggers.store import group_of, now_ms

PARTITIONS = 3


class GatedFeed(ms.MemoryStateAdapter):
    """A memory store whose feed readers read their records in one batch, then wait before yielding them.

    The first reader made after ``gate`` is set waits for that future; the
    others wait for ``ready``. The batch then comes with no wait between
    records (as a batch read from Redis or from the memory ring does), and
    the reader waits forever after it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Future[None] | None = None
        self.waiting = False  # the gated reader waits at its gate
        self.ready = asyncio.Event()

    def changes(
        self,
        after: str | None = None,
        *,
        groups: Collection[str] | None = None,
        keys: Collection[str] | None = None,
        follow: bool = True,
    ) -> AsyncIterator[Change]:
        return self._gated(after)

    async def _gated(self, after: str | None) -> AsyncIterator[Change]:
        batch = [change async for change in super().changes(after, follow=False)]
        gate, self.gate = self.gate, None
        if gate is not None:
            self.waiting = True
            await gate
        else:
            await self.ready.wait()
        for change in batch:
            yield change
        await anyio.sleep_forever()


class OpensGate:
    """The store's internal handle; reading partition 1's position opens the gate, reading partition 2's waits a little.

    The gate opens right before the runner starts a reader for partition 1
    (no wait in between), so the old reader is cancelled with its read
    already returned; the pause before partition 2 lets it run.
    """

    def __init__(self, adapter: GatedFeed) -> None:
        self._inner = adapter.internal
        #: Set by the test once the old reader waits at its gate.
        self.gate: asyncio.Future[None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def get(self, group: str, key: str) -> Any:
        value = await self._inner.get(group, key)
        if key == "pos.1" and self.gate is not None:
            gate, self.gate = self.gate, None
            gate.set_result(None)
        if key == "pos.2":
            for _ in range(5):
                await asyncio.sleep(0)
        return value


async def test_a_reader_replaced_while_its_read_returns_moves_no_partition() -> None:
    adapter = GatedFeed()
    groups = {}
    n = 0
    while len(groups) < PARTITIONS:  # a group per partition
        groups.setdefault(partition_of(f"g{n}", "k", PARTITIONS), f"g{n}")
        n += 1
    for i in range(30):
        await adapter.set(groups[i % PARTITIONS], "k", i)
    cursors = [change.cursor async for change in ms.MemoryStateAdapter.changes(adapter, None, follow=False)]
    # Partition 0 saved far ahead, 1 and 2 far behind and held by a runtime that stops renewing them.
    group = group_of("t")
    internal = adapter.internal
    await internal.set(group, "pos.0", {"cursor": cursors[19]})
    for p in (1, 2):
        await internal.set(group, f"pos.{p}", {"cursor": cursors[1]})
        await internal.set(group, f"lease.{p}", {"owner": "gone", "until": now_ms() + 60_000})
    hooked = OpensGate(adapter)
    adapter.internal = hooked  # type: ignore[assignment]
    seen: set[str] = set()

    async def handler(change: Change) -> None:
        seen.add(change.cursor)

    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    adapter.gate = gate
    async with TriggerRunner(adapter, lease=0.3, backoff=0.01, partitions=PARTITIONS) as triggers:
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        with anyio.fail_after(5):
            while not adapter.waiting:  # the reader of partition 0 has its batch and waits
                await anyio.sleep(0.01)
        hooked.gate = gate
        for p in (1, 2):  # the runtime that held them is gone
            await internal.set(group, f"lease.{p}", {"owner": "gone", "until": 0})
        with anyio.fail_after(5):
            while sorted(triggers.status()[0]["partitions"]) != [0, 1, 2]:
                await anyio.sleep(0.01)
        adapter.ready.set()
        # Every change after its partition's saved position runs.
        expected = set(cursors[20:]) | {
            c for i, c in enumerate(cursors) if i >= 2 and partition_of(groups[i % PARTITIONS], "k", PARTITIONS) != 0
        }
        with anyio.move_on_after(5):
            while not expected <= seen:
                await anyio.sleep(0.02)
        assert sorted(expected - seen, key=cursors.index) == []


class FailingFeed(ms.MemoryStateAdapter):
    """A memory store whose feed readers fail once with UNAVAILABLE at the next record after ``fail`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def changes(
        self,
        after: str | None = None,
        *,
        groups: Collection[str] | None = None,
        keys: Collection[str] | None = None,
        follow: bool = True,
    ) -> AsyncIterator[Change]:
        return self._failing(after)

    async def _failing(self, after: str | None) -> AsyncIterator[Change]:
        async for change in super().changes(after):
            if self.fail:
                self.fail = False
                raise ms.UnavailableError("the feed is briefly unreachable")
            yield change


async def test_a_partition_taken_after_the_reader_gave_up_is_read() -> None:
    """The shared reader ends when a read fails while it serves no partition; the next partition starts a new one."""
    adapter = FailingFeed()
    group = group_of("t")
    seen: list[Change] = []

    async def handler(change: Change) -> None:
        seen.append(change)

    async with TriggerRunner(adapter, lease=0.3, backoff=0.01, partitions=1) as triggers:
        await triggers.add("t", {"type": "state", "key": "k"}, handler)
        await adapter.set("g", "k", 1)
        with anyio.fail_after(5):  # handled, and its position saved
            while not seen or await adapter.internal.get(group, "pos.0") != {"cursor": seen[0].cursor}:
                await anyio.sleep(0.01)
        # Another runtime takes the partition: this one's reader serves none now.
        await adapter.internal.set(group, "lease.0", {"owner": "other", "until": now_ms() + 60_000})
        with anyio.fail_after(5):
            while triggers.status()[0]["partitions"]:
                await anyio.sleep(0.01)
        adapter.fail = True
        await adapter.set("g", "other", 1)  # the reader reads it and fails, then finds nothing to read for
        with anyio.fail_after(5):
            while adapter.fail:
                await anyio.sleep(0.01)
        await anyio.sleep(1.2)  # its retry finds no partition joined: it ends
        await adapter.internal.set(group, "lease.0", {"owner": "other", "until": 0})  # the other runtime is gone
        with anyio.fail_after(5):
            while not triggers.status()[0]["partitions"]:
                await anyio.sleep(0.01)
        await adapter.set("g", "k", 2)
        with anyio.move_on_after(3):
            while seen[-1].new_value != 2:
                await anyio.sleep(0.01)
        assert [change.new_value for change in seen] == [1, 2]
