"""The runtime: run step files in child processes and serve their state calls.

The public API of step execution: :func:`call_step_file` (one call, one
process), :class:`WorkerPool` (warm workers), :class:`StepWorker` (one worker
process), the handlers served to every worker, and the errors. Where things
live: ``steps.py`` (call_step_file), ``worker.py`` (StepWorker: spawn,
serve, invoke, shutdown), ``checks.py`` (what is refused before a process
starts), ``services.py`` (log, emit, legacy result/close, the handler
table), ``pool.py`` (WorkerPool), ``runners.py`` (which runner and
interpreter run a step file).
"""

from ..errors import StepError, StepTimeoutError
from .pool import WorkerPool
from .runners import bindings_dir, command_for, language_of, runner_exists
from .services import StepContext, handler_table, runtime_handlers
from .steps import call_step_file
from .worker import StepWorker

__all__ = [
    "StepContext",
    "StepError",
    "StepTimeoutError",
    "StepWorker",
    "WorkerPool",
    "bindings_dir",
    "call_step_file",
    "command_for",
    "handler_table",
    "language_of",
    "runner_exists",
    "runtime_handlers",
]
