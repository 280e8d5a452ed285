"""Finding an app's step files and reading their configs, once per file version.

:func:`discover` lists the step files under a folder; :class:`ConfigLoader`
asks each file's own runner for its ``config`` (through a
:class:`~motia_state.runtime.WorkerPool`), caches the answer by the file's
(mtime, size), and builds a :class:`Registry`: every valid step indexed by
topic, route, schedule and state trigger, plus the errors of the others.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ..errors import StateError
from ..runtime import WorkerPool
from .config import ApiTrigger, ConfigError, CronTrigger, EventTrigger, StateTrigger, StepConfig, check_app
from .config import parse_step_config as parse_config

__all__ = ["ConfigLoader", "Registry", "StateTriggerSpec", "StepRecord", "discover", "typescript_steps"]

log = logging.getLogger("motia_state.app")

_SUFFIXES = (".step.py", ".step.js", ".step.cjs", ".step.mjs", ".step.rb", "_step.py")
# Folders that hold dependencies or caches, never an app's own steps.
_SKIPPED = {"node_modules", "__pycache__", ".venv", "venv", ".git", "dist", "build"}


# TypeScript is not run: such a step is reported, unless its compiled JavaScript sits beside it.
_TYPESCRIPT = (".step.ts", ".step.tsx", ".step.mts", ".step.cts")


def _walk(root: str | os.PathLike[str]) -> tuple[list[Path], list[Path]]:
    # One walk of the folder: its step files, and its TypeScript step files (both sorted).
    steps: list[Path] = []
    typescript: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED and not d.startswith("."))
        for f in files:
            if f.startswith("."):
                continue
            if f.endswith(_SUFFIXES):
                steps.append(Path(folder, f))
            elif f.endswith(_TYPESCRIPT):
                typescript.append(Path(folder, f))
    return sorted(steps), sorted(typescript)


def _unbuilt(typescript: list[Path], steps: set[Path]) -> list[Path]:
    # The TypeScript files whose compiled JavaScript step is not among ``steps``.
    def built(path: Path) -> bool:
        stem = path.name[: path.name.rindex(".")]  # "a.step"
        return any(path.with_name(stem + ext) in steps for ext in (".js", ".cjs", ".mjs"))

    return [path for path in typescript if not built(path)]


def discover(root: str | os.PathLike[str]) -> list[Path]:
    """The step files under ``root`` (``*.step.py|js|cjs|mjs|rb`` and ``*_step.py``), sorted."""
    return _walk(root)[0]


def typescript_steps(root: str | os.PathLike[str]) -> list[Path]:
    """The TypeScript step files under ``root`` with no JavaScript step of the same name beside them.

    They are not run (compile them to JavaScript); the app lists them so
    that a step ported from Motia does not go missing without a word.
    """
    steps, typescript = _walk(root)
    return _unbuilt(typescript, set(steps))


@dataclass(frozen=True)
class StepRecord:
    """A step of the app: its file and its validated config."""

    path: Path
    config: StepConfig

    @property
    def name(self) -> str:
        """The step's name (unique in the app)."""
        return self.config.name


@dataclass(frozen=True)
class StateTriggerSpec:
    """One state trigger of a step, as a TriggerRunner registers it."""

    name: str  # the step's name, with "#i" when the step has several state triggers
    step: StepRecord
    index: int  # its position in config.triggers (for a native condition)
    trigger: StateTrigger


@dataclass(frozen=True)
class Registry:
    """One consistent version of the app: its steps and what triggers them."""

    steps: Mapping[str, StepRecord] = field(default_factory=dict)  # by name
    errors: tuple[ConfigError, ...] = ()
    skipped: tuple[Path, ...] = ()  # step files without a config
    typescript: tuple[Path, ...] = ()  # TypeScript step files, not run (see typescript_steps)

    @property
    def topics(self) -> dict[str, list[StepRecord]]:
        """topic -> the steps subscribed to it."""
        out: dict[str, list[StepRecord]] = {}
        for step in self.steps.values():
            for trigger in step.config.triggers_of(EventTrigger):
                out.setdefault(trigger.topic, []).append(step)
        return out

    @property
    def routes(self) -> list[tuple[ApiTrigger, StepRecord]]:
        """Every API trigger with its step, in the order requests try them (see ApiTrigger.precedence)."""
        return sorted(
            ((t, s) for s in self.steps.values() for t in s.config.triggers_of(ApiTrigger)),
            # A fixed segment before a parameter, whatever the file order: /users/me is not taken by /users/:id.
            key=lambda pair: (pair[0].precedence, pair[0].path, pair[0].method),
        )

    @property
    def schedules(self) -> list[tuple[CronTrigger, StepRecord]]:
        """Every cron trigger with its step."""
        return [(t, s) for s in self.steps.values() for t in s.config.triggers_of(CronTrigger)]

    @property
    def state_triggers(self) -> list[StateTriggerSpec]:
        """Every state trigger, named for a TriggerRunner."""
        specs: list[StateTriggerSpec] = []
        for step in self.steps.values():
            indexed = [(i, t) for i, t in enumerate(step.config.triggers) if isinstance(t, StateTrigger)]
            for i, trigger in indexed:
                name = step.name if len(indexed) == 1 else f"{step.name}#{i}"
                specs.append(StateTriggerSpec(name, step, i, trigger))
        return specs


class ConfigLoader:
    """Reads step configs through their runners, once per file version."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._cache: dict[Path, tuple[tuple[int, int], StepConfig | ConfigError | None]] = {}

    def label(self, path: Path) -> str:
        """How errors name a step file: relative to the app's folder."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    async def load(self, pool: WorkerPool, files: Iterable[Path] | None = None) -> Registry:
        """Read every step's config (cached per version) and index the valid ones."""
        if files is None:
            paths, found = _walk(self.root)  # the steps and the TypeScript files in one walk
            typescript = _unbuilt(found, set(paths))
        else:
            paths, typescript = list(files), typescript_steps(self.root)
        configs: list[tuple[Path, StepConfig]] = []
        errors: list[ConfigError] = []
        skipped: list[Path] = []
        outcomes: dict[Path, StepConfig | ConfigError | None] = {}

        async def read(path: Path) -> None:
            outcomes[path] = await self._read(pool, path)

        # Each new file starts an interpreter: read them side by side.
        async with anyio.create_task_group() as tg:
            for path in paths:
                tg.start_soon(read, path)
        for path in paths:
            outcome = outcomes[path]
            if isinstance(outcome, ConfigError):
                errors.append(outcome)
            elif outcome is None:
                skipped.append(path)
            else:
                configs.append((path, outcome))
        errors.extend(check_app(c for _, c in configs))
        bad = {e.file for e in errors}
        steps = {c.name: StepRecord(p, c) for p, c in configs if c.file not in bad}
        for path in list(self._cache):
            if path not in paths:
                del self._cache[path]  # removed: forget it
        return Registry(steps=steps, errors=tuple(errors), skipped=tuple(skipped), typescript=tuple(typescript))

    async def _read(self, pool: WorkerPool, path: Path) -> StepConfig | ConfigError | None:
        label = self.label(path)
        try:
            st = path.stat()
        except OSError as e:
            return ConfigError(label, "", f"cannot read the step file: {e.strerror or e}")
        version = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
        outcome: StepConfig | ConfigError | None
        try:
            raw: Any = await pool.config(path)
            outcome = parse_config(raw, label)
        except ConfigError as e:
            outcome = e
        except StateError as e:
            outcome = ConfigError(label, "", f"the step file does not load: {e.message}")
        self._cache[path] = (version, outcome)
        return outcome
