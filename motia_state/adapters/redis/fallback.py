"""``FallbackStateAdapter``: Redis, or memory only if Redis cannot be reached at first use."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any

import anyio

from ..._urls import redacted
from ...errors import UnavailableError
from ...predicates import Predicate
from ...records import BatchResult, Change, TransactionResult
from ..base import StateAdapter, UpdateFn
from ..memory import MemoryStateAdapter
from .adapter import RedisStateAdapter

__all__ = ["FallbackStateAdapter"]

log = logging.getLogger("motia_state.redis")


class FallbackStateAdapter(StateAdapter):
    """A Redis adapter that, only if Redis cannot be reached at first use, runs in memory.

    Chosen explicitly with ``{"adapter": "redis", ..., "fallback": "memory"}``.
    The decision is made once, at the first operation: if Redis answers, the
    Redis adapter serves everything from then on (a later outage is
    UNAVAILABLE, never a switch); if it does not, a warning names the risk
    and this process keeps its state in memory, unshared.
    """

    def __init__(self, primary: RedisStateAdapter) -> None:
        super().__init__()
        self.primary = primary
        self.limits = primary.limits
        self.active: StateAdapter | None = None
        self._lock = anyio.Lock()
        self._unsink: Callable[[], None] | None = None
        #: The runtime's handle, on whichever adapter is chosen at first use.
        self.internal = _FallbackInternal(self)

    def _sinks_changed(self) -> None:
        self._forward()

    def _forward(self) -> None:
        if self._unsink is not None:
            self._unsink()
            self._unsink = None
        if self.active is not None and self._sinks:
            self._unsink = self.active.add_change_sink(self._publish)

    async def _target(self) -> StateAdapter:
        if self.active is None:
            async with self._lock:
                if self.active is None:
                    try:
                        await self.primary.ping()
                        self.active = self.primary
                    except UnavailableError as e:
                        log.warning(
                            "Redis at %s cannot be reached (%s); falling back to in-memory state as configured. "
                            "This process's state is NOT shared with other runtimes and is lost when it exits.",
                            redacted(self.primary.url),
                            e.message,
                        )
                        self.active = MemoryStateAdapter(
                            limits=self.limits,
                            feed_retention=self.primary.feed_retention,
                            feed_retention_bytes=self.primary.feed_retention_bytes,
                        )
                    self._forward()
        return self.active

    async def close(self) -> None:
        """Close whichever adapter is in use (and the Redis client)."""
        await self.primary.close()
        if self.active is not None and self.active is not self.primary:
            await self.active.close()

    # Every operation goes to the adapter chosen at first use.

    async def get(self, trace_id: str, key: str) -> Any:
        return await (await self._target()).get(trace_id, key)

    async def set(self, trace_id: str, key: str, value: Any) -> Any:
        return await (await self._target()).set(trace_id, key, value)

    async def delete(self, trace_id: str, key: str) -> Any:
        return await (await self._target()).delete(trace_id, key)

    async def exists(self, trace_id: str, key: str) -> bool:
        return await (await self._target()).exists(trace_id, key)

    async def increment(self, trace_id: str, key: str, delta: int | float = 1) -> int | float:
        return await (await self._target()).increment(trace_id, key, delta)

    async def decrement(self, trace_id: str, key: str, delta: int | float = 1) -> int | float:
        return await (await self._target()).decrement(trace_id, key, delta)

    async def compare_and_swap(self, trace_id: str, key: str, expected: Any, new_value: Any) -> bool:
        return await (await self._target()).compare_and_swap(trace_id, key, expected, new_value)

    async def push(self, trace_id: str, key: str, *items: Any) -> list[Any]:
        return await (await self._target()).push(trace_id, key, *items)

    async def unshift(self, trace_id: str, key: str, *items: Any) -> list[Any]:
        return await (await self._target()).unshift(trace_id, key, *items)

    async def pop(self, trace_id: str, key: str) -> Any:
        return await (await self._target()).pop(trace_id, key)

    async def shift(self, trace_id: str, key: str) -> Any:
        return await (await self._target()).shift(trace_id, key)

    async def set_field(self, trace_id: str, key: str, field: str, value: Any) -> dict[str, Any]:
        return await (await self._target()).set_field(trace_id, key, field, value)

    async def delete_field(self, trace_id: str, key: str, field: str) -> dict[str, Any]:
        return await (await self._target()).delete_field(trace_id, key, field)

    async def update(self, trace_id: str, key: str, fn: UpdateFn) -> Any:
        return await (await self._target()).update(trace_id, key, fn)

    async def get_group(self, group_id: str) -> list[Any]:
        return await (await self._target()).get_group(group_id)

    async def keys(self, trace_id: str) -> list[str]:
        return await (await self._target()).keys(trace_id)

    async def groups(self) -> list[str]:
        return await (await self._target()).groups()

    async def clear(self, trace_id: str) -> None:
        await (await self._target()).clear(trace_id)

    async def transaction(self, trace_id: str, operations: Sequence[Any]) -> TransactionResult:
        return await (await self._target()).transaction(trace_id, operations)

    async def batch(self, trace_id: str, operations: Sequence[Any]) -> BatchResult:
        return await (await self._target()).batch(trace_id, operations)

    def changes(
        self,
        after: str | None = None,
        *,
        groups: Collection[str] | None = None,
        keys: Collection[str] | None = None,
        follow: bool = True,
    ) -> AsyncIterator[Change]:
        """The chosen adapter's feed; before the first operation has chosen it, chosen at the first read."""
        if self.active is not None:
            return self.active.changes(after, groups=groups, keys=keys, follow=follow)

        async def deferred() -> AsyncIterator[Change]:
            target = await self._target()
            async for change in target.changes(after, groups=groups, keys=keys, follow=follow):
                yield change

        return deferred()

    async def history(self, group: str, key: str, limit: int = 100) -> list[Change]:
        return await (await self._target()).history(group, key, limit)

    async def feed_info(self) -> dict[str, Any]:
        return await (await self._target()).feed_info()

    async def scan(
        self,
        after: tuple[str, str] | None = None,
        *,
        limit: int = 100,
        group: str | None = None,
        where: Predicate | None = None,
    ) -> tuple[list[tuple[str, str, Any]], tuple[str, str] | None]:
        """One page of the chosen adapter's listing (see :meth:`RedisStateAdapter.scan`)."""
        target: Any = await self._target()
        page: tuple[list[tuple[str, str, Any]], tuple[str, str] | None] = await target.scan(
            after, limit=limit, group=group, where=where
        )
        return page


class _FallbackInternal:
    """``adapter.internal`` of a fallback adapter: the chosen adapter's internal handle."""

    def __init__(self, outer: FallbackStateAdapter) -> None:
        self._outer = outer

    async def _handle(self) -> Any:
        adapter: Any = await self._outer._target()
        return adapter.internal

    async def get(self, trace_id: str, key: str) -> Any:
        """As the adapter's, reserved groups allowed, no events."""
        return await (await self._handle()).get(trace_id, key)

    async def set(self, trace_id: str, key: str, value: Any) -> Any:
        """As the adapter's, reserved groups allowed, no events."""
        return await (await self._handle()).set(trace_id, key, value)

    async def delete(self, trace_id: str, key: str) -> Any:
        """As the adapter's, reserved groups allowed, no events."""
        return await (await self._handle()).delete(trace_id, key)

    async def compare_and_swap(self, trace_id: str, key: str, expected: Any, new_value: Any) -> bool:
        """As the adapter's, reserved groups allowed, no events."""
        return bool(await (await self._handle()).compare_and_swap(trace_id, key, expected, new_value))

    async def keys(self, trace_id: str) -> list[str]:
        """As the adapter's, reserved groups allowed."""
        keys: list[str] = await (await self._handle()).keys(trace_id)
        return keys

    async def get_group(self, group_id: str) -> list[Any]:
        """As the adapter's, reserved groups allowed."""
        values: list[Any] = await (await self._handle()).get_group(group_id)
        return values

    async def transaction(self, trace_id: str, operations: Sequence[Any]) -> TransactionResult:
        """As the adapter's, reserved groups allowed, no events."""
        result: TransactionResult = await (await self._handle()).transaction(trace_id, operations)
        return result
