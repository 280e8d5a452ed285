"""The workbench: state endpoints and the page that browses, edits and replays state.

:func:`workbench_routes` gives the routes an App mounts under ``/__motia``;
:func:`workbench_app` serves them alone (``motia-state workbench``).
"""

from .endpoints import PREFIX, EventStreams, entry_version, workbench_app, workbench_routes

__all__ = ["PREFIX", "EventStreams", "entry_version", "workbench_app", "workbench_routes"]
