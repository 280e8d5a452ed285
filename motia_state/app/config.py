"""Step configs: typed records, loaded from what a runner's ``config`` method answers.

A step file exports a ``config``: a name, its triggers and a few
options. :func:`parse_step_config` turns the runner's JSON answer into a
:class:`StepConfig` whose triggers are :class:`EventTrigger`,
:class:`ApiTrigger`, :class:`CronTrigger` or :class:`StateTrigger`, accepts
Motia's older top-level shapes, and refuses anything else with a
:class:`ConfigError` naming the file and the field path
(``steps/a.step.py: config.triggers[0].type: unknown trigger type "evnt"``).
:func:`check_app` finds what is wrong between steps: two with one name, two
API steps on one method and path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

import msgspec
from croniter import croniter

from ..errors import InvalidArgumentError, StateError
from ..predicates import parse_predicate

__all__ = [
    "API_METHODS",
    "ApiTrigger",
    "ConfigError",
    "CronTrigger",
    "EventTrigger",
    "StateTrigger",
    "StepConfig",
    "Trigger",
    "check_app",
    "every_seconds",
    "parse_step_config",
]

API_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
#: Paths the app serves itself (the workbench and its endpoints).
RESERVED_PREFIX = "/__motia"
_EVERY = re.compile(r"^@every\s+(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PATH_PARAM = re.compile(r"^:([A-Za-z_][A-Za-z0-9_]*)$")
_MSGSPEC_AT = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)
_FIELD_IN = re.compile(r"^object (contains unknown|missing required) field `([^`]*)`$")
# parse_predicate's messages: "<field>: <problem> at <where>".
_PREDICATE_AT = re.compile(r"^(?:[A-Za-z_]+: )?(.*) at (config\S*)$", re.S)
# Middleware is behaviour (an auth check, often): a route served without it would be open.
_MIDDLEWARE = (
    "Motia middleware is not run here, and the route must not be served without it: "
    "do its checks in the handler, then remove 'middleware'"
)
_CHANGE_EVENTS = ("created", "updated", "deleted")


class ConfigError(InvalidArgumentError):
    """A step's config does not load or does not validate; the message names the file and the field path."""

    def __init__(self, file: str, path: str, problem: str) -> None:
        where = f"{path}: " if path else ""
        super().__init__(f"{file}: {where}{problem}", file=file, path=path, problem=problem)
        self.file = file
        self.path = path
        self.problem = problem


class EventTrigger(msgspec.Struct, tag="event", tag_field="type", forbid_unknown_fields=True, frozen=True):
    """Runs the step when any step emits ``topic``; its data is the handler's input."""

    topic: str
    input: Any = None  # Motia's schema of the event's data: accepted, not enforced


class ApiTrigger(msgspec.Struct, tag="api", tag_field="type", forbid_unknown_fields=True, frozen=True):
    """Runs the step for an HTTP request to ``method`` ``path`` (``/users/:id``)."""

    path: str
    method: str = "GET"
    # Motia's documentation-only fields: accepted, not enforced.
    description: str | None = None
    bodySchema: Any = None
    responseSchema: Any = None
    queryParams: Any = None
    # Not documentation: refused when not empty (see _MIDDLEWARE).
    middleware: Any = None

    @property
    def route(self) -> str:
        """The path in Starlette's syntax, without a trailing slash (it is optional): ``/users/{id}``."""
        return "/".join(
            "{" + m.group(1) + "}" if (m := _PATH_PARAM.match(part)) else part
            for part in _unslashed(self.path).split("/")
        )

    @property
    def shape(self) -> tuple[str, str]:
        """(method, path with every parameter anonymous): two routes that would collide share it."""
        anonymous = (":" if _PATH_PARAM.match(part) else part for part in _unslashed(self.path).split("/"))
        return self.method, "/".join(anonymous)

    @property
    def precedence(self) -> tuple[tuple[int, str], ...]:
        """The order routes are tried in: per segment, a fixed one before a parameter (``/users/me`` first)."""
        return tuple((1, "") if _PATH_PARAM.match(part) else (0, part) for part in _unslashed(self.path).split("/"))


def _unslashed(path: str) -> str:
    """``path`` without its trailing slash (``/`` stays ``/``): a request matches with or without one."""
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


class CronTrigger(msgspec.Struct, tag="cron", tag_field="type", forbid_unknown_fields=True, frozen=True):
    """Runs the step on a schedule: five cron fields (local time) or ``@every 10s|5m|1h``."""

    expression: str

    @property
    def every(self) -> float | None:
        """The period in seconds of an ``@every`` schedule, None for a cron expression."""
        return every_seconds(self.expression)


class StateTrigger(msgspec.Struct, tag="state", tag_field="type", forbid_unknown_fields=True, frozen=True):
    """Runs the step when a committed change matches (the change feed; run by ``motia_state.triggers``)."""

    key: str
    group: str | None = None
    events: list[str] | None = None
    condition: Any = None  # a predicate, or {"native": true} for the step's own function
    start: Literal["now", "start"] = msgspec.field(default="now", name="from")

    def as_dict(self) -> dict[str, Any]:
        """The trigger as JSON, in the shape a TriggerRunner's ``add`` takes."""
        out: dict[str, Any] = {"type": "state", "key": self.key, "from": self.start}
        if self.group is not None:
            out["group"] = self.group
        if self.events is not None:
            out["events"] = list(self.events)
        if self.condition is not None:
            out["condition"] = self.condition
        return out

    @property
    def native(self) -> bool:
        """Whether the condition is a function in the step's own language."""
        return isinstance(self.condition, dict) and self.condition.get("native") is True


Trigger = EventTrigger | ApiTrigger | CronTrigger | StateTrigger
_ALIASES = {"queue": "event", "http": "api"}
_BY_TYPE: dict[str, type[Trigger]] = {
    "event": EventTrigger,
    "api": ApiTrigger,
    "cron": CronTrigger,
    "state": StateTrigger,
}


class StepConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One step's validated config. ``file`` is the step file it came from."""

    name: str
    file: str
    triggers: tuple[Trigger, ...] = ()
    description: str | None = None
    emits: tuple[str, ...] = ()
    flows: tuple[str, ...] = ()
    timeout: float | None = None
    max_workers: int | None = None
    #: Motia's older ``{"type": "cron", "cron": ...}`` shape: its handler takes the context alone.
    context_first: bool = False

    def triggers_of(self, kind: type[Trigger]) -> list[Any]:
        """The triggers of one type, in config order."""
        return [t for t in self.triggers if isinstance(t, kind)]


#: The cron macros croniter reads, as node-cron and Motia's users write them.
_MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})


def _croniter_form(expression: str) -> str:
    # croniter reads a sixth field as the seconds; Motia (node-cron) reads the first one so.
    fields = expression.split()
    if len(fields) == 6:
        fields = fields[1:] + fields[:1]
    elif len(fields) == 1:
        fields = [fields[0].lower()]
    return " ".join(fields)


def cron_iter(expression: str, base: Any = None) -> croniter:
    """A croniter over a cron expression: five fields, six with seconds first (as Motia's node-cron), or a macro."""
    return croniter(_croniter_form(expression), base)


def _is_cron(expression: str) -> bool:
    fields = expression.split()
    if len(fields) == 1 and fields[0].lower() not in _MACROS:
        return False
    return len(fields) in (1, 5, 6) and bool(croniter.is_valid(_croniter_form(expression)))


def _fires(expression: str) -> bool:
    """Whether a valid cron expression has a next time (``0 0 30 2 *``, February 30, has none)."""
    try:
        cron_iter(expression).get_next(float)
    except Exception:  # croniter's CroniterBadDateError, or any other failure to find one
        return False
    return True


def every_seconds(expression: str) -> float | None:
    """The period of ``@every 10s`` (ms, s, m, h) in seconds; None when it is not an ``@every``."""
    m = _EVERY.match(expression.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def _msgspec_problem(error: msgspec.ValidationError, base: str) -> tuple[str, str]:
    text = str(error)
    m = _MSGSPEC_AT.match(text)
    problem, at = (m.group(1), m.group(2) or "") if m else (text, "")
    problem = problem[:1].lower() + problem[1:]
    # Name the field itself in the path, as for every other error.
    field = _FIELD_IN.match(problem)
    if field is not None:
        kind, name = field.groups()
        return (
            f"{base}{at}.{name}",
            "unknown field (a typo?)" if kind == "contains unknown" else "required field missing",
        )
    return base + at, problem


def _strings(value: Any, file: str, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(file, path, f"expected a list of strings, got {_json_type(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ConfigError(file, f"{path}[{i}]", f"expected a non-empty string, got {item!r}")
    return tuple(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _legacy_triggers(raw: dict[str, Any], file: str) -> list[Any]:
    """Motia's older shapes: the trigger's fields at the top level of config."""
    kind = raw.get("type")
    if kind == "event":
        topics = raw.get("subscribes")
        if not isinstance(topics, list):
            raise ConfigError(file, "config.subscribes", "an event step needs a list of topics")
        _strings(topics, file, "config.subscribes")
        return [{"type": "event", "topic": t} for t in topics]
    if kind == "api":
        if raw.get("middleware"):
            raise ConfigError(file, "config.middleware", _MIDDLEWARE)
        return [{"type": "api", "path": raw.get("path"), "method": raw.get("method", "GET")}]
    if kind == "cron":
        return [{"type": "cron", "expression": raw.get("cron")}]
    if kind == "noop":
        return []
    raise ConfigError(file, "config.type", f"unknown step type {kind!r} (event, api, cron or noop)")


def _check_trigger(trigger: Trigger, file: str, path: str) -> Trigger:
    if isinstance(trigger, EventTrigger):
        if not trigger.topic:
            raise ConfigError(file, f"{path}.topic", "expected a non-empty topic")
    elif isinstance(trigger, ApiTrigger):
        method = trigger.method.upper()
        if method not in API_METHODS:
            raise ConfigError(file, f"{path}.method", f"unknown HTTP method {trigger.method!r}")
        if not trigger.path.startswith("/"):
            raise ConfigError(file, f"{path}.path", f"expected a path starting with '/', got {trigger.path!r}")
        if trigger.path == RESERVED_PREFIX or trigger.path.startswith(RESERVED_PREFIX + "/"):
            raise ConfigError(file, f"{path}.path", f"{RESERVED_PREFIX} is reserved for the workbench")
        _check_route(trigger.path, file, f"{path}.path")
        if trigger.middleware:
            raise ConfigError(file, f"{path}.middleware", _MIDDLEWARE)
        if method != trigger.method:
            trigger = msgspec.structs.replace(trigger, method=method)
    elif isinstance(trigger, CronTrigger):
        expression = trigger.expression.strip()
        if expression.startswith("@every"):
            if every_seconds(expression) is None or (every_seconds(expression) or 0) <= 0:
                raise ConfigError(
                    file, f"{path}.expression", f"bad @every schedule {expression!r} (use e.g. '@every 10s', 5m, 1h)"
                )
        elif not _is_cron(expression):
            raise ConfigError(
                file,
                f"{path}.expression",
                f"bad cron expression {expression!r} (five fields: minute hour day month weekday; six with "
                "seconds first; or @hourly, @daily, @weekly, @monthly, @yearly)",
            )
        elif not _fires(expression):
            raise ConfigError(
                file, f"{path}.expression", f"cron expression {expression!r} never fires (a day that does not exist?)"
            )
    elif isinstance(trigger, StateTrigger):
        if not trigger.key:
            raise ConfigError(file, f"{path}.key", 'expected a non-empty key ("*" for every key)')
        if trigger.group is not None and not trigger.group:
            raise ConfigError(file, f"{path}.group", "expected a non-empty group")
        for i, event in enumerate(trigger.events or ()):
            if event not in _CHANGE_EVENTS:
                raise ConfigError(
                    file, f"{path}.events[{i}]", f"unknown change event {event!r} ({', '.join(_CHANGE_EVENTS)})"
                )
        if trigger.condition is not None and not isinstance(trigger.condition, dict):
            raise ConfigError(
                file,
                f"{path}.condition",
                f"expected a predicate object or a function, got {_json_type(trigger.condition)}",
            )
        if isinstance(trigger.condition, dict) and not trigger.native:
            try:
                parse_predicate(trigger.condition, f"{path}.condition")
            except StateError as e:  # INVALID_ARGUMENT or LIMIT_EXCEEDED, naming where
                m = _PREDICATE_AT.match(e.message)
                where, problem = (m.group(2), m.group(1)) if m else (f"{path}.condition", e.message)
                raise ConfigError(file, where, problem) from None
    return trigger


def _check_route(route: str, file: str, path: str) -> None:
    """A route's path: ``:name`` parameters (each once), no pattern syntax that would be taken literally."""
    names: set[str] = set()
    for part in route.split("/"):
        if part.startswith(":"):
            m = _PATH_PARAM.match(part)
            if m is None:
                raise ConfigError(
                    file,
                    path,
                    f"bad path parameter {part!r} (a parameter is ':' and a name of letters, digits and _, "
                    "a whole segment; optional parameters and patterns are not supported)",
                )
            if m.group(1) in names:
                raise ConfigError(file, path, f"path parameter {part!r} appears twice")
            names.add(m.group(1))
        elif "*" in part:
            # Express takes '*' as "anything"; matched literally, the route would never answer.
            raise ConfigError(file, path, f"wildcards are not supported ({part!r}): use a parameter (':name')")
        elif "{" in part or "}" in part:
            raise ConfigError(file, path, f"braces are not allowed in a path ({part!r}): write a parameter as ':name'")


def _parse_trigger(raw: Any, file: str, path: str) -> Trigger:
    if not isinstance(raw, dict):
        raise ConfigError(file, path, f"expected an object, got {_json_type(raw)}")
    kind = raw.get("type")
    if kind is None:
        raise ConfigError(file, f"{path}.type", "missing trigger type (event, api, cron or state)")
    if kind in _ALIASES:  # Motia's current names for the same triggers
        raw = {**raw, "type": _ALIASES[kind]}
        kind = raw["type"]
    cls = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    if cls is None:
        shown = f'"{kind}"' if isinstance(kind, str) else repr(kind)
        raise ConfigError(file, f"{path}.type", f"unknown trigger type {shown} (event, api, cron or state)")
    if "condition" in raw and cls is not StateTrigger:
        # Motia's current triggers take a condition function; here only a state trigger has one.
        raise ConfigError(
            file,
            f"{path}.condition",
            f"{kind} triggers take no condition here (only state triggers do): check it in the handler",
        )
    try:
        trigger: Trigger = msgspec.convert(raw, cls)
    except msgspec.ValidationError as e:
        where, problem = _msgspec_problem(e, path)
        raise ConfigError(file, where, problem) from None
    return _check_trigger(trigger, file, path)


def parse_step_config(raw: Any, file: str) -> StepConfig | None:
    """Validate a runner's ``config`` answer; None when the step exports none.

    ``file`` names the step in errors (as the user would write it, e.g.
    relative to the app's folder). Raises :class:`ConfigError`.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(file, "config", f"expected an object, got {_json_type(raw)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(file, "config.name", "required: a non-empty string, unique in the app")
    if "triggers" in raw:
        if "type" in raw:
            raise ConfigError(file, "config.type", "give either 'triggers' or Motia's older 'type', not both")
        raw_triggers = raw["triggers"]
        if not isinstance(raw_triggers, list):
            raise ConfigError(file, "config.triggers", f"expected a list of triggers, got {_json_type(raw_triggers)}")
        triggers = tuple(_parse_trigger(t, file, f"config.triggers[{i}]") for i, t in enumerate(raw_triggers))
    elif "type" in raw:
        legacy = _legacy_triggers(raw, file)
        try:
            triggers = tuple(
                _parse_trigger(t, file, f"config.subscribes[{i}]" if raw.get("type") == "event" else "config")
                for i, t in enumerate(legacy)
            )
        except ConfigError as e:
            if e.path != "config.expression":
                raise
            raise ConfigError(file, "config.cron", e.problem) from None
    else:
        raise ConfigError(file, "config.triggers", "required: a list of triggers (or Motia's older 'type' form)")
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        raise ConfigError(file, "config.description", f"expected a string, got {_json_type(description)}")
    timeout = raw.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise ConfigError(file, "config.timeout", f"expected a positive number of seconds, got {timeout!r}")
    workers = raw.get("maxWorkers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(file, "config.maxWorkers", f"expected a positive integer, got {workers!r}")
    return StepConfig(
        name=name,
        file=file,
        triggers=triggers,
        description=description,
        emits=_emits(raw, file),
        flows=_strings(raw.get("flows"), file, "config.flows"),
        timeout=float(timeout) if timeout is not None else None,
        max_workers=workers,
        context_first=takes_context_first(raw),
    )


def takes_context_first(raw: Any) -> bool:
    """Whether a step's raw config is Motia's older cron shape, whose handler takes its context alone."""
    return isinstance(raw, dict) and raw.get("type") == "cron" and "triggers" not in raw


def _emits(raw: dict[str, Any], file: str) -> tuple[str, ...]:
    # Motia also writes an emit as {"topic": t, "label": ...}, and its current version calls them "enqueues".
    topics: list[str] = []
    for field in ("emits", "enqueues"):
        value = raw.get(field)
        if isinstance(value, list):
            value = [v.get("topic") if isinstance(v, dict) else v for v in value]
        topics.extend(t for t in _strings(value, file, f"config.{field}") if t not in topics)
    return tuple(topics)


def check_app(configs: Iterable[StepConfig]) -> list[ConfigError]:
    """What is wrong between steps: a name used twice, two API steps on one method and path."""
    errors: list[ConfigError] = []
    names: dict[str, str] = {}
    routes: dict[tuple[str, str], tuple[str, str]] = {}
    for config in sorted(configs, key=lambda c: c.file):
        if config.name in names:
            errors.append(
                ConfigError(
                    config.file, "config.name", f"the name {config.name!r} is already used by {names[config.name]}"
                )
            )
        else:
            names[config.name] = config.file
        for i, trigger in enumerate(config.triggers):
            if not isinstance(trigger, ApiTrigger):
                continue
            shape = trigger.shape
            if shape in routes:
                other_file, other_path = routes[shape]
                errors.append(
                    ConfigError(
                        config.file,
                        f"config.triggers[{i}]",
                        f"{trigger.method} {trigger.path} is already served by {other_file} ({other_path})",
                    )
                )
            else:
                routes[shape] = (config.file, trigger.path)
    return errors
