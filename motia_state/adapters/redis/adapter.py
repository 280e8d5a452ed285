"""``RedisStateAdapter``: state in Redis (or Redis Cluster), shared by every runtime that points at it.

Layout: each group is one Redis hash, ``<key_prefix>{<group>}``, whose fields
are the group's keys and whose values are the entries' compact JSON text.
The group is the key's hash tag, so in Redis Cluster a group lives in one
slot and every program call (which touches only that hash) is legal there.
``{``, ``}`` and ``%`` in a group name are percent-escaped inside the tag;
any string is a valid name and none becomes part of another group's key.

Atomicity: every operation, transaction and batch is one call of the Lua
program (``ops.lua`` through :class:`~.program.LuaProgram`) that reads,
checks everything, then writes. The program is the server-side twin of
``ops.py`` and works on the JSON text itself: values never pass through
Lua's cjson, so integers past 2^53, ``[]`` and float formatting come back
exactly as stored. Only ``update`` (a Python function) cannot run on the
server: it is an optimistic get + compare-and-swap loop, and a transaction
or batch holding ``update`` records is computed in Python and committed by
the program's "commit" mode, which first checks that every key it read is
unchanged.

Every failure of Redis, of the client library or of decoding a stored text
is translated at one boundary (:meth:`RedisStateAdapter._boundary`): no
redis-py or msgspec exception reaches a caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, TypeVar

import msgspec

from ...errors import (
    ConflictError,
    InternalError,
    InvalidArgumentError,
    LimitExceededError,
    StateError,
    UnavailableError,
    error_for_code,
)
from ...ops import parse_transaction, run_batch, run_transaction
from ...records import (
    BatchItemResult,
    BatchResult,
    StateChange,
    StateOperation,
    TransactionResult,
    parse_operations,
    record_id,
)
from ...values import (
    DEFAULT_LIMITS,
    MISSING,
    RESERVED_PREFIX,
    CheckedNames,
    Limits,
    check_delta,
    check_field,
    check_name,
    import_value,
)
from ..base import ChangeSink, StateAdapter, UpdateFn, _negate, backoff
from .program import LuaProgram

__all__ = ["OCC_RETRIES", "RedisStateAdapter"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

#: How often a transaction holding ``update`` records retries its commit.
OCC_RETRIES: Final = 64

#: The longest ``ttl`` (about 317 years): its milliseconds must fit Redis's clock arithmetic.
MAX_TTL: Final = 1e10
#: The longest ``timeout``: a day, far beyond any useful reply time.
MAX_TIMEOUT: Final = 86_400.0

# Redis errors that mean "not now" rather than "a bug".
_TRANSIENT: Final = ("LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "OOM", "BUSY", "NOREPLICAS")


def _redis() -> Any:
    try:
        import redis.asyncio
        import redis.backoff
        import redis.exceptions
        import redis.retry
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise UnavailableError(
            "the Redis adapter needs redis-py: install the extra with pip install 'motia-state[redis]'"
        ) from e
    return redis


def _is_seconds(value: object, most: float) -> bool:
    t = type(value)
    return (t is int or t is float) and 0 < value <= most  # type: ignore[operator]  # NaN fails both


def _check_url(url: object) -> None:
    """Refuse what redis-py would silently read otherwise (a database that is not a number is db 0)."""
    if not isinstance(url, str):
        raise InvalidArgumentError(f"url: expected a string, got {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        db = urllib.parse.unquote(parts.path)[1:]
        if db and not (db.isascii() and db.isdigit()):
            raise InvalidArgumentError(f"url: the database after the host must be a number, as in /0, got {url!r}")
    elif parts.scheme != "unix":
        raise InvalidArgumentError(f"url: expected redis://, rediss:// or unix://, got {url!r}")


def _escape_group(group: str) -> str:
    return group.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def _unescape_group(text: str) -> str:
    return text.replace("%7D", "}").replace("%7B", "{").replace("%25", "%")


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _failure(text: bytes) -> tuple[str, str]:
    """(code, message) of a script's ``!CODE message`` result."""
    code, _, message = text[1:].decode("utf-8", "replace").partition(" ")
    return code, message


def _results_too_large(size: int, limit: int) -> LimitExceededError:
    return LimitExceededError(f"the results would be {size} bytes encoded, larger than {limit}; nothing was stored")


_Result = TypeVar("_Result", TransactionResult, BatchResult)
_UNWRITTEN: Final = object()


class RedisStateAdapter(StateAdapter):
    """State in Redis (or Redis Cluster), shared by every runtime that points at it.

    ``url`` as redis-py understands it (``redis://``, ``rediss://``,
    ``unix://``); ``key_prefix`` namespaces applications sharing one Redis;
    ``ttl`` (seconds) expires a group that long after its last write;
    ``timeout`` bounds connecting and each reply, after which the operation
    fails with UNAVAILABLE. ``cluster=True`` treats ``url`` as any node of a
    Redis Cluster. ``client`` takes a ready ``redis.asyncio`` client instead
    of a URL (a configured ``RedisCluster``, for instance).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key_prefix: str = "motia:state:",
        ttl: float | None = None,
        timeout: float = 5.0,
        limits: Limits = DEFAULT_LIMITS,
        client: Any = None,
        cluster: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(key_prefix, str) or "{" in key_prefix or "}" in key_prefix:
            raise InvalidArgumentError(f"key_prefix: expected a string without '{{' or '}}', got {key_prefix!r}")
        if ttl is not None and not _is_seconds(ttl, MAX_TTL):
            raise InvalidArgumentError(
                f"ttl: expected a positive, finite number of seconds (at most {MAX_TTL:.0f}) or None, got {ttl!r}"
            )
        if not _is_seconds(timeout, MAX_TIMEOUT):
            raise InvalidArgumentError(
                f"timeout: expected a positive, finite number of seconds (at most {MAX_TIMEOUT:.0f}), got {timeout!r}"
            )
        if client is None:
            _check_url(url)
        redis = _redis()
        self.limits = limits
        self._names = CheckedNames(limits)
        self.url = url
        self.key_prefix = key_prefix
        self.ttl = ttl
        self._ttl_arg = str(max(1, round(ttl * 1000))) if ttl else "0"  # PEXPIRE: milliseconds
        self._errors = redis.exceptions
        # What a lost Redis looks like. A cluster client's own failures
        # (no reachable node, an uncovered slot) do not derive from RedisError.
        self._failures: tuple[type[Exception], ...] = (
            redis.exceptions.RedisError,
            redis.exceptions.RedisClusterException,
            OSError,
        )
        self._foreign = (*self._failures, msgspec.MsgspecError)
        if not isinstance(cluster, bool):
            raise InvalidArgumentError(f"cluster: expected true or false, got {cluster!r}")
        if client is None:
            # Ride over a blip, but never for long: two quick retries.
            retry = redis.retry.Retry(redis.backoff.ExponentialBackoff(cap=0.2, base=0.02), 2)
            try:
                if cluster:
                    client = redis.asyncio.RedisCluster.from_url(
                        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=retry
                    )
                else:
                    client = redis.asyncio.Redis.from_url(
                        url,
                        socket_connect_timeout=timeout,
                        socket_timeout=timeout,
                        retry=retry,
                        health_check_interval=30,
                    )
            except ValueError as e:
                raise InvalidArgumentError(f"url: {e}") from e
        self.client = client
        self._program = LuaProgram(client, redis.exceptions, functions=type(client) is redis.asyncio.Redis)
        self._max_result = limits.max_result_bytes
        self._headers = {
            (mode, sinks): f"{mode} {int(sinks)} {self._ttl_arg} {limits.max_value_bytes} {self._max_result}".encode()
            for mode in ("one", "tx", "batch", "commit", "clear")
            for sinks in (False, True)
        }
        self._hash_keys: dict[str, bytes] = {}
        self._closed = False
        #: The runtime's handle: reserved groups allowed, no change events.
        self.internal: RedisStateAdapter = _InternalRedis(self)

    # ------------------------------------------------------------- plumbing

    def hash_key(self, group: str) -> str:
        """The Redis key holding ``group`` (its hash tag is the escaped group)."""
        return f"{self.key_prefix}{{{_escape_group(group)}}}"

    def _key(self, group: str) -> bytes:
        # Encoded once per hot group: redis-py passes bytes through as they are.
        key = self._hash_keys.get(group)
        if key is None:
            if len(self._hash_keys) > 4096:  # bounded
                self._hash_keys.clear()
            key = self._hash_keys[group] = self.hash_key(group).encode()
        return key

    def _check(self, trace_id: Any, key: Any) -> None:
        self._names.check(trace_id, key)
        self._check_usable()

    def _check_group(self, group: Any) -> None:
        check_name(group, "traceId", self.limits)
        self._check_usable()

    #: Whether groups() leaves out the runtime's reserved groups.
    _hide_reserved = True

    def _check_usable(self) -> None:
        if self._closed:
            raise UnavailableError("the adapter is closed")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # redis-py's client is asyncio's: under trio it fails in ways
            # that look like an outage.
            raise InvalidArgumentError(
                "the Redis adapter runs on asyncio (redis-py's asyncio client) and no asyncio event loop is "
                "running here; under trio use the memory or file adapter"
            ) from None

    def _translate(self, e: Exception) -> StateError:
        """The state error for a failure of Redis, of redis-py or of decoding a stored text."""
        if isinstance(e, msgspec.MsgspecError):
            # Only texts read from Redis are decoded here: one that does not
            # decode was damaged or written by something else.
            return error_for_code("CORRUPT", f"a value stored in Redis at {self.url} cannot be read: {e}")
        errors = self._errors
        # redis-py turns some error codes into classes and drops the code
        # from the message ("CLUSTERDOWN ..." becomes ClusterDownError("The
        # cluster is down")), so transient ones are known by class or prefix.
        transient = (errors.ReadOnlyError, errors.ClusterError, errors.TryAgainError, errors.OutOfMemoryError)
        if isinstance(e, errors.ResponseError) and not (isinstance(e, transient) or str(e).startswith(_TRANSIENT)):
            return InternalError(f"Redis refused a command: {e}")
        return UnavailableError(f"Redis at {self.url} is unavailable: {type(e).__name__}: {e}")

    @contextlib.contextmanager
    def _boundary(self) -> Iterator[None]:
        """Translate whatever Redis, redis-py or msgspec raise inside into a StateError."""
        try:
            yield
        except self._foreign as e:
            raise self._translate(e) from e

    async def ping(self) -> None:
        """Check that Redis answers (UNAVAILABLE otherwise)."""
        self._check_usable()
        with self._boundary():
            await self.client.ping()

    async def _run(self, group: str, ops: Sequence[Any], mode: str) -> list[Any]:
        """Run encoded ops (4 slots each) on the server; raise a failure's error in mode "one"."""
        with self._boundary():
            reply = await self._program(self._key(group), self._headers[mode, bool(self._sinks)], *ops)
            return self._reply(group, reply, mode)

    def _reply(self, group: str, reply: Any, mode: str) -> list[Any]:
        """The result texts of a reply (publishing its changes); a failure raises in mode "one"."""
        if type(reply) is bytes:  # one operation, no events: "=result" or "!CODE message"
            if reply[:1] == b"=":
                return [reply[1:]]
            raise error_for_code(*_failure(reply))
        if reply[0] == b"TOO_LARGE":
            raise _results_too_large(int(reply[1]), self._max_result)
        if reply[0] == b"ERR":
            if mode == "one":
                raise error_for_code(reply[2].decode(), reply[3].decode("utf-8", "replace"))
            return list(reply)
        n = int(reply[1])
        if len(reply) > 2 + n:
            self._publish_changes(group, reply[2 + n :])
        return list(reply[2 : 2 + n])

    def _publish_changes(self, group: str, flat: list[Any]) -> None:
        changes = []
        for i in range(0, len(flat), 4):
            key, op, old, new = flat[i : i + 4]
            old_value = _decode(old) if old else MISSING
            new_value = _decode(new) if new else MISSING
            changes.append(StateChange.of(group, key.decode(), op.decode(), old_value, new_value))
        if changes:
            self._publish(changes)

    async def _one(self, group: str, *op: Any) -> Any:
        """One operation: ``op`` is (type, key, args...) with trailing empty slots left out."""
        (text,) = await self._run(group, op, "one")
        with self._boundary():
            return _decode(text)

    # --------------------------------------------------- single-entry ops

    async def get(self, trace_id: str, key: str) -> Any:
        self._check(trace_id, key)
        with self._boundary():
            text = await self.client.hget(self._key(trace_id), key)
            return None if text is None else _decode(text)

    async def exists(self, trace_id: str, key: str) -> bool:
        self._check(trace_id, key)
        with self._boundary():
            return bool(await self.client.hexists(self._key(trace_id), key))

    async def set(self, trace_id: str, key: str, value: Any) -> Any:
        self._check(trace_id, key)
        value = import_value(value, self.limits)
        await self._run(trace_id, (b"set", key.encode(), _encode(value)), "one")
        return value

    async def delete(self, trace_id: str, key: str) -> Any:
        self._check(trace_id, key)
        return await self._one(trace_id, b"delete", key.encode())

    async def increment(self, trace_id: str, key: str, delta: int | float = 1) -> int | float:
        self._check(trace_id, key)
        check_delta(delta)
        result: int | float = await self._one(trace_id, b"increment", key.encode(), _encode(delta))
        return result

    async def decrement(self, trace_id: str, key: str, delta: int | float = 1) -> int | float:
        self._check(trace_id, key)
        check_delta(delta)
        result: int | float = await self._one(trace_id, b"decrement", key.encode(), _encode(_negate(delta)))
        return result

    async def compare_and_swap(self, trace_id: str, key: str, expected: Any, new_value: Any) -> bool:
        self._check(trace_id, key)
        expected = import_value(expected, self.limits, "expected")
        new_value = import_value(new_value, self.limits, "newValue")
        return bool(await self._one(trace_id, b"compareAndSwap", key.encode(), _encode(expected), _encode(new_value)))

    async def _swap_for_update(self, trace_id: str, key: str, expected: Any, new_value: Any) -> bool:
        # The Lua "update" is compareAndSwap under the name its change event carries.
        return bool(await self._one(trace_id, b"update", key.encode(), _encode(expected), _encode(new_value)))

    async def push(self, trace_id: str, key: str, *items: Any) -> list[Any]:
        self._check(trace_id, key)
        copied = import_value(list(items), self.limits, "items")
        result: list[Any] = await self._one(trace_id, b"push", key.encode(), _encode(copied)[1:-1])
        return result

    async def unshift(self, trace_id: str, key: str, *items: Any) -> list[Any]:
        self._check(trace_id, key)
        copied = import_value(list(items), self.limits, "items")
        result: list[Any] = await self._one(trace_id, b"unshift", key.encode(), _encode(copied)[1:-1])
        return result

    async def pop(self, trace_id: str, key: str) -> Any:
        self._check(trace_id, key)
        return await self._one(trace_id, b"pop", key.encode())

    async def shift(self, trace_id: str, key: str) -> Any:
        self._check(trace_id, key)
        return await self._one(trace_id, b"shift", key.encode())

    async def set_field(self, trace_id: str, key: str, field: str, value: Any) -> dict[str, Any]:
        self._check(trace_id, key)
        check_field(field)
        value = import_value(value, self.limits, nested=1)  # one level below the stored object
        result: dict[str, Any] = await self._one(trace_id, b"setField", key.encode(), _encode(field), _encode(value))
        return result

    async def delete_field(self, trace_id: str, key: str, field: str) -> dict[str, Any]:
        self._check(trace_id, key)
        check_field(field)
        result: dict[str, Any] = await self._one(trace_id, b"deleteField", key.encode(), _encode(field))
        return result

    async def update(self, trace_id: str, key: str, fn: UpdateFn) -> Any:
        """Store ``fn(current)``: no code runs on the server, so get + compare-and-swap, retried."""
        self._check(trace_id, key)
        if inspect.iscoroutinefunction(fn):
            return await self._optimistic_update(trace_id, key, fn)

        async def call(value: Any) -> Any:
            return fn(value)

        return await self._optimistic_update(trace_id, key, call)

    # ------------------------------------------------------------ group ops

    async def get_group(self, group_id: str) -> list[Any]:
        self._check_group(group_id)
        with self._boundary():
            entries = await self.client.hgetall(self._key(group_id))
            decoded = {k.decode(): v for k, v in entries.items()}
            return [_decode(decoded[k]) for k in sorted(decoded)]

    async def keys(self, trace_id: str) -> list[str]:
        self._check_group(trace_id)
        with self._boundary():
            names = await self.client.hkeys(self._key(trace_id))
        return sorted(k.decode() for k in names)

    async def groups(self) -> list[str]:
        """Every non-empty group: SCAN over this prefix (never KEYS), so it does not block Redis."""
        self._check_usable()
        pattern = _glob_escape(self.key_prefix) + "{*}"
        found: set[str] = set()
        start = len(self.key_prefix) + 1

        async def scan() -> None:
            async for name in self.client.scan_iter(match=pattern, count=1000, _type="hash"):
                found.add(_unescape_group(name.decode()[start:-1]))

        with self._boundary():
            await scan()
        if self._hide_reserved:
            return sorted(g for g in found if not g.startswith(RESERVED_PREFIX))
        return sorted(found)

    async def clear(self, trace_id: str) -> None:
        self._check_group(trace_id)
        with self._boundary():
            if not self._sinks:
                await self.client.delete(self._key(trace_id))
                return
            flat = await self._program(self._key(trace_id), self._headers["clear", True])
            pairs = sorted((flat[i].decode(), _decode(flat[i + 1])) for i in range(0, len(flat), 2))
        if pairs:
            self._publish([StateChange(trace_id, k, "clear", "deleted", v, None) for k, v in pairs])

    # ------------------------------------------------ transactions, batches

    def _encode_ops(self, ops: list[StateOperation]) -> list[Any]:
        flat: list[Any] = []
        for op in ops:
            flat += self._encode_op(op)
        return flat

    def _encode_op(self, op: StateOperation) -> list[Any]:
        t = op.type
        if t in ("get", "delete", "exists", "pop", "shift"):
            return [t, op.key, b"", b""]
        if t == "set":
            return [t, op.key, _encode(op.value), b""]
        if t == "increment":
            return [t, op.key, _encode(op.delta), b""]
        if t == "decrement":
            return [t, op.key, _encode(_negate(op.delta)), b""]
        if t == "compareAndSwap":
            return [t, op.key, _encode(op.expected), _encode(op.value)]
        if t in ("push", "unshift"):
            return [t, op.key, _encode(op.items)[1:-1], b""]
        if t == "setField":
            return [t, op.key, _encode(op.field), _encode(op.value)]
        if t == "deleteField":
            return [t, op.key, _encode(op.field), b""]
        if t == "check":
            return [t, op.key, _encode(op.predicate), b""]
        raise InternalError(f"no server-side form for {t!r}")  # update is handled before

    async def transaction(self, trace_id: str, operations: Sequence[Any]) -> TransactionResult:
        self._check_group(trace_id)
        parsed = parse_transaction(operations, self.limits)
        if isinstance(parsed, TransactionResult):
            return parsed
        if not parsed:
            return TransactionResult(success=True, results=[])
        if any(op.type == "update" for op in parsed):
            return await self._optimistic_transaction(trace_id, parsed)
        reply = await self._run(trace_id, self._encode_ops(parsed), "tx")
        if reply and reply[0] == b"ERR":
            return TransactionResult.failed(int(reply[1]), reply[3].decode("utf-8", "replace"), reply[2].decode())
        with self._boundary():
            return TransactionResult(success=True, results=[_decode(t) for t in reply])

    async def batch(self, trace_id: str, operations: Sequence[Any]) -> BatchResult:
        """Each record on its own, in one program call (update records: computed here, committed there)."""
        self._check_group(trace_id)
        ops = parse_operations(operations, limits=self.limits, collect=True)
        if any(isinstance(op, StateOperation) and op.type == "update" for op in ops):
            return await self._optimistic_batch(trace_id, ops)
        valid = [op for op in ops if isinstance(op, StateOperation)]
        texts = iter(await self._run(trace_id, self._encode_ops(valid), "batch") if valid else ())
        items: list[BatchItemResult] = []
        for op in ops:
            if isinstance(op, StateError):
                items.append(BatchItemResult.from_error(op, record_id(op)))
                continue
            text = next(texts)
            if text[:1] == b"=":
                try:
                    items.append(BatchItemResult(id=record_id(op), value=_decode(text[1:])))
                except msgspec.MsgspecError as e:  # this item's value only: the others stand
                    items.append(BatchItemResult.from_error(self._translate(e), record_id(op)))
            else:
                code, message = _failure(text)
                items.append(BatchItemResult(id=record_id(op), error=message, code=code))
        return BatchResult(results=items)

    # Transactions and batches holding update records run their Python
    # functions here, on what was read, and commit through the program's
    # "commit" mode, which writes only if no key read has moved since.

    async def _optimistic_transaction(self, trace_id: str, ops: list[StateOperation]) -> TransactionResult:
        """A transaction with Python ``update`` fns: read, run in Python, commit if nothing moved."""

        def compute(read: dict[str, Any]) -> tuple[TransactionResult, dict[str, Any], list[StateChange]]:
            result, staged = run_transaction(ops, read.__getitem__, self.limits)
            changes = [
                StateChange.of(trace_id, key, op, read[key], new)
                for key, (op, new) in staged.items()
                if not (new is MISSING and read[key] is MISSING)
            ]
            return result, {key: new for key, (_, new) in staged.items()}, changes

        return await self._optimistic("transaction", trace_id, [op.key for op in ops], compute)

    async def _optimistic_batch(self, trace_id: str, ops: list[StateOperation | StateError]) -> BatchResult:
        """A batch with Python ``update`` fns: each record on its own, on what was read; one commit."""
        keys = [op.key for op in ops if isinstance(op, StateOperation)]

        def compute(read: dict[str, Any]) -> tuple[BatchResult, dict[str, Any], list[StateChange]]:
            result, writes = run_batch(ops, read.__getitem__, self.limits)
            current = dict(read)
            changes: list[StateChange] = []
            for key, op, new in writes:
                if not (new is MISSING and current[key] is MISSING):
                    changes.append(StateChange.of(trace_id, key, op, current[key], new))
                current[key] = new
            return result, {key: current[key] for key, _, _ in writes}, changes

        return await self._optimistic("batch", trace_id, keys, compute)

    async def _optimistic(
        self,
        what: str,
        trace_id: str,
        keys: list[str],
        compute: Callable[[dict[str, Any]], tuple[_Result, dict[str, Any], list[StateChange]]],
    ) -> _Result:
        """Read ``keys``, ``compute`` (result, new values, changes), commit if nothing moved; retried.

        ``compute`` raises LIMIT_EXCEEDED for results over the limit, before anything is committed.
        """
        key = self._key(trace_id)
        names = list(dict.fromkeys(keys))
        for attempt in range(OCC_RETRIES):
            with self._boundary():
                texts = await self.client.hmget(key, names)
                read = {n: (MISSING if t is None else _decode(t)) for n, t in zip(names, texts)}
            result, writes, changes = compute(read)
            if not writes:
                return result
            args: list[Any] = []
            for n, t in zip(names, texts):
                new = writes.get(n, _UNWRITTEN)
                new_text = b"=" if new is _UNWRITTEN else (b"" if new is MISSING else _encode(new))
                args.extend([n, t or b"", new_text])
            with self._boundary():
                committed = await self._program(key, self._headers["commit", False], *args)
            if committed:
                if changes and self._sinks:
                    self._publish(changes)
                return result
            await backoff(attempt)
        raise ConflictError(f"{what} lost {OCC_RETRIES} races in a row")

    # -------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        """Close the connection pool; later operations fail with UNAVAILABLE."""
        if self._closed:
            return
        self._closed = True
        close = getattr(self.client, "aclose", None) or self.client.close
        with contextlib.suppress(*self._failures):  # already gone: nothing to release
            await close()


class _InternalRedis(RedisStateAdapter):
    """The runtime's view of a Redis adapter: the same client and program,
    reserved (``__motia/``) groups allowed, and no change events.

    It shares the adapter's state rather than building its own, so it is
    closed when the adapter is, and closing it closes nothing.
    """

    _hide_reserved = False

    def __init__(self, public: RedisStateAdapter) -> None:
        self.__dict__.update(public.__dict__)
        self._public = public
        self._sinks = []  # its own, and always empty: no events

    def add_change_sink(self, sink: ChangeSink) -> Callable[[], None]:
        """Refused: writes through the internal handle fire no change events."""
        raise InvalidArgumentError("the internal handle fires no change events")

    def _check(self, trace_id: Any, key: Any) -> None:
        check_name(trace_id, "internal group", self.limits)
        check_name(key, "key", self.limits)
        self._check_usable()

    def _check_group(self, group: Any) -> None:
        check_name(group, "internal group", self.limits)
        self._check_usable()

    def _check_usable(self) -> None:
        self._closed = self._public._closed
        super()._check_usable()

    async def close(self) -> None:
        """Nothing to release: the adapter owns the client."""
