"""Where a trigger keeps its progress: reserved ``__motia/`` entries written through the internal handle.

One group per trigger, ``__motia/triggers/<name>``, holding:

- ``meta``: ``{"from": "now"|"start", "start": cursor|None}``, written once
  when the trigger is first registered (where a partition without a saved
  position starts);
- ``pos.<p>``: partition ``p``'s position, ``{"cursor": c}`` (every
  matching change of ``p`` up to ``c`` was handled or dead-lettered);
- ``lease.<p>``: ``{"owner": runtime id, "until": ms since the epoch}``;
- ``member.<runtime id>``: ``{"until": ms}``, a heartbeat, so runtimes
  split the partitions evenly;
- ``dead.<id>``: a dead letter.

The internal handle writes without change events nor feed records, so a
trigger's bookkeeping never triggers anything.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["GROUP_PREFIX", "InternalHandle", "group_of"]

GROUP_PREFIX = "__motia/triggers/"


class InternalHandle(Protocol):
    """The part of an adapter's ``internal`` handle the triggers use."""

    async def get(self, group: str, key: str) -> Any: ...

    async def set(self, group: str, key: str, value: Any) -> Any: ...

    async def delete(self, group: str, key: str) -> Any: ...

    async def compare_and_swap(self, group: str, key: str, expected: Any, new_value: Any) -> bool: ...

    async def keys(self, group: str) -> list[str]: ...


def group_of(trigger: str) -> str:
    """The reserved group that holds one trigger's positions, leases and dead letters."""
    return GROUP_PREFIX + trigger
