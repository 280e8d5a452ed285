"""The workbench's JSON endpoints: state, versions, history, the change stream, steps, triggers.

Motia's paths and shapes are kept (``GET/POST /__motia/state``,
``POST /__motia/state/delete``) so its clients work unchanged; versions,
paging, filters, history, the live stream, steps and triggers are added.
:func:`workbench_routes` returns Starlette routes relative to the mount
point (the App mounts them under ``/__motia``); :func:`workbench_app`
serves them alone.

Internal module: :func:`workbench_routes` and :func:`workbench_app` are
re-exported by :mod:`motia_state.web`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import anyio
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Message, Receive, Scope, Send

from ..errors import (
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    StateError,
    UnavailableError,
    error_for_code,
)
from ..predicates import Predicate, parse_predicate, predicate_holds
from ..triggers.store import TriggerStore, retry_finished
from ..values import check_name, is_reserved_group, json_type
from .guard import SESSION_COOKIE, Guard
from .responses import EXCEPTION_HANDLERS, STATUS_BY_CODE, error, from_state_error, json

__all__ = ["PREFIX", "EventStreams", "entry_version", "workbench_app", "workbench_routes"]

log = logging.getLogger("motia_state.web")

#: Where the workbench lives.
PREFIX: Final = "/__motia"
#: The logger an App writes its steps' log lines to, each led by ``[step name]``.
STEP_LOGGER: Final = "motia_state.step"
#: Largest request body accepted (one RPC frame's default).
MAX_BODY: Final = 16 * 1024 * 1024
#: Page size of the listing: default and largest.
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 10_000
#: How long a retry asked through the store waits for a running runtime's outcome before answering "queued".
RETRY_WAIT: Final = 10.0
#: How often it looks for that outcome.
RETRY_POLL: Final = 0.1
STATIC: Final = Path(__file__).parent / "static"
_STATIC_TYPES: Final = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

_canonical = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder()


def entry_version(value: Any) -> str:
    """The version of a stored value: a digest of its canonical JSON (sorted keys)."""
    return hashlib.blake2b(_canonical.encode(value), digest_size=10).hexdigest()


def _entry(group: str, key: str, value: Any) -> dict[str, Any]:
    return {"groupId": group, "key": key, "type": json_type(value), "value": value, "version": entry_version(value)}


def _encode_cursor(position: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(_canonical.encode(list(position))).decode().rstrip("=")


def _decode_cursor(raw: str) -> tuple[str, str]:
    try:
        decoded = _decoder.decode(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError, RecursionError):
        decoded = None
    if not (isinstance(decoded, list) and len(decoded) == 2 and all(type(x) is str for x in decoded)):
        raise InvalidArgumentError(f"cursor {raw!r} is not a cursor this listing gave")
    return decoded[0], decoded[1]


def _motia_filter(raw: Any) -> Any:
    """Motia's filter shape in the predicate language: a list of ``{valueKey, operation, value}`` must all hold."""
    if type(raw) is list:
        return {"all": [_motia_filter(item) for item in raw]}
    if type(raw) is dict and "operation" in raw and "op" not in raw:
        return {("op" if name == "operation" else name): value for name, value in raw.items()}
    return raw


def _name(raw: Any, what: str) -> str:
    if type(raw) is not str or not raw:
        raise InvalidArgumentError(f"{what} must be a non-empty string")
    if what == "groupId" and is_reserved_group(raw):
        raise InvalidArgumentError(f"groupId {raw!r} is reserved for the runtime")
    return check_name(raw, what)  # NUL, size, lone surrogates: named as the field it was sent as


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidArgumentError(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return int(raw)


async def _body(request: Request) -> Any:
    # Read at most MAX_BODY bytes: a huge body is refused without holding it all.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise LimitExceededError(f"the request body is over {MAX_BODY} bytes")
        chunks.append(chunk)
    return _json(b"".join(chunks), "the request body")


def _json(raw: bytes | str, what: str) -> Any:
    """``raw`` decoded: not JSON is INVALID_ARGUMENT, nested past the parser's depth LIMIT_EXCEEDED."""
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as e:
        raise InvalidArgumentError(f"{what} is not JSON: {e}") from None
    except RecursionError:
        raise LimitExceededError(f"{what} nests too deep to read (values nest at most 256 levels)") from None


def _fields(body: Any, *names: str) -> dict[str, Any]:
    if type(body) is not dict:
        raise InvalidArgumentError("the request body must be a JSON object")
    return body


def _wire(result: Any) -> Any:
    to_wire = getattr(result, "to_wire", None)
    return to_wire() if callable(to_wire) else msgspec.to_builtins(result)


class EventStreams:
    """The open change streams of a workbench, ended together when its server stops.

    A page left open holds its event stream for ever; a server that waited
    for it would never stop (or only after its grace period, with a
    traceback). :meth:`close` ends every open stream cleanly (the response
    is finished, so the connection closes) and answers any later one 503.
    """

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()
        self.closed = False

    def close(self) -> None:
        """End every open stream now and refuse new ones."""
        self.closed = True
        for scope in list(self._scopes):
            scope.cancel()

    def _add(self, scope: anyio.CancelScope) -> None:
        self._scopes.add(scope)
        if self.closed:
            scope.cancel()

    def _discard(self, scope: anyio.CancelScope) -> None:
        self._scopes.discard(scope)


class _EventStreamResponse(StreamingResponse):
    """A text/event-stream response that :meth:`EventStreams.close` ends cleanly."""

    def __init__(self, content: AsyncIterator[bytes], streams: EventStreams) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self._streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._streams.closed:
            await error(503, "the server is stopping", "UNAVAILABLE")(scope, receive, send)
            return
        started = finished = False

        async def tracked(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        with anyio.CancelScope() as cancel:
            self._streams._add(cancel)
            try:
                await super().__call__(scope, receive, tracked)
            finally:
                self._streams._discard(cancel)
        if cancel.cancelled_caught and not finished:
            # Closed by the server: finish the response, so the connection ends normally.
            if not started:
                await error(503, "the server is stopping", "UNAVAILABLE")(scope, receive, send)
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})


class Workbench:
    """The endpoints over one store, and optionally an app and its trigger runner."""

    def __init__(self, state: Any, app: Any = None, triggers: Any = None, streams: EventStreams | None = None) -> None:
        self.state = state
        self.streams = streams if streams is not None else EventStreams()
        self.adapter = getattr(state, "adapter", state)
        self.app = app
        self._triggers = triggers

    @property
    def triggers(self) -> Any:
        """The trigger runner given, else the app's running one (it starts after the routes exist)."""
        return self._triggers if self._triggers is not None else getattr(self.app, "trigger_runner", None)

    # -- state ---------------------------------------------------------------------

    async def list_state(self, request: Request) -> Response:
        """``GET /state``: one page of entries, Motia's bare array, a Link to the next page."""
        query = request.query_params
        limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        group = query.get("groupId") or None
        if group is not None:
            _name(group, "groupId")
        predicate: Predicate | None = None
        raw_filter = query.get("filter")
        if raw_filter:
            raw = _json(raw_filter, "filter")
            predicate = parse_predicate(_motia_filter(raw), "filter", filter_fields=True, limits=self.adapter.limits)
        if query.get("key"):
            # One entry (the page refreshes the one it shows): group and key both given.
            key = _name(query["key"], "key")
            if group is None:
                raise InvalidArgumentError("key needs groupId")
            present, value = await self._read(group, key)
            holds = predicate is None or predicate_holds(predicate, value)
            return json([_entry(group, key, value)] if present and holds else [])
        after = _decode_cursor(query["cursor"]) if query.get("cursor") else None
        search = (query.get("search") or "").lower()
        if search:
            page, position = await self._search(after, limit, group, predicate, search)
        else:
            page, position = await self.adapter.scan(after, limit=limit, group=group, where=predicate)
        headers = {}
        if position is not None:
            params = [(k, v) for k, v in query.multi_items() if k != "cursor"]
            params.append(("cursor", _encode_cursor(position)))
            headers["Link"] = f'<{request.url.path}?{urlencode(params)}>; rel="next"'
        return json([_entry(g, k, v) for g, k, v in page], headers=headers)

    async def _search(
        self, after: tuple[str, str] | None, limit: int, group: str | None, where: Predicate | None, text: str
    ) -> tuple[list[tuple[str, str, Any]], tuple[str, str] | None]:
        # Group/key text search: pages of the plain listing, kept when the
        # names hold the text (the adapters filter on values, not names).
        found: list[tuple[str, str, Any]] = []
        position = after
        for _ in range(100):
            page, position = await self.adapter.scan(position, limit=max(limit, 500), group=group, where=where)
            for g, k, v in page:
                if text in g.lower() or text in k.lower():
                    found.append((g, k, v))
                    if len(found) >= limit:
                        return found, (g, k)
            if position is None:
                return found, None
        return found, position

    async def post_state(self, request: Request) -> Response:
        """``POST /state``: a set (guarded by ``expectedVersion``) or one operation."""
        body = _fields(await _body(request))
        group = _name(body.get("groupId"), "groupId")
        key = _name(body.get("key"), "key")
        if "operation" in body:
            return await self._operation(group, key, body)
        if "value" not in body:
            raise InvalidArgumentError("a set needs 'value' (or 'operation' for an operation)")
        value = body["value"]
        expected = body.get("expectedVersion")
        if expected is None:
            stored = await self.state.set(group, key, value)
            return json({"groupId": group, "key": key, "value": stored, "version": entry_version(stored)})
        if type(expected) is not str:
            raise InvalidArgumentError("expectedVersion must be a string (a version this API gave)")
        return await self._guarded_set(group, key, value, expected)

    async def _read(self, group: str, key: str) -> tuple[bool, Any]:
        result = await self.state.transaction(group, [{"type": "exists", "key": key}, {"type": "get", "key": key}])
        return bool(result.results[0]), result.results[1]

    async def _guarded_set(self, group: str, key: str, value: Any, expected: str) -> Response:
        # A compareAndSwap against the value the version was taken of: the
        # version alone cannot be compared inside the store.
        for _ in range(16):
            present, current = await self._read(group, key)
            if not present or entry_version(current) != expected:
                now = {"value": current, "version": entry_version(current)} if present else None
                return error(
                    409,
                    f"{key!r} changed since version {expected} was read"
                    if present
                    else f"{key!r} was deleted since version {expected} was read",
                    "CONFLICT",
                    current=now,
                )
            outcome = await self.state.transaction(
                group,
                [
                    {"type": "check", "key": key, "op": "exists"},
                    {"type": "check", "key": key, "op": "eq", "value": current},
                    {"type": "set", "key": key, "value": value},
                ],
            )
            if outcome.success:
                stored = outcome.results[2]
                return json({"groupId": group, "key": key, "value": stored, "version": entry_version(stored)})
            if outcome.code != "CONFLICT":
                raise _error(outcome)
        raise UnavailableError(f"{key!r} kept changing; try again")

    async def _operation(self, group: str, key: str, body: dict[str, Any]) -> Response:
        operation = body["operation"]
        if type(operation) is not str:
            raise InvalidArgumentError("operation must be a string")
        run = _OPERATIONS.get(operation)
        if run is None:
            raise InvalidArgumentError(f"unknown operation {operation!r}; one of {', '.join(sorted(_OPERATIONS))}")
        args = body.get("value", {})
        if args is None:
            args = {}
        if type(args) is not dict:
            raise InvalidArgumentError(f"value of operation {operation!r} must be an object of its arguments")
        result = await run(self.state, group, key, args)
        return json({"groupId": group, "key": key, "operation": operation, "result": _wire(result)})

    async def delete_state(self, request: Request) -> Response:
        """``POST /state/delete``: ``{"items": [...]}`` or Motia's ``{"ids": ["group:key"]}``."""
        body = _fields(await _body(request))
        targets: list[tuple[str, str]] = []
        if "items" in body:
            items = body["items"]
            if type(items) is not list:
                raise InvalidArgumentError("items must be an array of {groupId, key}")
            for i, item in enumerate(items):
                if type(item) is not dict:
                    raise InvalidArgumentError(f"items[{i}] must be an object {{groupId, key}}")
                targets.append((_name(item.get("groupId"), "groupId"), _name(item.get("key"), "key")))
        elif "ids" in body:
            ids = body["ids"]
            if type(ids) is not list:
                raise InvalidArgumentError("ids must be an array of 'group:key' strings")
            for i, raw in enumerate(ids):
                targets.append(await self._split_id(raw, i))
        else:
            raise InvalidArgumentError("the body needs 'items' (or 'ids')")
        for group, key in targets:
            await self.state.delete(group, key)
        return Response(status_code=204)

    async def _split_id(self, raw: Any, index: int) -> tuple[str, str]:
        if type(raw) is not str or ":" not in raw:
            raise InvalidArgumentError(f"ids[{index}] must be a string 'group:key'")
        splits = [(raw[:i], raw[i + 1 :]) for i, c in enumerate(raw) if c == ":" and 0 < i < len(raw) - 1]
        if not splits:
            raise InvalidArgumentError(f"ids[{index}] {raw!r} names no group and key")
        first = splits[0]
        _name(first[0], "groupId")
        others = []
        for group, key in splits[1:]:
            if not is_reserved_group(group) and await self.state.exists(group, key):
                others.append(f"{group!r}/{key!r}")
        if others:
            raise _Ambiguous(
                f"ids[{index}] {raw!r} is ambiguous: it also names {', '.join(others)}; "
                "send {'items': [{'groupId', 'key'}]} instead"
            )
        return first

    # -- history and the change stream ------------------------------------------

    def _feed(self, name: str) -> Callable[..., Any]:
        method = getattr(self.state, name, None)
        if method is None:
            raise UnavailableError(f"this store has no change feed ({name} is not available)")
        return method  # type: ignore[no-any-return]

    async def history(self, request: Request) -> Response:
        """``GET /state/history``: the entry's feed records, newest first."""
        group = _name(request.query_params.get("groupId"), "groupId")
        key = _name(request.query_params.get("key"), "key")
        limit = _int_param(request, "limit", 100, 1, MAX_LIMIT)
        changes = await self._feed("history")(group, key, limit=limit)
        return json({"changes": [_wire(c) for c in changes]})

    async def changes(self, request: Request) -> Response:
        """``GET /state/changes``: server-sent events, one per feed record, live."""
        after = request.headers.get("last-event-id") or request.query_params.get("after") or "now"
        groups = request.query_params.getlist("groupId") or None
        stream = self._feed("changes")(after, groups=groups, follow=True)

        async def events() -> AsyncIterator[bytes]:
            # A comment first, so the client sees the stream open at once.
            yield b": motia-state change stream\n\n"
            try:
                async for change in stream:
                    wire = _wire(change)
                    yield b"event: change\nid: " + wire["cursor"].encode() + b"\ndata: " + json_bytes(wire) + b"\n\n"
            except StateError as e:
                yield b"event: error\ndata: " + json_bytes({"error": e.message, "code": e.code}) + b"\n\n"
            finally:
                close = getattr(stream, "aclose", None)
                if close is not None:
                    # Also when the stream was cancelled: release the feed (bounded, a stop must not hang on it).
                    with anyio.CancelScope(deadline=anyio.current_time() + 5, shield=True):
                        await close()

        return _EventStreamResponse(events(), self.streams)

    async def feed_info(self, request: Request) -> Response:
        """``GET /state/feed``: the feed's first and last cursor and how many records it keeps."""
        return json(await self._feed("feed_info")())

    # -- steps and triggers ---------------------------------------------------------

    def _need_app(self) -> Any:
        if self.app is None:
            raise UnavailableError("no app is running here (motia-state workbench serves a store alone)")
        return self.app

    async def steps(self, request: Request) -> Response:
        """``GET /steps``: the app's steps (an empty list when serving a store alone)."""
        if self.app is None:
            return json([])
        return json([_step_wire(name, record) for name, record in sorted(self.app.steps.items())])

    async def invoke(self, request: Request) -> Response:
        """``POST /steps/{name}/invoke``: run one step with ``data``; its result or its error."""
        app = self._need_app()
        name = request.path_params["name"]
        if name not in app.steps:
            raise NotFoundError(f"no step named {name!r}")
        body = _fields(await _body(request))
        trace = body.get("traceId")
        if trace is not None and type(trace) is not str:
            raise InvalidArgumentError("traceId must be a string")
        logs = _StepLogs(name)
        step_logger = logging.getLogger(STEP_LOGGER)
        step_logger.addHandler(logs)
        try:
            result = await app.invoke(name, body.get("data"), trace_id=trace)
        except StateError as e:
            return error(STATUS_BY_CODE.get(e.code, 500), e.message, e.code, logs=logs.lines)
        finally:
            step_logger.removeHandler(logs)
        return json({"result": result, "logs": logs.lines})

    def _trigger_store(self) -> TriggerStore | None:
        """The store's trigger layout when no trigger runner runs in this process (None when the store keeps none).

        Read from the store, the triggers are those every runtime that used
        it registered, running now or not (the standalone workbench, or an
        app whose triggers have not started).
        """
        if self.triggers is not None:
            return None
        try:
            return TriggerStore(self.adapter)
        except InvalidArgumentError:  # a store with no internal handle keeps no trigger positions
            return None

    async def list_triggers(self, request: Request) -> Response:
        """``GET /triggers``: each state trigger's lag and dead letters, and the app's event dead letters."""
        out: list[dict[str, Any]] = []
        store = self._trigger_store()
        if self.triggers is not None:
            status = self.triggers.status()
            items = status.items() if isinstance(status, dict) else ((s.get("name"), s) for s in status)
            for name, info in items:
                row = {"name": name, "kind": "state", **_plain(info)}
                row["dead"] = [_plain(d) for d in self.triggers.dead_letters(name)]
                out.append(row)
        elif store is not None:
            for name in await store.names():
                row = {"name": name, "kind": "state", **await store.status(name)}
                row["dead"] = await _stored_dead(store, name)
                out.append(row)
        if self.app is not None and hasattr(self.app, "dead_letters"):
            out.append({"name": "events", "kind": "events", "dead": [_plain(d) for d in self.app.dead_letters()]})
        return json({"triggers": out, "running": self.triggers is not None})

    async def retry_dead(self, request: Request) -> Response:
        """``POST /triggers/{name}/dead/{id}/retry``: run a dead letter again (or ask a running runtime to)."""
        return await self._retry(request.path_params["name"], request.path_params["id"])

    async def drop_dead(self, request: Request) -> Response:
        """``DELETE /triggers/{name}/dead/{id}``: forget a dead letter."""
        await self._dead_action(request.path_params["name"], request.path_params["id"], "drop")
        return Response(status_code=204)

    async def _retry(self, name: str, dead: str) -> Response:
        outcome = await self._dead_action(name, dead, "retry")
        if isinstance(outcome, Response):
            return outcome
        return json({"retried": True, "succeeded": bool(outcome)})

    async def _dead_action(self, name: str, dead: str, action: str) -> Any:
        if self.triggers is not None and _has_trigger(self.triggers, name):
            outcome = getattr(self.triggers, action)(name, dead)
        elif name == "events" and self.app is not None:
            outcome = (self.app.retry_dead_letter if action == "retry" else self.app.drop_dead_letter)(dead)
        elif (store := self._trigger_store()) is not None:
            await store.require(name)
            if action == "retry":
                return await _stored_retry(store, name, dead)
            return await store.drop(name, dead)
        elif self.triggers is None and self.app is None:
            raise UnavailableError("no app or trigger runner is running here")
        else:
            raise NotFoundError(f"no trigger named {name!r}")
        return await outcome if isinstance(outcome, Awaitable) else outcome

    # -- every state trigger's dead letters by id (served alone; an app serves its own) --------------

    async def _state_dead(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        store = self._trigger_store()
        if self.triggers is not None:
            for status in self.triggers.status():
                name = status["name"] if isinstance(status, dict) else status
                out.extend({"kind": "state", **_plain(d)} for d in self.triggers.dead_letters(name))
        elif store is not None:
            for name in await store.names():
                out.extend({"kind": "state", **d} for d in await _stored_dead(store, name))
        return out

    async def _holding(self, dead_id: str) -> str:
        for dead in await self._state_dead():
            if dead.get("id") == dead_id:
                return str(dead["trigger"])
        raise NotFoundError(f"no dead letter {dead_id!r}")

    async def dead_letters(self, request: Request) -> Response:
        """``GET /dead-letters``: every state trigger's dead letters, ``"kind": "state"`` (as an app lists them)."""
        return json(await self._state_dead())

    async def retry_dead_by_id(self, request: Request) -> Response:
        """``POST /dead-letters/{id}/retry``: retry the state trigger dead letter with that id."""
        dead = request.path_params["id"]
        return await self._retry(await self._holding(dead), dead)

    async def drop_dead_by_id(self, request: Request) -> Response:
        """``DELETE /dead-letters/{id}``: forget the state trigger dead letter with that id."""
        dead = request.path_params["id"]
        await self._dead_action(await self._holding(dead), dead, "drop")
        return Response(status_code=204)

    # -- the session and the page ------------------------------------------------------


async def _stored_dead(store: TriggerStore, name: str) -> list[dict[str, Any]]:
    """A stored trigger's dead letters as a runner lists them, each with the state of a retry asked for it."""
    out = []
    for dead in await store.dead_letters(name):
        request = await store.retry_request(name, dead.id)
        out.append({**dead.as_dict(), "retry": request.get("state") if isinstance(request, dict) else None})
    return out


async def _stored_retry(store: TriggerStore, name: str, dead: str) -> Response:
    """Ask the runtimes running a trigger for a retry; its outcome when one ran it in time, else 202 "queued".

    No runtime runs here: a runtime running the trigger claims the request
    within its lease renewal, and with none running it waits for the next
    one that starts. The answer never claims a run that did not happen.
    """
    request: Any = await store.request_retry(name, dead)
    runtimes = len(await store.live_members(name))
    if runtimes:
        request = await store.await_retry(name, dead, request, RETRY_WAIT, RETRY_POLL)
    if isinstance(request, dict) and request.get("state") == "gone":
        why = "the dead letter left the list meanwhile (a retry made elsewhere succeeded, or it was dropped)"
        return json({"retried": False, "gone": True, "trigger": name, "id": dead, "why": why})
    if retry_finished(request):
        answer: dict[str, Any] = {"retried": True, "succeeded": request["state"] == "succeeded"}
        if request.get("error"):
            answer["error"] = request["error"]
        return json(answer)
    state = request.get("state") if isinstance(request, dict) else None
    if runtimes:
        why = f"{runtimes} runtime(s) run trigger {name!r} but none finished the retry within {RETRY_WAIT:g} s"
    else:
        why = f"no runtime runs trigger {name!r} now: the retry runs when one starts"
    return json(
        {
            "retried": False,
            "queued": True,
            "trigger": name,
            "id": dead,
            "state": state,
            "runtimes": runtimes,
            "why": why,
        },
        status=202,
    )


def _has_trigger(triggers: Any, name: str) -> bool:
    status = triggers.status()
    if isinstance(status, dict):
        return name in status
    return any(getattr(s, "get", lambda _k: None)("name") == name for s in status)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    as_dict = getattr(value, "as_dict", None)
    if callable(as_dict):
        return as_dict()
    return _wire(value)


def _step_wire(name: str, record: Any) -> dict[str, Any]:
    config = getattr(record, "config", record)
    file = str(getattr(config, "file", ""))
    language = {".py": "python", ".js": "node", ".cjs": "node", ".mjs": "node", ".ts": "node", ".rb": "ruby"}.get(
        Path(file).suffix, "unknown"
    )
    triggers = []
    for trigger in getattr(config, "triggers", ()):
        as_dict = getattr(trigger, "as_dict", None)
        triggers.append(as_dict() if callable(as_dict) else _plain(trigger))
    return {
        "name": name,
        "file": file,
        "language": language,
        "description": getattr(config, "description", None),
        "triggers": triggers,
        "flows": list(getattr(config, "flows", ())),
        "emits": list(getattr(config, "emits", ())),
        "workers": getattr(config, "max_workers", None),
    }


class _StepLogs(logging.Handler):
    """The log lines one step writes while the workbench invokes it (as the app logs them)."""

    def __init__(self, step: str) -> None:
        super().__init__(logging.DEBUG)
        self.prefix = f"[{step}] "
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(self.prefix) and len(self.lines) < 1000:
            self.lines.append(
                {"level": record.levelname.lower(), "msg": message[len(self.prefix) :], "at": record.created}
            )


class _Ambiguous(StateError):
    code = "CONFLICT"


def _error(result: Any) -> StateError:
    return error_for_code(result.code or "INTERNAL", result.error or "failed")


def json_bytes(value: Any) -> bytes:
    """Compact JSON bytes of a value."""
    return msgspec.json.encode(value)


# -- operations: Motia's names and argument objects ---------------------------------

_Run = Callable[[Any, str, str, dict[str, Any]], Awaitable[Any]]


def _arg(args: dict[str, Any], name: str, operation: str) -> Any:
    if name not in args:
        raise InvalidArgumentError(f"operation {operation!r} needs value.{name}")
    return args[name]


def _delta(args: dict[str, Any]) -> Any:
    # A delta of 0 is 0: only a missing delta defaults to 1.
    return args.get("delta", 1)


def _items(args: dict[str, Any], operation: str) -> list[Any]:
    items = _arg(args, "items", operation)
    if type(items) is not list:
        raise InvalidArgumentError(f"value.items of {operation!r} must be an array")
    return items


def _records(args: dict[str, Any], operation: str) -> list[Any]:
    records = _arg(args, "operations", operation)
    if type(records) is not list:
        raise InvalidArgumentError(f"value.operations of {operation!r} must be an array of records")
    return records


_OPERATIONS: Final[dict[str, _Run]] = {
    "get": lambda s, g, k, a: s.get(g, k),
    "exists": lambda s, g, k, a: s.exists(g, k),
    "delete": lambda s, g, k, a: s.delete(g, k),
    "pop": lambda s, g, k, a: s.pop(g, k),
    "shift": lambda s, g, k, a: s.shift(g, k),
    "increment": lambda s, g, k, a: s.increment(g, k, _delta(a)),
    "decrement": lambda s, g, k, a: s.decrement(g, k, _delta(a)),
    "push": lambda s, g, k, a: s.push(g, k, *_items(a, "push")),
    "unshift": lambda s, g, k, a: s.unshift(g, k, *_items(a, "unshift")),
    "setField": lambda s, g, k, a: s.set_field(g, k, _arg(a, "field", "setField"), _arg(a, "fieldValue", "setField")),
    "deleteField": lambda s, g, k, a: s.delete_field(g, k, _arg(a, "field", "deleteField")),
    "compareAndSwap": lambda s, g, k, a: s.compare_and_swap(
        g, k, a.get("expected"), _arg(a, "newValue", "compareAndSwap")
    ),
    "transaction": lambda s, g, k, a: s.transaction(g, _records(a, "transaction")),
    "batch": lambda s, g, k, a: s.batch(g, _records(a, "batch")),
}


# -- assembling the routes --------------------------------------------------------------


def _handled(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        try:
            return await endpoint(request)
        except StateError as e:
            return from_state_error(e)
        except Exception:
            # Never a stack trace on the wire; the log has it.
            log.exception("workbench endpoint %s failed", request.url.path)
            return error(500, "internal error (see the server's log)", "INTERNAL")

    handle.__name__ = endpoint.__name__
    return handle


#: The page's headers. No other site may frame it: framed, its own requests carry its own Origin,
#: so a page of another site could have a person click its buttons (edit, delete) unawares.
PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def _page_html(request: Request, guard: Guard) -> str:
    base = request.scope.get("root_path", "") + "/"
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    return html.replace("<!--BASE-->", f'<base href="{base}">').replace(
        "__TOKEN_NEEDED__", "true" if guard.token else "false"
    )


def workbench_routes(
    state: Any,
    app: Any = None,
    triggers: Any = None,
    token: str | None = None,
    allowed_hosts: Collection[str] = (),
    streams: EventStreams | None = None,
) -> list[BaseRoute]:
    """The workbench's routes, relative to where they are mounted (``/__motia``).

    ``state`` is a StateManager (or an adapter); ``app`` an App (its steps,
    ``invoke`` and event dead letters) and ``triggers`` a TriggerRunner, each
    optional: their endpoints answer 503 UNAVAILABLE (or an empty list)
    without them. ``token`` guards every endpoint (Bearer header or the
    session cookie of ``POST /session``); ``allowed_hosts`` adds Host names
    to the loopback ones. ``streams`` collects the open change streams, so
    that the server can end them when it stops (:meth:`EventStreams.close`).
    """
    bench = Workbench(state, app, triggers, streams)
    guard = Guard(token, allowed_hosts)
    by_id: list[BaseRoute] = []

    def route(path: str, endpoint: Callable[[Request], Awaitable[Response]], method: str) -> Route:
        write = method in ("POST", "DELETE", "PUT", "PATCH")
        return Route(path, guard.wrap(_handled(endpoint), write=write), methods=[method])

    async def page(request: Request) -> Response:
        denied = guard.refuse_origin(request)
        return denied or HTMLResponse(_page_html(request, guard), headers=PAGE_HEADERS)

    async def asset(request: Request) -> Response:
        denied = guard.refuse_origin(request)
        if denied is not None:
            return denied
        name = request.path_params["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or path.suffix not in _STATIC_TYPES or not path.is_file():
            return error(404, f"no asset {name!r}", "NOT_FOUND")
        return FileResponse(path, media_type=_STATIC_TYPES[path.suffix])

    async def session(request: Request) -> Response:
        denied = guard.refuse_origin(request)
        if denied is not None:
            return denied
        if guard.token is None:
            return Response(status_code=204)
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            return error(415, "a write needs 'Content-Type: application/json'", "UNSUPPORTED_MEDIA_TYPE")
        try:
            body = _fields(await _body(request))
        except StateError as e:
            return from_state_error(e)
        given = body.get("token")
        if type(given) is not str or not guard.check_token(given):
            return error(401, "wrong token", "UNAUTHORIZED")
        response = Response(status_code=204)
        response.set_cookie(
            SESSION_COOKIE,
            guard.session_value or "",
            httponly=True,
            samesite="strict",
            path=request.scope.get("root_path", "") + "/" if request.scope.get("root_path") else "/",
        )
        return response

    if app is None:
        # An app serves /dead-letters itself (its events' and its triggers'); alone, the triggers' are here.
        by_id = [
            route("/dead-letters", bench.dead_letters, "GET"),
            route("/dead-letters/{id}/retry", bench.retry_dead_by_id, "POST"),
            route("/dead-letters/{id}", bench.drop_dead_by_id, "DELETE"),
        ]
    return [
        Route("/", page, methods=["GET"]),
        Route("/static/{name}", asset, methods=["GET"]),
        Route("/session", session, methods=["POST"]),
        route("/state", bench.list_state, "GET"),
        route("/state", bench.post_state, "POST"),
        route("/state/delete", bench.delete_state, "POST"),
        route("/state/history", bench.history, "GET"),
        route("/state/changes", bench.changes, "GET"),
        route("/state/feed", bench.feed_info, "GET"),
        route("/steps", bench.steps, "GET"),
        route("/steps/{name:path}/invoke", bench.invoke, "POST"),  # a step name may hold a slash
        route("/triggers", bench.list_triggers, "GET"),
        route("/triggers/{name:path}/dead/{id}/retry", bench.retry_dead, "POST"),
        route("/triggers/{name:path}/dead/{id}", bench.drop_dead, "DELETE"),
        *by_id,
    ]


def workbench_app(
    state: Any,
    app: Any = None,
    triggers: Any = None,
    token: str | None = None,
    allowed_hosts: Collection[str] = (),
    streams: EventStreams | None = None,
) -> Starlette:
    """A Starlette application serving the workbench alone under ``/__motia`` (arguments as :func:`workbench_routes`)."""
    routes = workbench_routes(state, app, triggers, token, allowed_hosts, streams)
    return Starlette(routes=[Mount(PREFIX, routes=routes)], exception_handlers=dict(EXCEPTION_HANDLERS))
