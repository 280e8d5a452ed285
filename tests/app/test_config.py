"""Step configs: typed records, Motia's older shapes, errors naming the file and the field path."""

from __future__ import annotations

from typing import Any

import pytest

from motia_state.app import (
    ApiTrigger,
    ConfigError,
    CronTrigger,
    EventTrigger,
    StateTrigger,
    check_app,
    parse_step_config,
)
from motia_state.errors import InvalidArgumentError

FILE = "steps/a.step.py"


def test_a_config_with_every_trigger_type_parses_into_typed_records() -> None:
    config = parse_step_config(
        {
            "name": "A",
            "description": "d",
            "triggers": [
                {"type": "event", "topic": "t"},
                {"type": "api", "method": "post", "path": "/users/:id"},
                {"type": "cron", "expression": "*/5 * * * *"},
                {"type": "cron", "expression": "@every 10s"},
                {
                    "type": "state",
                    "key": "score",
                    "group": "g",
                    "condition": {"op": "gte", "value": 1},
                    "from": "start",
                },
            ],
            "emits": ["x", {"topic": "y", "label": "Y"}],
            "flows": ["f"],
            "timeout": 5,
            "maxWorkers": 2,
            "virtualEmits": ["ignored: Motia documentation field"],
        },
        FILE,
    )
    assert config is not None
    assert config.name == "A" and config.file == FILE and config.description == "d"
    event, api, cron, every, state = config.triggers
    assert event == EventTrigger(topic="t")
    assert isinstance(api, ApiTrigger) and api.method == "POST" and api.route == "/users/{id}"
    assert isinstance(cron, CronTrigger) and cron.every is None
    assert isinstance(every, CronTrigger) and every.every == 10.0
    assert isinstance(state, StateTrigger) and state.start == "start" and not state.native
    assert state.as_dict() == {
        "type": "state",
        "key": "score",
        "group": "g",
        "from": "start",
        "condition": {"op": "gte", "value": 1},
    }
    assert config.emits == ("x", "y") and config.flows == ("f",)
    assert config.timeout == 5.0 and config.max_workers == 2


@pytest.mark.parametrize(
    ("raw", "triggers"),
    [
        ({"type": "event", "subscribes": ["a", "b"]}, (EventTrigger(topic="a"), EventTrigger(topic="b"))),
        ({"type": "api", "path": "/x", "method": "GET"}, (ApiTrigger(path="/x", method="GET"),)),
        ({"type": "cron", "cron": "0 * * * *"}, (CronTrigger(expression="0 * * * *"),)),
        ({"type": "noop"}, ()),
        (
            {
                "triggers": [
                    {"type": "queue", "topic": "q", "input": {"native": True}},
                    {"type": "http", "method": "POST", "path": "/h", "bodySchema": {"native": True}},
                ]
            },
            (
                EventTrigger(topic="q", input={"native": True}),
                ApiTrigger(path="/h", method="POST", bodySchema={"native": True}),
            ),
        ),
    ],
)
def test_motias_older_shapes_are_accepted(raw: dict[str, Any], triggers: tuple[Any, ...]) -> None:
    config = parse_step_config({"name": "Old", **raw}, FILE)
    assert config is not None and config.triggers == triggers


def test_a_native_condition_is_recognised() -> None:
    config = parse_step_config(
        {"name": "N", "triggers": [{"type": "state", "key": "k", "condition": {"native": True}}]}, FILE
    )
    assert config is not None and config.triggers[0].native  # type: ignore[union-attr]


def test_no_config_is_none() -> None:
    assert parse_step_config(None, FILE) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([1], "steps/a.step.py: config: expected an object, got an array"),
        ({"triggers": []}, "steps/a.step.py: config.name: required"),
        ({"name": "A"}, "steps/a.step.py: config.triggers: required"),
        ({"name": "A", "triggers": {}}, "steps/a.step.py: config.triggers: expected a list of triggers, got an object"),
        (
            {"name": "A", "triggers": [{"type": "evnt", "topic": "t"}]},
            'steps/a.step.py: config.triggers[0].type: unknown trigger type "evnt"',
        ),
        ({"name": "A", "triggers": [{"topic": "t"}]}, "steps/a.step.py: config.triggers[0].type: missing trigger type"),
        ({"name": "A", "triggers": ["t"]}, "steps/a.step.py: config.triggers[0]: expected an object, got a string"),
        (
            {"name": "A", "triggers": [{"type": "event", "topic": "t"}, {"type": "event", "topik": "t"}]},
            "steps/a.step.py: config.triggers[1].topik: unknown field (a typo?)",
        ),
        (
            {"name": "A", "triggers": [{"type": "api"}]},
            "steps/a.step.py: config.triggers[0].path: required field missing",
        ),
        (
            {"name": "A", "triggers": [{"type": "event", "topic": 3}]},
            "steps/a.step.py: config.triggers[0].topic: expected `str`, got `int`",
        ),
        (
            {"name": "A", "triggers": [{"type": "api", "method": "FETCH", "path": "/x"}]},
            "steps/a.step.py: config.triggers[0].method: unknown HTTP method 'FETCH'",
        ),
        (
            {"name": "A", "triggers": [{"type": "api", "path": "x"}]},
            "steps/a.step.py: config.triggers[0].path: expected a path starting with '/'",
        ),
        (
            {"name": "A", "triggers": [{"type": "queue", "topic": "t", "condition": None}]},
            "steps/a.step.py: config.triggers[0].condition: event triggers take no condition here",
        ),
        (
            {"name": "A", "triggers": [], "enqueues": ["t", 2]},
            "steps/a.step.py: config.enqueues[1]: expected a non-empty string",
        ),
        (
            {"name": "A", "triggers": [{"type": "api", "path": "/a", "middleware": [None]}]},
            "steps/a.step.py: config.triggers[0].middleware: Motia middleware is not run here, and the route must not",
        ),
        (
            {"name": "A", "type": "api", "path": "/a", "middleware": [{}]},
            "steps/a.step.py: config.middleware: Motia middleware is not run here",
        ),
        (
            {"name": "A", "triggers": [{"type": "api", "path": "/a/:x/b/:x"}]},
            "steps/a.step.py: config.triggers[0].path: path parameter ':x' appears twice",
        ),
        (
            {"name": "A", "triggers": [{"type": "api", "path": "/files/*"}]},
            "steps/a.step.py: config.triggers[0].path: wildcards are not supported ('*')",
        ),
        (
            {"name": "A", "triggers": [{"type": "api", "path": "/users/{id}"}]},
            "steps/a.step.py: config.triggers[0].path: braces are not allowed in a path ('{id}')",
        ),
        (
            {"name": "A", "triggers": [{"type": "api", "path": "/users/:id?"}]},
            "steps/a.step.py: config.triggers[0].path: bad path parameter ':id?' (a parameter is",
        ),
        (
            {"name": "A", "triggers": [{"type": "api", "path": "/__motia/x"}]},
            "steps/a.step.py: config.triggers[0].path: /__motia is reserved",
        ),
        (
            {"name": "A", "triggers": [{"type": "cron", "expression": "* * * *"}]},
            "steps/a.step.py: config.triggers[0].expression: bad cron expression '* * * *'",
        ),
        (
            {"name": "A", "triggers": [{"type": "cron", "expression": "61 * * * *"}]},
            "steps/a.step.py: config.triggers[0].expression: bad cron expression",
        ),
        (
            {"name": "A", "triggers": [{"type": "cron", "expression": "61 * * * * *"}]},
            "steps/a.step.py: config.triggers[0].expression: bad cron expression '61 * * * * *' (five fields",
        ),
        (
            {"name": "A", "triggers": [{"type": "cron", "expression": "@fortnightly"}]},
            "steps/a.step.py: config.triggers[0].expression: bad cron expression '@fortnightly'",
        ),
        (
            {"name": "A", "triggers": [{"type": "cron", "expression": "0 0 30 2 *"}]},
            "steps/a.step.py: config.triggers[0].expression: cron expression '0 0 30 2 *' never fires",
        ),
        (
            {"name": "A", "triggers": [{"type": "cron", "expression": "@every 10 parsecs"}]},
            "steps/a.step.py: config.triggers[0].expression: bad @every schedule",
        ),
        (
            {"name": "A", "triggers": [{"type": "state", "key": "k", "events": ["changed"]}]},
            "steps/a.step.py: config.triggers[0].events[0]: unknown change event 'changed'",
        ),
        (
            {"name": "A", "triggers": [{"type": "state", "key": "k", "from": "yesterday"}]},
            "steps/a.step.py: config.triggers[0].from: invalid enum value 'yesterday'",
        ),
        (
            {"name": "A", "triggers": [{"type": "state", "key": "k", "condition": "x > 1"}]},
            "steps/a.step.py: config.triggers[0].condition: expected a predicate object or a function",
        ),
        (
            {"name": "A", "triggers": [{"type": "state", "key": "k", "condition": {"op": "bigger", "value": 1}}]},
            "steps/a.step.py: config.triggers[0].condition.op: unknown operator 'bigger'",
        ),
        (
            {"name": "A", "triggers": [{"type": "state", "key": "k", "condition": {"all": [{"op": "eq"}]}}]},
            "steps/a.step.py: config.triggers[0].condition.all[0].value: required by 'eq'",
        ),
        ({"name": "A", "type": "cron", "cron": "nope"}, "steps/a.step.py: config.cron: bad cron expression 'nope'"),
        ({"name": "A", "type": "event", "subscribes": "t"}, "steps/a.step.py: config.subscribes: an event step needs"),
        ({"name": "A", "type": "queue"}, "steps/a.step.py: config.type: unknown step type 'queue'"),
        ({"name": "A", "triggers": [], "timeout": -1}, "steps/a.step.py: config.timeout: expected a positive number"),
        ({"name": "A", "triggers": [], "maxWorkers": 0}, "steps/a.step.py: config.maxWorkers: expected a positive"),
        ({"name": "A", "triggers": [], "emits": [1]}, "steps/a.step.py: config.emits[0]: expected a non-empty string"),
    ],
)
def test_each_error_names_the_file_and_the_field(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_step_config(raw, FILE)
    assert str(info.value).startswith(message), str(info.value)
    assert isinstance(info.value, InvalidArgumentError) and info.value.code == "INVALID_ARGUMENT"
    assert info.value.file == FILE


def test_two_steps_with_one_name_or_one_route_are_errors() -> None:
    a = parse_step_config({"name": "A", "triggers": [{"type": "api", "method": "GET", "path": "/u/:id"}]}, "a.step.py")
    b = parse_step_config({"name": "A", "triggers": []}, "b.step.js")
    c = parse_step_config({"name": "C", "triggers": [{"type": "api", "method": "GET", "path": "/u/:uid"}]}, "c.step.rb")
    d = parse_step_config({"name": "D", "triggers": [{"type": "api", "method": "POST", "path": "/u/:id"}]}, "d.step.rb")
    assert a and b and c and d
    errors = [str(e) for e in check_app([a, b, c, d])]
    assert errors == [
        "b.step.js: config.name: the name 'A' is already used by a.step.py",
        "c.step.rb: config.triggers[0]: GET /u/:uid is already served by a.step.py (/u/:id)",
    ]


async def test_a_schedule_that_cannot_compute_its_next_time_stops_alone() -> None:
    # Validation refuses such an expression; should one get through, it stops
    # its own schedule (logged), never the app with the others.
    import anyio

    from motia_state.app.config import CronTrigger
    from motia_state.app.cron import CronScheduler

    fired: list[str] = []

    async def fire(step: str, at: str) -> None:
        fired.append(step)

    with anyio.move_on_after(1.0):
        async with anyio.create_task_group() as tg:

            def spawn(fn: Any) -> None:
                tg.start_soon(fn)

            schedules = [(CronTrigger("0 0 30 2 *"), "Never"), (CronTrigger("@every 0.1s"), "Tick")]
            await CronScheduler(fire, spawn).run(schedules)
    assert "Tick" in fired and "Never" not in fired


async def test_a_slow_step_on_a_fast_schedule_logs_its_skipped_firings_once_per_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    import anyio

    from motia_state.app.config import CronTrigger
    from motia_state.app.cron import CronScheduler

    async def fire(step: str, at: str) -> None:
        await anyio.sleep(0.3)

    caplog.set_level(logging.WARNING, logger="motia_state.app")
    with anyio.move_on_after(1.0):
        async with anyio.create_task_group() as tg:

            def spawn(fn: Any) -> None:
                tg.start_soon(fn)

            await CronScheduler(fire, spawn).run([(CronTrigger("@every 5ms"), "Slow")])
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert 1 <= len(skipped) <= 8, skipped  # a few lines, not one per missed firing


def test_motias_current_enqueues_are_emits() -> None:
    config = parse_step_config({"name": "A", "triggers": [], "emits": ["a"], "enqueues": ["b", {"topic": "a"}]}, FILE)
    assert config is not None and config.emits == ("a", "b")


@pytest.mark.parametrize(
    ("expression", "after", "fires"),
    [
        # Six fields, seconds first, as Motia's node-cron reads them.
        ("*/10 * * * * *", (2026, 1, 1, 5, 0, 3), (2026, 1, 1, 5, 0, 10)),
        ("0 2 * * * *", (2026, 1, 1, 5, 0, 3), (2026, 1, 1, 5, 2, 0)),
        ("@hourly", (2026, 1, 1, 5, 0, 3), (2026, 1, 1, 6, 0, 0)),
        ("@daily", (2026, 1, 1, 5, 0, 3), (2026, 1, 2, 0, 0, 0)),
        ("30 4 * * *", (2026, 1, 1, 5, 0, 3), (2026, 1, 2, 4, 30, 0)),
    ],
)
def test_six_field_schedules_and_macros_fire_as_in_motia(
    expression: str, after: tuple[int, ...], fires: tuple[int, ...]
) -> None:
    from datetime import datetime

    from motia_state.app.cron import next_fire

    config = parse_step_config({"name": "A", "triggers": [{"type": "cron", "expression": expression}]}, FILE)
    assert config is not None
    [trigger] = config.triggers
    assert isinstance(trigger, CronTrigger)
    start = datetime(*after).timestamp()  # local time, as the scheduler reads it
    assert next_fire(trigger, start) == datetime(*fires).timestamp()
