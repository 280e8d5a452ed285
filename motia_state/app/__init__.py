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

from .._lazy import lazy_names as _lazy_names

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


__getattr__, __dir__ = _lazy_names(globals(), _SOURCES)
