"""The runtime: run step files in child processes and serve their state calls."""

from .pool import WorkerPool
from .runners import bindings_dir, command_for, language_of, runner_exists
from .steps import StepError, StepTimeoutError, StepWorker, call_step_file, runtime_handlers

__all__ = [
    "StepError",
    "StepTimeoutError",
    "StepWorker",
    "WorkerPool",
    "bindings_dir",
    "call_step_file",
    "command_for",
    "language_of",
    "runner_exists",
    "runtime_handlers",
]
