"""``ctx.state`` inside a Python step: every operation as an RPC call.

:class:`RpcStateManager` is for ``async def`` handlers (awaitable calls);
:class:`BlockingStateManager` wraps it for plain ``def`` handlers, which run
in a worker thread and block on each call. Both have the core's snake_case
names and the camelCase aliases of Motia's API.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import random
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import ConflictError
from .rpc import WRAP_DEPTH, RpcClient, check_json

#: Optimistic ``update``: attempts before CONFLICT (the core's count), and the backoff base.
UPDATE_RETRIES = 64
UPDATE_BACKOFF = 0.0005


Reply = asyncio.Future
"""What each state method returns: the future of the parent's reply."""


class RpcStateManager:
    """Awaitable state operations served by the parent runtime.

    Each method sends its request at once and returns the future of the
    reply (not a coroutine), so ``asyncio.gather`` over thousands of calls
    creates no task per call and they all travel pipelined.
    """

    def __init__(self, client: RpcClient) -> None:
        self._client = client

    def _call(self, method: str, args: dict[str, Any]) -> Reply[Any]:
        # Each argument is checked under its own name ("value", "items[2]"),
        # before anything is sent. Records are checked for JSON only: a
        # record's value past a limit is the parent's to report, as that
        # record's failure in the transaction's or batch's result.
        for name, value in args.items():
            if name == "operations":
                check_json(value, name, WRAP_DEPTH, exact=False)
            elif type(value) is not str or not value.isascii():
                check_json(value, name, 1 if name == "items" else 0)
        return self._client.request(method, args, checked=True)

    def get(self, trace_id: str, key: str) -> Reply[Any]:
        """The stored value, or None."""
        return self._call("state.get", {"traceId": trace_id, "key": key})

    def set(self, trace_id: str, key: str, value: Any) -> Reply[Any]:
        """Store ``value``; returns it."""
        return self._call("state.set", {"traceId": trace_id, "key": key, "value": value})

    def delete(self, trace_id: str, key: str) -> Reply[Any]:
        """Remove the entry; returns the old value."""
        return self._call("state.delete", {"traceId": trace_id, "key": key})

    def exists(self, trace_id: str, key: str) -> Reply[bool]:
        """Whether an entry is stored."""
        return self._call("state.exists", {"traceId": trace_id, "key": key})

    def increment(self, trace_id: str, key: str, delta: Any = 1) -> Reply[Any]:
        """Add ``delta``; returns the new number."""
        return self._call("state.increment", {"traceId": trace_id, "key": key, "delta": delta})

    def decrement(self, trace_id: str, key: str, delta: Any = 1) -> Reply[Any]:
        """Subtract ``delta``; returns the new number."""
        return self._call("state.decrement", {"traceId": trace_id, "key": key, "delta": delta})

    def compare_and_swap(self, trace_id: str, key: str, expected: Any, new_value: Any) -> Reply[bool]:
        """Store ``new_value`` if the current value equals ``expected``."""
        args = {"traceId": trace_id, "key": key, "expected": expected, "newValue": new_value}
        return self._call("state.compareAndSwap", args)

    def push(self, trace_id: str, key: str, *items: Any) -> Reply[list[Any]]:
        """Append items; returns the new array."""
        return self._call("state.push", {"traceId": trace_id, "key": key, "items": list(items)})

    def unshift(self, trace_id: str, key: str, *items: Any) -> Reply[list[Any]]:
        """Prepend items in order; returns the new array."""
        return self._call("state.unshift", {"traceId": trace_id, "key": key, "items": list(items)})

    def pop(self, trace_id: str, key: str) -> Reply[Any]:
        """Remove and return the last element."""
        return self._call("state.pop", {"traceId": trace_id, "key": key})

    def shift(self, trace_id: str, key: str) -> Reply[Any]:
        """Remove and return the first element."""
        return self._call("state.shift", {"traceId": trace_id, "key": key})

    def set_field(self, trace_id: str, key: str, field: str, value: Any) -> Reply[dict[str, Any]]:
        """Set one field of an object; returns the new object."""
        return self._call("state.setField", {"traceId": trace_id, "key": key, "field": field, "value": value})

    def delete_field(self, trace_id: str, key: str, field: str) -> Reply[dict[str, Any]]:
        """Remove one field of an object; returns the new object."""
        return self._call("state.deleteField", {"traceId": trace_id, "key": key, "field": field})

    def get_group(self, group_id: str) -> Reply[list[Any]]:
        """The group's values ordered by key."""
        return self._call("state.getGroup", {"groupId": group_id})

    def keys(self, trace_id: str) -> Reply[list[str]]:
        """The group's keys, sorted."""
        return self._call("state.keys", {"traceId": trace_id})

    def groups(self) -> Reply[list[str]]:
        """Every non-empty group, sorted."""
        return self._call("state.groups", {})

    def clear(self, trace_id: str) -> Reply[None]:
        """Remove every entry of the group."""
        return self._call("state.clear", {"traceId": trace_id})

    def transaction(self, trace_id: str, operations: list[dict[str, Any]]) -> Reply[dict[str, Any]]:
        """All-or-nothing: ``{success, results}`` or ``{success: False, error, failedIndex, code}``."""
        return self._call("state.transaction", {"traceId": trace_id, "operations": operations})

    def batch(self, trace_id: str, operations: list[dict[str, Any]]) -> Reply[dict[str, Any]]:
        """Each op on its own: ``{results: [{id?, value} | {id?, error, code}]}``."""
        return self._call("state.batch", {"traceId": trace_id, "operations": operations})

    async def update(self, trace_id: str, key: str, fn: Callable[[Any], Any]) -> Any:
        """Store ``fn(current)``: an optimistic get + compareAndSwap loop.

        No code travels to the parent. On a lost race the loop backs off
        (jittered, growing) and retries; after UPDATE_RETRIES it raises
        ConflictError. ``fn`` may be async and sees a private copy.
        """
        for attempt in range(UPDATE_RETRIES):
            current = await self.get(trace_id, key)
            new = fn(copy.deepcopy(current))
            if inspect.isawaitable(new):
                new = await new
            check_json(new, "the update fn's result")
            if await self.compare_and_swap(trace_id, key, current, new):
                return new
            await asyncio.sleep(random.uniform(0, UPDATE_BACKOFF * (2 ** min(attempt, 6))))
        raise ConflictError("update of %r lost %d races in a row" % (key, UPDATE_RETRIES))

    async def atomic_update(self, trace_id: str, key: str, fn: Callable[[Any], Any]) -> Any:
        """Deprecated alias of :meth:`update`."""
        warnings.warn("atomic_update is deprecated; use update", DeprecationWarning, stacklevel=2)
        return await self.update(trace_id, key, fn)

    getGroup = get_group
    compareAndSwap = compare_and_swap
    setField = set_field
    deleteField = delete_field
    atomicUpdate = atomic_update


class BlockingStateManager:
    """The same operations as blocking calls, for plain ``def`` handlers.

    Each call is handed to the event loop thread and waited for, so a sync
    handler (running in its own thread) never touches the channel itself.
    """

    def __init__(self, inner: RpcStateManager, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = inner
        self._loop = loop

    def _run(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name in ("update", "atomic_update", "atomicUpdate"):
            raise AttributeError(name)  # defined below: fn must run in this thread

        async def on_loop(*args: Any) -> Any:
            return await method(*args)  # the request is built on the loop's thread

        def call(*args: Any) -> Any:
            return self._run(on_loop(*args))

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call

    def update(self, trace_id: str, key: str, fn: Callable[[Any], Any]) -> Any:
        """Store ``fn(current)`` (optimistic loop; ``fn`` runs in this thread)."""
        for attempt in range(UPDATE_RETRIES):
            current = self.get(trace_id, key)
            new = fn(copy.deepcopy(current))
            check_json(new, "the update fn's result")
            if self.compare_and_swap(trace_id, key, current, new):
                return new
            time.sleep(random.uniform(0, UPDATE_BACKOFF * (2 ** min(attempt, 6))))
        raise ConflictError("update of %r lost %d races in a row" % (key, UPDATE_RETRIES))

    def atomic_update(self, trace_id: str, key: str, fn: Callable[[Any], Any]) -> Any:
        """Deprecated alias of :meth:`update`."""
        warnings.warn("atomic_update is deprecated; use update", DeprecationWarning, stacklevel=2)
        return self.update(trace_id, key, fn)

    atomicUpdate = atomic_update

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return getattr(self, str(name))  # type: ignore[no-any-return]
