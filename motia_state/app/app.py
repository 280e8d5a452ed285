"""The App: a folder of steps run on their triggers over one WorkerPool and one StateManager.

``App.from_directory(dir, state=...)`` does no I/O; ``async with app:``
reads the step configs (each through its own runner), then runs the event
router, the cron scheduler, the state triggers (when
``motia_state.triggers`` is installed) and serves the API routes as
``app.asgi``, a Starlette application. Leaving the block stops taking
work, lets running invocations finish within ``grace`` seconds, and stops
everything.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from ..adapters.base import StateAdapter
from ..adapters.factory import create_state_adapter
from ..errors import NotFoundError, StateError, UnavailableError
from ..manager import StateManager
from ..runtime import WorkerPool
from ..web.endpoints import EventStreams
from ..web.responses import EXCEPTION_HANDLERS
from .config import StepConfig, check_app
from .cron import CronScheduler
from .discovery import ConfigLoader, Registry, StateTriggerSpec, StepRecord
from .events import DeadLetter, Delivery, EventRouter
from .http import Cors, error_response, json_response, routes_for

__all__ = ["App", "InvocationRecord", "TriggerRunnerLike"]

log = logging.getLogger("motia_state.app")
step_log = logging.getLogger("motia_state.step")

WORKBENCH_PREFIX = "/__motia"


class TriggerRunnerLike(Protocol):
    """What the app needs of a state-trigger runner (``motia_state.triggers.TriggerRunner``).

    The app builds it as ``TriggerRunner(state, pool)``, adding
    ``on_emit=app.route_emit`` when the runner takes that keyword, enters
    it, and calls ``add(name, trigger, step_path)`` for each state trigger
    of :attr:`App.triggers` (``trigger`` as the state trigger's JSON, with "from").
    """

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: Any) -> Any: ...

    async def add(self, name: str, trigger: dict[str, Any], step_path: str, *, index: int | None = None) -> Any:
        """Register one state trigger whose handler is the step file at ``step_path`` (``index``: its place in config.triggers)."""
        ...

    def status(self) -> list[dict[str, Any]]:
        """Each trigger's state, with its ``name``."""
        ...

    def dead_letters(self, name: str) -> list[Any]:
        """One trigger's dead letters (each with ``id`` and ``as_dict()``), oldest first."""
        ...

    async def retry(self, name: str, dead_id: str) -> bool:
        """Run a dead letter again; True when it succeeded (and left the list)."""
        ...

    async def drop(self, name: str, dead_id: str) -> None:
        """Forget a dead letter."""
        ...


@dataclass(frozen=True)
class InvocationRecord:
    """One finished invocation, as the dev server prints it."""

    step: str
    trigger: str  # "api POST /users/:id", "event user.created", "cron */5 * * * *"
    trace_id: str
    duration: float  # seconds
    outcome: str  # "ok", or the error code
    error: str | None = None


class App:
    """A folder of steps, served. See the module docstring and docs/apps.md.

    ``state`` is a StateManager, an adapter, or an adapter URL
    (``memory:``, ``file:PATH``, ``redis://...``); the app closes only a
    store it opened from a URL. ``pool`` is an existing WorkerPool to run
    the steps on (the app then neither starts nor closes it); by default
    the app makes its own over ``state``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        state: StateManager | StateAdapter | str = "memory:",
        pool: WorkerPool | None = None,
        debug: bool = False,
        grace: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.5,
        max_depth: int = 10,
        token: str | None = None,
        cors: Collection[str] = (),
    ) -> None:
        self.root = Path(root)
        #: Which pages of other origins may call the API routes from a browser (``"*"`` for any).
        self.cors = Cors(cors)
        self._state_arg = state
        self._given_pool = pool
        self.debug = debug
        self.grace = grace
        self.token = token
        #: Host names the workbench accepts besides loopback (``dev --host``).
        self.allowed_hosts: tuple[str, ...] = ()
        self.state: StateManager | None = None
        self.pool: WorkerPool | None = pool
        self.registry = Registry()
        #: The state triggers of the current configs, as a TriggerRunner registers them.
        self.triggers: list[StateTriggerSpec] = []
        #: The running TriggerRunner, or None when ``motia_state.triggers`` is not installed.
        self.trigger_runner: TriggerRunnerLike | None = None
        #: Called with every finished invocation (the dev server prints them).
        self.on_invocation: list[Callable[[InvocationRecord], Any]] = []
        self._loader = ConfigLoader(self.root)
        self._stack: contextlib.AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._cron_scope: anyio.CancelScope | None = None
        self._accepting = False
        self._running = 0
        self._limits: dict[tuple[str, int], anyio.CapacityLimiter] = {}
        self._idle = anyio.Event()
        self._idle.set()
        # Each running invocation's scope: past the grace period they are cancelled,
        # whichever task runs them (an HTTP request's, the app's own).
        self._invocations: set[anyio.CancelScope] = set()
        self._cancelling = False
        self._streams = EventStreams()
        self.router = EventRouter(
            self._subscribers, self._deliver, self._spawn, attempts=attempts, backoff=backoff, max_depth=max_depth
        )
        # Every error is JSON, also Starlette's own 404 and 405.
        self._asgi = Starlette(routes=self._builtin_routes(), exception_handlers=dict(EXCEPTION_HANDLERS))

    @classmethod
    def from_directory(
        cls,
        root: str | os.PathLike[str],
        *,
        state: StateManager | StateAdapter | str = "memory:",
        pool: WorkerPool | None = None,
        **options: Any,
    ) -> App:
        """An app over the steps under ``root``; nothing is read or started until ``async with``."""
        return cls(root, state=state, pool=pool, **options)

    # -- lifecycle ------------------------------------------------------------

    async def __aenter__(self) -> App:
        self._cancelling = False
        self._streams = EventStreams()  # the routes made below hand it to the workbench
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            state = self._state_arg
            if isinstance(state, str):
                state = create_state_adapter(state)
            manager = state if isinstance(state, StateManager) else StateManager(state)
            if isinstance(self._state_arg, str):
                await stack.enter_async_context(manager)  # made from a URL: ours to close
            self.state = manager
            if self._given_pool is None:
                self.pool = await stack.enter_async_context(WorkerPool(manager))
            tg = await stack.enter_async_context(anyio.create_task_group())
            self._tg = tg
            stack.callback(tg.cancel_scope.cancel)  # runs before the group's exit: stop what is left
            registry = await self._loader.load(self._require_pool())
            if registry.errors:
                self.registry = registry  # its errors, for whoever shows them all
                raise registry.errors[0]
            self._install(registry)
            await self._start_triggers(stack)
            self._accepting = True
            self._stack = stack
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_accepting()
        if not self._cancelling:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.grace):
                await self._idle.wait()
        if self._running:
            log.warning("stopping %d invocation(s) still running after %.1f s", self._running, self.grace)
            self.cancel_running()
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.grace):
                await self._idle.wait()  # their workers are killed at once
        # The task group was entered outside any scope opened here: it must be left outside one too.
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    async def stop_accepting(self) -> None:
        """Stop taking work: no new requests, events or cron firings; running invocations go on.

        The workbench's open change streams end too: a page left open must
        not keep the server from stopping.
        """
        self._accepting = False
        self._streams.close()
        if self._cron_scope is not None:
            self._cron_scope.cancel()

    def cancel_running(self) -> None:
        """Stop every running invocation now (and any that starts after): each fails with UNAVAILABLE.

        Leaving ``async with`` does this once the grace period is over; a
        server calls it to stop at once (a second Ctrl-C).
        """
        self._cancelling = True
        for scope in list(self._invocations):
            scope.cancel()

    async def wait_idle(self) -> None:
        """Wait until no invocation is running."""
        await self._idle.wait()

    # -- what the app serves ----------------------------------------------------

    @property
    def asgi(self) -> Starlette:
        """The ASGI application: the API routes and ``/__motia``; mountable in another Starlette app."""
        return self._asgi

    @property
    def steps(self) -> dict[str, StepRecord]:
        """The steps by name."""
        return dict(self.registry.steps)

    def dead_letters(self) -> list[DeadLetter]:
        """Event deliveries that failed every attempt, oldest first."""
        return self.router.dead_letters()

    def all_dead_letters(self) -> list[dict[str, Any]]:
        """Every dead letter as JSON: the events' (``"kind": "event"``), then each state trigger's.

        A state trigger's (``"kind": "state"``) names its ``trigger`` and
        holds the ``change`` its handler failed on. ``/__motia/dead-letters``
        lists them, and retries or drops either kind by its id.
        """
        out = [{"kind": "event", **d.as_dict()} for d in self.dead_letters()]
        runner = self.trigger_runner
        if runner is not None:
            for status in runner.status():
                out.extend({"kind": "state", **d.as_dict()} for d in runner.dead_letters(status["name"]))
        return out

    def _trigger_holding(self, dead_id: str) -> str | None:
        """The state trigger that holds the dead letter ``dead_id`` when no event dead letter has that id."""
        runner = self.trigger_runner
        if runner is None or any(d.id == dead_id for d in self.router.dead_letters()):
            return None
        for status in runner.status():
            if any(d.id == dead_id for d in runner.dead_letters(status["name"])):
                return str(status["name"])
        return None

    async def retry_dead_letter(self, dead_id: str) -> bool:
        """Deliver an event dead letter again; True (and it leaves the list) when it succeeds."""
        return await self.router.retry(dead_id)

    def drop_dead_letter(self, dead_id: str) -> None:
        """Forget an event dead letter."""
        self.router.drop(dead_id)

    def emit(self, topic: str, data: Any = None, *, trace_id: str | None = None) -> int:
        """Publish an event from outside any step (depth 0 emitter); returns how many steps it starts."""
        if not self._accepting:
            raise UnavailableError("the app is not running or is stopping")
        return self.router.publish(topic, data, trace_id=trace_id or _new_trace(), depth=1)

    def route_emit(self, event: dict[str, Any], *, depth: int, step: str | None = None) -> int:
        """Route an emit made by an invocation at ``depth`` (by ``step``, when known) to the subscribers.

        ``event`` is what a worker's ``emit`` hands the pool's ``on_emit``
        hook: ``{"topic", "data", "traceId"}``. The subscribers run at
        ``depth + 1`` with the same traceId. This is also the hook a state
        trigger runner gives the invocations it starts, so their emits reach
        the router. Returns how many deliveries were started.
        """
        topic = str(event.get("topic"))
        record = self.registry.steps.get(step) if step is not None else None
        if record is not None and topic not in record.config.emits:
            log.warning("[%s] emits %r, which its config does not declare in 'emits'", step, topic)
        trace_id = str(event.get("traceId") or _new_trace())
        return self.router.publish(topic, event.get("data"), trace_id=trace_id, depth=depth + 1, source=step)

    async def invoke(self, name: str, data: Any = None, *, trace_id: str | None = None) -> Any:
        """Run one step by name (as a manual trigger, depth 0) and return its result."""
        return await self._invoke(self._step(name), "manual", data, trace_id or _new_trace(), 0)

    async def reload(self) -> Registry:
        """Read the configs again (changed files only) and switch to them.

        A step file whose config does not load or validate keeps its last
        good config (it is left out when it has none), and every other
        change is taken: a half-edited file does not hold back a step added,
        changed or removed beside it. When what would be served does not
        hold together (a kept config and a new one claim one name or one
        route) nothing changes. Returns the registry that was read, with
        its errors in ``errors``.
        """
        registry = await self._loader.load(self._require_pool())
        installed = registry if not registry.errors else self._with_last_good(registry)
        if installed is None:
            return registry
        old_triggers = {spec.name: spec.trigger for spec in self.triggers}
        self._install(installed)
        new_triggers = {spec.name: spec.trigger for spec in self.triggers}
        if old_triggers != new_triggers and self.trigger_runner is not None:
            log.warning("state triggers changed: they take effect at the next start")
        return registry

    # -- internals ----------------------------------------------------------------

    def _with_last_good(self, registry: Registry) -> Registry | None:
        """``registry`` with the current config of each file that now fails; None when they clash."""
        failing = {error.file for error in registry.errors}
        kept = [step for step in self.registry.steps.values() if step.config.file in failing]
        steps = [*registry.steps.values(), *kept]
        if check_app(step.config for step in steps):
            return None
        return replace(registry, steps={step.name: step for step in steps})

    def _require_pool(self) -> WorkerPool:
        if self.pool is None:
            raise UnavailableError("the app is not running (use it with 'async with')")
        return self.pool

    def _step(self, name: str) -> StepRecord:
        step = self.registry.steps.get(name)
        if step is None:
            raise NotFoundError(f"no step named {name!r}")
        return step

    def _install(self, registry: Registry) -> None:
        self.registry = registry
        self.triggers = registry.state_triggers
        api = [(trigger, step.name) for trigger, step in registry.routes]
        # Routes are data: the Starlette app reads this list at every request.
        self._asgi.router.routes[:] = [
            *self._builtin_routes(),
            *routes_for(
                api,
                self._api_call,
                debug=self.debug,
                max_body_bytes=self._require_pool().max_frame_bytes,
                cors=self.cors,
            ),
        ]
        self._restart_cron()

    def _restart_cron(self) -> None:
        if self._cron_scope is not None:
            self._cron_scope.cancel()
        schedules = [(trigger, step.name) for trigger, step in self.registry.schedules]
        if not schedules or self._tg is None:
            self._cron_scope = None
            return
        scope = self._cron_scope = anyio.CancelScope()
        scheduler = CronScheduler(self._cron_fire, self._spawn)

        async def run() -> None:
            with scope:
                await scheduler.run(schedules)

        self._tg.start_soon(run)

    async def _start_triggers(self, stack: contextlib.AsyncExitStack) -> None:
        if not self.triggers:
            return
        try:
            module = importlib.import_module("motia_state.triggers")
        except ImportError:
            log.warning(
                "%d state trigger(s) are configured (%s) but motia_state.triggers is not installed: "
                "they are validated and listed, not run",
                len(self.triggers),
                ", ".join(spec.name for spec in self.triggers),
            )
            return
        router = self.router  # one depth limit and one retry policy for events and state triggers
        parameters = inspect.signature(module.TriggerRunner).parameters
        shared = {"max_depth": router.max_depth, "attempts": router.attempts, "backoff": router.backoff}
        options: dict[str, Any] = {k: v for k, v in shared.items() if k in parameters}
        if "on_emit" in parameters:
            options["on_emit"] = self.route_emit  # the emits of state-triggered steps reach the router
        if "invoke" in parameters:
            options["invoke"] = self._state_invoke  # logged, limited and timed like every invocation
        runner: TriggerRunnerLike = module.TriggerRunner(self.state, self.pool, **options)
        self.trigger_runner = await stack.enter_async_context(runner)
        by_index = "index" in inspect.signature(runner.add).parameters
        for spec in self.triggers:
            extra = {"index": spec.index} if by_index else {}  # where a native condition's function is
            await runner.add(spec.name, spec.trigger.as_dict(), str(spec.step.path), **extra)

    async def _state_invoke(self, name: str, data: dict[str, Any], depth: int) -> Any:
        step = self._step(name)
        return await self._invoke(step, f"state {data['group']}/{data['key']}", data, str(data["traceId"]), depth)

    def _spawn(self, fn: Callable[[], Any]) -> None:
        if self._tg is None:
            raise UnavailableError("the app is not running (use it with 'async with')")
        self._tg.start_soon(fn)

    def _subscribers(self, topic: str) -> list[str]:
        return [step.name for step in self.registry.topics.get(topic, [])]

    async def _deliver(self, delivery: Delivery) -> Any:
        if not self._accepting:
            raise UnavailableError("the app is stopping")
        step = self._step(delivery.step)
        return await self._invoke(step, f"event {delivery.topic}", delivery.data, delivery.trace_id, delivery.depth)

    async def _api_call(self, name: str, data: dict[str, Any]) -> Any:
        if not self._accepting:
            raise UnavailableError("the app is stopping")
        step = self._step(name)
        return await self._invoke(step, f"api {data['method']} {data['path']}", data, _new_trace(), 0)

    async def _cron_fire(self, name: str, scheduled_at: str) -> Any:
        if not self._accepting:
            return None
        step = self._step(name)
        with contextlib.suppress(StateError):  # recorded and logged by _invoke
            await self._invoke(step, "cron", {"scheduledAt": scheduled_at}, _new_trace(), 0)

    def _limit(self, config: StepConfig) -> contextlib.AbstractAsyncContextManager[Any]:
        # maxWorkers bounds how many invocations of the step run at once,
        # hence how many of the pool's workers it keeps busy.
        if config.max_workers is None:
            return contextlib.nullcontext()
        key = (config.name, config.max_workers)
        limiter = self._limits.get(key)
        if limiter is None:
            limiter = self._limits[key] = anyio.CapacityLimiter(config.max_workers)
        return limiter

    @contextlib.contextmanager
    def _running_one(self) -> Iterator[None]:
        self._running += 1
        if self._idle.is_set():
            self._idle = anyio.Event()
        try:
            yield
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()

    async def _invoke(self, step: StepRecord, trigger: str, data: Any, trace_id: str, depth: int) -> Any:
        config = step.config
        pool = self._require_pool()

        def on_emit(event: dict[str, Any]) -> None:
            self.route_emit(event, depth=depth, step=config.name)

        def on_log(record: dict[str, Any]) -> None:
            level = logging.getLevelName(str(record.get("level", "info")).upper())
            fields = {k: v for k, v in record.items() if k not in ("level", "msg", "traceId")}
            step_log.log(
                level if isinstance(level, int) else logging.INFO,
                "[%s] %s%s",
                config.name,
                record.get("msg", ""),
                f" {fields}" if fields else "",
            )

        start = time.perf_counter()
        scope = anyio.CancelScope()
        self._invocations.add(scope)
        if self._cancelling:
            scope.cancel()
        try:
            with scope:
                return await self._call(step, pool, data, trace_id, depth, on_emit, on_log, trigger, start)
        finally:
            self._invocations.discard(scope)
        # Only reached when the scope caught its own cancellation: cancel_running stopped it.
        raise UnavailableError(f"the app stopped before {config.name} finished (its grace period was over)")

    async def _call(
        self,
        step: StepRecord,
        pool: WorkerPool,
        data: Any,
        trace_id: str,
        depth: int,
        on_emit: Callable[[dict[str, Any]], None],
        on_log: Callable[[dict[str, Any]], None],
        trigger: str,
        start: float,
    ) -> Any:
        config = step.config
        outcome, error = "ok", None
        async with self._limit(config):
            with self._running_one():
                try:
                    return await pool.call(
                        step.path,
                        data=data,
                        trace_id=trace_id,
                        timeout=config.timeout,
                        on_emit=on_emit,
                        on_log=on_log,
                        depth=depth,  # its writes carry it, so the loop guard sees through state triggers
                        # Motia's older cron shape: handler(ctx), as Motia calls it.
                        context_first=config.context_first,
                    )
                except StateError as e:
                    outcome, error = e.code, e.message
                    raise
                except BaseException as e:
                    cancelled = isinstance(e, anyio.get_cancelled_exc_class())
                    outcome, error = ("CANCELLED", "stopped") if cancelled else ("INTERNAL", repr(e))
                    raise
                finally:
                    record = InvocationRecord(
                        config.name, trigger, trace_id, time.perf_counter() - start, outcome, error
                    )
                    log.info(
                        "%s %s traceId=%s %.1f ms %s",
                        record.step,
                        record.trigger,
                        record.trace_id,
                        record.duration * 1000,
                        record.outcome if error is None else f"{record.outcome}: {error}",
                    )
                    for observer in self.on_invocation:
                        try:
                            observer(record)
                        except Exception:  # an observer's bug must not fail the invocation
                            log.exception("on_invocation observer %r failed", observer)

    # -- /__motia ---------------------------------------------------------------

    def _builtin_routes(self) -> list[BaseRoute]:
        from ..web.guard import Guard

        # The same guard as the workbench's own endpoints: the summary and the
        # dead letters show state values and retry or drop work, so a foreign
        # Host (DNS rebinding), a foreign Origin, a write that is not JSON (a
        # cross-site form) and, with a token, a request without it are refused.
        guard = Guard(self.token, self.allowed_hosts)
        dead = f"{WORKBENCH_PREFIX}/dead-letters"
        routes: list[BaseRoute] = [
            Route(WORKBENCH_PREFIX, self._summary_endpoint(guard), methods=["GET"]),
            Route(dead, guard.wrap(self._dead_letters_endpoint, write=False), methods=["GET"]),
            Route(dead + "/{id}/retry", guard.wrap(self._retry_endpoint, write=True), methods=["POST"]),
            Route(dead + "/{id}", guard.wrap(self._drop_endpoint, write=True), methods=["DELETE"]),
        ]
        if self.state is not None:
            # The workbench's page and state endpoints, once there is a store to show.
            from ..web import workbench_routes

            page = workbench_routes(
                self.state, app=self, token=self.token, allowed_hosts=self.allowed_hosts, streams=self._streams
            )
            routes.append(Mount(WORKBENCH_PREFIX, routes=page))
        return routes

    def summary(self) -> dict[str, Any]:
        """What the app serves: steps, routes, topics, schedules, state triggers, config errors."""
        reg = self.registry
        return {
            "steps": [
                {"name": s.name, "file": s.config.file, "triggers": len(s.config.triggers)} for s in reg.steps.values()
            ],
            "routes": [{"method": t.method, "path": t.path, "step": s.name} for t, s in reg.routes],
            "topics": {topic: [s.name for s in steps] for topic, steps in sorted(reg.topics.items())},
            "schedules": [{"expression": t.expression, "step": s.name} for t, s in reg.schedules],
            "stateTriggers": [
                {"name": spec.name, "step": spec.step.name, "trigger": spec.trigger.as_dict()} for spec in self.triggers
            ],
            "stateTriggersRunning": self.trigger_runner is not None,
            # Step files that export no config: found, but nothing triggers them.
            "notServed": [_relative(path, self.root) for path in reg.skipped],
            # TypeScript step files: not run until compiled to JavaScript.
            "typescript": [_relative(path, self.root) for path in reg.typescript],
        }

    def _summary_endpoint(self, guard: Any) -> Callable[[Request], Awaitable[Response]]:
        async def summary(request: Request) -> Response:
            if "text/html" in request.headers.get("accept", "") and self.state is not None:
                # A browser opening the printed URL gets the workbench page (which asks for the token itself).
                denied = guard.refuse_origin(request)
                return denied or RedirectResponse(
                    request.scope.get("root_path", "") + f"{WORKBENCH_PREFIX}/" + _query(request)
                )
            return guard.refuse(request, write=False) or json_response(self.summary())

        return summary

    async def _dead_letters_endpoint(self, request: Request) -> Response:
        return json_response(self.all_dead_letters())

    async def _retry_endpoint(self, request: Request) -> Response:
        try:
            dead_id = request.path_params["id"]
            trigger = self._trigger_holding(dead_id)
            if trigger is not None and self.trigger_runner is not None:
                ok = await self.trigger_runner.retry(trigger, dead_id)
            else:
                ok = await self.retry_dead_letter(dead_id)
        except NotFoundError as e:
            return error_response(404, e.message, e.code)
        return json_response({"retried": True, "succeeded": ok})

    async def _drop_endpoint(self, request: Request) -> Response:
        try:
            dead_id = request.path_params["id"]
            trigger = self._trigger_holding(dead_id)
            if trigger is not None and self.trigger_runner is not None:
                await self.trigger_runner.drop(trigger, dead_id)
            else:
                self.drop_dead_letter(dead_id)
        except NotFoundError as e:
            return error_response(404, e.message, e.code)
        return Response(status_code=204)  # as the workbench's DELETE of a trigger's dead letter


def _query(request: Request) -> str:
    return f"?{request.url.query}" if request.url.query else ""


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _new_trace() -> str:
    return str(uuid.uuid4())
