"""State triggers: run a step when a committed change matches, never missing one (docs/triggers.md).

``TriggerRunner(state, pool)`` reads the store's change feed, keeps each
trigger's position in the store (reserved ``__motia/`` groups), splits the
work between runtimes by leased partitions, retries failing handlers and
keeps what still fails as dead letters.
"""

from __future__ import annotations

from .runner import DeadLetter, TriggerRunner
from .spec import TriggerSpec, handler_input, parse_trigger, partition_of

__all__ = ["DeadLetter", "TriggerRunner", "TriggerSpec", "handler_input", "parse_trigger", "partition_of"]
