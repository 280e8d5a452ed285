"""A state trigger's definition: which changes it matches, parsed once when it is added."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError
from ..predicates import Predicate, parse_predicate, predicate_holds
from ..records import Change

__all__ = ["CHANGE_EVENTS", "TriggerSpec", "handler_input", "parse_trigger", "partition_of"]

CHANGE_EVENTS = ("created", "updated", "deleted")
_DEFAULT_EVENTS = frozenset({"created", "updated"})
_FIELDS = frozenset({"type", "key", "group", "events", "condition", "from"})


@dataclass(frozen=True)
class TriggerSpec:
    """One state trigger, validated: what it matches and where a new one starts."""

    key: str  # "*" for every key
    group: str | None
    events: frozenset[str]
    predicate: Predicate | None  # a declarative condition on newValue
    native: bool  # the condition is a function in the step's own language
    start: str  # "now" or "start"
    raw: dict[str, Any]

    def matches(self, change: Change) -> bool:
        """Whether ``change`` is one this trigger reacts to, before its condition."""
        return (
            change.event in self.events
            and (self.key == "*" or change.key == self.key)
            and (self.group is None or change.group == self.group)
        )

    def holds(self, change: Change) -> bool:
        """The declarative condition on the change's new value (True when there is none)."""
        if self.predicate is None:
            return True
        return predicate_holds(self.predicate, change.new_value, change.event != "deleted")


def parse_trigger(raw: Any) -> TriggerSpec:
    """Validate a state trigger's JSON (docs/triggers.md); INVALID_ARGUMENT naming the field when malformed."""
    if not isinstance(raw, dict):
        raise InvalidArgumentError(f"trigger: expected an object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise InvalidArgumentError(f"trigger.{unknown[0]}: unknown field")
    if raw.get("type", "state") != "state":
        raise InvalidArgumentError(f'trigger.type: expected "state", got {raw.get("type")!r}')
    key = raw.get("key")
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError('trigger.key: expected a non-empty string ("*" for every key)')
    group = raw.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        raise InvalidArgumentError("trigger.group: expected a non-empty string")
    events_raw = raw.get("events")
    if events_raw is None:
        events = _DEFAULT_EVENTS
    else:
        if not isinstance(events_raw, list) or not events_raw:
            raise InvalidArgumentError("trigger.events: expected a non-empty list of change events")
        for i, event in enumerate(events_raw):
            if event not in CHANGE_EVENTS:
                raise InvalidArgumentError(
                    f"trigger.events[{i}]: unknown change event {event!r} (created, updated, deleted)"
                )
        events = frozenset(events_raw)
    condition = raw.get("condition")
    native = isinstance(condition, dict) and condition.get("native") is True
    predicate = None
    if condition is not None and not native:
        predicate = parse_predicate(condition, "trigger.condition")
    start = raw.get("from", "now")
    if start not in ("now", "start"):
        raise InvalidArgumentError(f'trigger.from: expected "now" or "start", got {start!r}')
    return TriggerSpec(key, group, events, predicate, native, start, dict(raw))


def partition_of(group: str, key: str, partitions: int) -> int:
    """The partition of an entry: a stable hash of its group and key (the same in every process)."""
    return zlib.crc32(f"{group}\x00{key}".encode()) % partitions


def handler_input(change: Change) -> dict[str, Any]:
    """What a state-triggered step receives: Motia's fields first, then the feed's."""
    return {
        "key": change.key,
        "value": change.new_value,
        "traceId": change.group,
        "depth": change.depth,
        "group": change.group,
        "oldValue": change.old_value,
        "event": change.event,
        "op": change.op,
        "cursor": change.cursor,
        "at": change.at,
    }
