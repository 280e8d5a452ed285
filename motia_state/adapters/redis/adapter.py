"""``RedisStateAdapter``: state in Redis (or Redis Cluster), shared by every runtime that points at it.

Layout: each group is one Redis hash, ``<key_prefix>{<group>}``, whose fields
are the group's keys and whose values are the entries' compact JSON text.
The group is the key's hash tag, so in Redis Cluster a group lives in one
slot and every program call (which touches only that hash) is legal there.
``{``, ``}`` and ``%`` in a group name are percent-escaped inside the tag;
any string is a valid name and none becomes part of another group's key.

Atomicity: every operation, and every transaction, is one call of the Lua
program (``ops.lua`` through :class:`~.program.LuaProgram`) that reads,
checks everything, then writes. The program is the server-side twin of
``ops.py`` and works on the JSON text itself: values never pass through
Lua's cjson, so integers past 2^53, ``[]`` and float formatting come back
exactly as stored. A batch is one call too (per 256 records), in a mode
that applies each record on its own. Only ``update`` (a Python function)
cannot run on the server: it is an optimistic get + compare-and-swap loop,
and a transaction holding ``update`` records is computed in Python and
committed by the program's "commit" mode, which first checks that every
key it read is unchanged.

Every failure of Redis, of the client library or of decoding a stored text
is translated at one boundary (:meth:`RedisStateAdapter._boundary`): no
redis-py or msgspec exception reaches a caller.
"""

from __future__ import annotations

import contextlib
import inspect
import random
from collections.abc import Iterator, Sequence
from typing import Any, Final, cast

import anyio
import msgspec

from ...errors import ConflictError, InternalError, InvalidArgumentError, StateError, UnavailableError, error_for_code
from ...ops import run_transaction
from ...records import (
    BatchItemResult,
    BatchResult,
    StateChange,
    StateOperation,
    TransactionResult,
    check_delta,
    check_field,
    parse_operations,
)
from ...values import DEFAULT_LIMITS, MISSING, CheckedNames, Limits, check_name, import_value
from ..base import StateAdapter, UpdateFn, _negate
from .program import LuaProgram

__all__ = ["BATCH_SLICE", "OCC_RETRIES", "RedisStateAdapter"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

#: How often a transaction holding ``update`` records retries its commit.
OCC_RETRIES: Final = 64

#: Records per program call of a batch: Redis runs a script alone, so a long
#: batch goes in slices that let other clients in between.
BATCH_SLICE: Final = 256

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


def _event(old: Any, new: Any) -> str:
    if old is MISSING:
        return "created"
    return "deleted" if new is MISSING else "updated"


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
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0):
            raise InvalidArgumentError(f"ttl: expected a positive number of seconds or None, got {ttl!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidArgumentError(f"timeout: expected a positive number of seconds, got {timeout!r}")
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
        self._headers = {
            (mode, sinks): f"{mode} {int(sinks)} {self._ttl_arg} {limits.max_value_bytes}".encode()
            for mode in ("one", "tx", "batch", "commit", "clear")
            for sinks in (False, True)
        }
        self._hash_keys: dict[str, bytes] = {}
        self._closed = False

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
        if self._closed:
            raise UnavailableError("the adapter is closed")

    def _check_group(self, group: Any) -> None:
        check_name(group, "traceId", self.limits)
        if self._closed:
            raise UnavailableError("the adapter is closed")

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
            changes.append(
                StateChange(
                    group,
                    key.decode(),
                    op.decode(),
                    _event(old_value, new_value),
                    None if old_value is MISSING else old_value,
                    None if new_value is MISSING else new_value,
                )
            )
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
        value = import_value(value, self.limits)
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
        if self._closed:
            raise UnavailableError("the adapter is closed")
        pattern = _glob_escape(self.key_prefix) + "{*}"
        found: set[str] = set()
        start = len(self.key_prefix) + 1

        async def scan() -> None:
            async for name in self.client.scan_iter(match=pattern, count=1000, _type="hash"):
                found.add(_unescape_group(name.decode()[start:-1]))

        with self._boundary():
            await scan()
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
        raise InternalError(f"no server-side form for {t!r}")  # update is handled before

    async def transaction(self, trace_id: str, operations: Sequence[Any]) -> TransactionResult:
        self._check_group(trace_id)
        try:
            ops = parse_operations(operations, limits=self.limits)
        except StateError as e:
            index = e.details.get("failed_index")
            if index is None:
                raise
            return TransactionResult(success=False, results=[], error=e.message, failed_index=index, code=e.code)
        parsed: list[StateOperation] = ops  # type: ignore[assignment]  # no errors without collect=True
        if not parsed:
            return TransactionResult(success=True, results=[])
        if any(op.type == "update" for op in parsed):
            return await self._optimistic_transaction(trace_id, parsed)
        args: list[Any] = []
        for op in parsed:
            args.extend(self._encode_op(op))
        reply = await self._run(trace_id, args, "tx")
        if reply and reply[0] == b"ERR":
            return TransactionResult(
                success=False,
                results=[],
                error=reply[3].decode("utf-8", "replace"),
                failed_index=int(reply[1]),
                code=reply[2].decode(),
            )
        with self._boundary():
            return TransactionResult(success=True, results=[_decode(t) for t in reply])

    async def _optimistic_transaction(self, trace_id: str, ops: list[StateOperation]) -> TransactionResult:
        """A transaction with Python ``update`` fns: read, run in Python, commit if nothing moved."""
        key = self._key(trace_id)
        names = list(dict.fromkeys(op.key for op in ops))
        for attempt in range(OCC_RETRIES):
            with self._boundary():
                texts = await self.client.hmget(key, names)
                read = {n: (MISSING if t is None else _decode(t)) for n, t in zip(names, texts)}
            result, staged = run_transaction(ops, read.__getitem__, self.limits)
            if not result.success or not staged:
                return result
            args: list[Any] = []
            for n, t in zip(names, texts):
                new = staged.get(n)
                new_text = b"=" if new is None else (b"" if new[1] is MISSING else _encode(new[1]))
                args.extend([n, t or b"", new_text])
            with self._boundary():
                committed = await self._program(key, self._headers["commit", False], *args)
            if committed:
                if self._sinks:
                    changes = [
                        StateChange(
                            trace_id,
                            n,
                            op,
                            _event(read[n], new),
                            None if read[n] is MISSING else read[n],
                            None if new is MISSING else new,
                        )
                        for n, (op, new) in staged.items()
                        if not (new is MISSING and read[n] is MISSING)
                    ]
                    if changes:
                        self._publish(changes)
                return result
            await anyio.sleep(random.uniform(0, 0.001 * min(attempt + 1, 10)))
        raise ConflictError(f"transaction lost {OCC_RETRIES} races in a row")

    async def batch(self, trace_id: str, operations: Sequence[Any]) -> BatchResult:
        """Each record on its own; a run of server-side records is one script call."""
        self._check_group(trace_id)
        ops = parse_operations(operations, limits=self.limits, collect=True)
        items: list[BatchItemResult | None] = [None] * len(ops)
        pending: list[int] = []

        async def flush() -> None:
            # A run of server-side records: script calls in "batch" mode (each
            # applies every record on its own, in order), BATCH_SLICE at a time.
            for start in range(0, len(pending), BATCH_SLICE):
                await run_slice(pending[start : start + BATCH_SLICE])
            pending.clear()

        async def run_slice(indexes: list[int]) -> None:
            records = [cast(StateOperation, ops[i]) for i in indexes]  # errors never reach pending
            flat: list[Any] = []
            for record in records:
                flat += self._encode_op(record)
            texts = await self._run(trace_id, flat, "batch")
            for i, op, text in zip(indexes, records, texts):
                item_id = None if op.id is msgspec.UNSET else op.id
                if text[:1] == b"=":
                    with self._boundary():
                        items[i] = BatchItemResult(id=item_id, value=_decode(text[1:]))
                else:
                    code, message = _failure(text)
                    items[i] = BatchItemResult(id=item_id, error=message, code=code)

        for i, op in enumerate(ops):
            if isinstance(op, StateError):
                items[i] = BatchItemResult(id=op.details.get("id"), error=op.message, code=op.code)
            elif op.type == "update":
                await flush()  # keep the records' order
                item_id = None if op.id is msgspec.UNSET else op.id
                try:
                    value = await self.update(trace_id, op.key, op.update_fn)
                except StateError as e:
                    items[i] = BatchItemResult(id=item_id, error=e.message, code=e.code)
                else:
                    items[i] = BatchItemResult(id=item_id, value=value)
            else:
                pending.append(i)
        await flush()
        return BatchResult(results=[item for item in items if item is not None])

    # -------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        """Close the connection pool; later operations fail with UNAVAILABLE."""
        if self._closed:
            return
        self._closed = True
        close = getattr(self.client, "aclose", None) or self.client.close
        with contextlib.suppress(*self._failures):  # already gone: nothing to release
            await close()
