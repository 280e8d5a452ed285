"""Apps: a folder of steps run on their triggers (events, HTTP, cron, state changes).

``App.from_directory(dir, state=...)`` then ``async with app:``; ``app.asgi``
serves the API routes. ``motia-state dev DIR`` runs one under uvicorn.
Where things live: ``config.py`` (the config records and their
validation), ``discovery.py`` (finding steps, reading configs),
``events.py`` (the event router), ``cron.py`` (the scheduler), ``http.py``
(routes and answer shapes), ``app.py`` (the App), ``dev.py`` (the dev
server).
"""

import typing

if typing.TYPE_CHECKING:
    from .app import App, InvocationRecord, TriggerRunnerLike
    from .config import (
        ApiTrigger,
        ConfigError,
        CronTrigger,
        EventTrigger,
        StateTrigger,
        StepConfig,
        Trigger,
        check_app,
        parse_step_config,
    )
    from .discovery import Registry, StateTriggerSpec, StepRecord, discover
    from .events import DeadLetter, Delivery, EventRouter

__all__ = [
    "ApiTrigger",
    "App",
    "ConfigError",
    "CronTrigger",
    "DeadLetter",
    "Delivery",
    "EventRouter",
    "EventTrigger",
    "InvocationRecord",
    "Registry",
    "StateTrigger",
    "StateTriggerSpec",
    "StepConfig",
    "StepRecord",
    "Trigger",
    "TriggerRunnerLike",
    "check_app",
    "discover",
    "parse_step_config",
]

#: Where each name lives (its module in this package): imported on first use, so that importing
#: ``motia_state.app.dev`` (the ``dev`` command's options) does not load the whole app.
_SOURCES: dict[str, str] = {
    **dict.fromkeys(("App", "InvocationRecord", "TriggerRunnerLike"), ".app"),
    **dict.fromkeys(
        (
            "ApiTrigger",
            "ConfigError",
            "CronTrigger",
            "EventTrigger",
            "StateTrigger",
            "StepConfig",
            "Trigger",
            "check_app",
            "parse_step_config",
        ),
        ".config",
    ),
    **dict.fromkeys(("Registry", "StateTriggerSpec", "StepRecord", "discover"), ".discovery"),
    **dict.fromkeys(("DeadLetter", "Delivery", "EventRouter"), ".events"),
}


def __getattr__(name: str) -> typing.Any:
    """A name of the package, imported from its module on first use (then cached here)."""
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(source, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The package's names as well as the ones already imported."""
    return sorted(set(globals()) | set(__all__))
