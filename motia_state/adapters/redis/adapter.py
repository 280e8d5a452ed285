"""``RedisStateAdapter``: state in Redis (or Redis Cluster), shared by every runtime that points at it.

Layout (``layout.py``): each group is one Redis hash whose fields are the
group's keys and whose values are the entries' compact JSON text. Groups
are spread over a fixed number of shards; a shard is one hash tag shared by
its groups' hashes, its change feed (a stream) and its group index (a
sorted set), so a write, its feed record and the index are one program
call on one slot, also on a Redis Cluster.

Atomicity: every operation, transaction and batch, with its feed records,
is one call of the Lua program (``ops.lua`` through :class:`~.program.LuaProgram`) that reads,
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
import functools
import heapq
import inspect
import threading
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Iterator, Sequence
from typing import Any, Final, TypeVar

import msgspec

from ..._urls import redacted
from ...errors import (
    ConflictError,
    InternalError,
    InvalidArgumentError,
    LimitExceededError,
    StateError,
    UnavailableError,
    error_for_code,
)
from ...feed import (
    DEFAULT_RETENTION,
    DEFAULT_RETENTION_BYTES,
    FEED_OFF,
    READ_BATCH,
    check_retention,
    current_write_context,
)
from ...ops import parse_transaction, run_batch, run_transaction
from ...predicates import Predicate
from ...records import (
    BatchItemResult,
    BatchResult,
    Change,
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
    describe,
    import_value,
    plain_str,
)
from ..base import ChangeSink, StateAdapter, UpdateFn, _negate, backoff
from .combine import Combiner
from .layout import CLUSTER_SHARDS, MAX_SHARDS, Layout, escape_group, legacy_groups, marker_layout, read_layout
from .program import AutoPipeline, LuaProgram, pack, round_trip
from .stream import RedisChangeStream, _retrieve, decode_record, format_cursor

__all__ = ["OCC_RETRIES", "RedisStateAdapter", "migrate_legacy_layout"]

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


def _url_of(client: Any, default: str) -> str:
    """The ``redis://host:port/db`` a client given to the adapter talks to (``default`` when it cannot be told)."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if not isinstance(kwargs, dict) or "host" not in kwargs:
        return default
    return f"redis://{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def _clone_client(client: Any) -> Any:
    """A ``redis.asyncio.Redis`` with the settings of ``client`` and a connection pool of its own (for another event loop)."""
    import redis.asyncio

    pool = client.connection_pool
    copy = redis.asyncio.Redis(
        connection_pool=type(pool)(
            connection_class=pool.connection_class, max_connections=pool.max_connections, **pool.connection_kwargs
        ),
        single_connection_client=bool(getattr(client, "single_connection_client", False)),
    )
    copy.auto_close_connection_pool = True  # its pool is its own: closing it closes the pool
    return copy


def _check_url(url: object) -> None:
    """Refuse what redis-py would silently read otherwise (a database that is not a number is db 0)."""
    if not isinstance(url, str):
        raise InvalidArgumentError(f"url: expected a string, got {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        db = urllib.parse.unquote(parts.path)[1:]
        if db and not (db.isascii() and db.isdigit()):
            raise InvalidArgumentError(
                f"url: the database after the host must be a number, as in /0, got {redacted(url)!r}"
                + (" (a / in a user name or password is written %2F)" if "@" in db else "")
            )
    elif parts.scheme == "unix":
        if parts.netloc and "@" in parts.path:  # unix://user:pa/ss@/path: the password's / ended the user part
            raise InvalidArgumentError(
                f"url: {redacted(url)!r}: a / before the @ ends the user part (a / in a password is written %2F)"
            )
    else:
        raise InvalidArgumentError(f"url: expected redis://, rediss:// or unix://, got {redacted(url)!r}")


def _failure(text: bytes) -> tuple[str, str]:
    """(code, message) of a script's ``!CODE message`` result."""
    code, _, message = text[1:].decode("utf-8", "replace").partition(" ")
    return code, message


def _results_too_large(size: int, limit: int) -> LimitExceededError:
    return LimitExceededError(f"the results would be {size} bytes encoded, larger than {limit}; nothing was stored")


_Result = TypeVar("_Result", TransactionResult, BatchResult)
_UNWRITTEN: Final = object()

#: Records a history search examines per program call, so that it never holds Redis for long.
HISTORY_STEP: Final = 2000
#: Entries a listing page examines at most (a filter that matches little returns a short page).
SCAN_BUDGET: Final = 10_000
#: Entries one listing call of the program examines at most, so that it never holds Redis for long.
SCAN_CALL_BUDGET: Final = 2_000
#: About the most bytes of values one listing call of the program examines, for the same reason.
SCAN_CALL_BYTES: Final = 4 << 20
_WRITE_MODES: Final = ("one", "tx", "batch", "commit", "clear")


class _LoopState:
    """What one event loop uses of the adapter: a redis-py client, the program calling through it, the combiner.

    redis-py's asyncio client, its connections, their streams and its locks
    belong to the event loop that first used them; touched from another
    loop they fail deep inside asyncio ("attached to a different loop",
    "Event loop is closed"). So each loop that uses the adapter has its
    own, and they share nothing but the server.
    """

    __slots__ = ("client", "combiner", "layout_lock", "loop", "own_program", "program", "until_loop_ends")

    def __init__(self, loop: asyncio.AbstractEventLoop, client: Any, program: LuaProgram, combiner: Combiner) -> None:
        self.loop = loop
        self.client = client
        self.program = program
        self.own_program = program  # the one to close, whatever replaced ``program`` meanwhile
        self.combiner = combiner
        self.layout_lock = asyncio.Lock()
        #: The async generator that closes this state when its loop shuts down.
        self.until_loop_ends: AsyncGenerator[None, None] | None = None

    async def aclose(self) -> None:
        """Stop the combiner's tasks, release the pipeline's connection, close the client's pool."""
        close = getattr(self.client, "aclose", None) or self.client.close
        for step in (self.combiner.aclose, self.own_program.aclose, close):
            with contextlib.suppress(Exception):  # already gone: nothing to release
                await step()


async def _until_loop_ends(loops: _Loops, state: _LoopState) -> AsyncGenerator[None, None]:
    # Parked at its yield for the life of the loop: asyncio.run (and every
    # runner that calls loop.shutdown_asyncgens) closes it as the loop ends,
    # while the loop can still close the state's connections.
    try:
        yield
    finally:
        loops.forget(state)
        await state.aclose()


class _Loops:
    """The adapter's :class:`_LoopState` per event loop, made on a loop's first use, closed when that loop ends.

    The first loop gets the client the adapter was built with; every other
    loop a client of its own with the same settings (``clone``), so the
    adapter serves several loops, one after another (``asyncio.run`` called
    twice) or at the same time (threads with loops of their own), as the
    memory and file adapters do.
    """

    __slots__ = ("clone", "home", "home_used", "last", "lock", "make", "states")

    def __init__(
        self, home: Any, clone: Callable[[], Any] | None, make: Callable[[asyncio.AbstractEventLoop, Any], _LoopState]
    ) -> None:
        self.home = home
        self.home_used = False
        self.clone = clone
        self.make = make
        self.states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self.last: _LoopState | None = None  # the state asked for last: mostly the one asked for next
        self.lock = threading.Lock()  # loops in other threads add theirs too

    def get(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        """The state of ``loop``, made (and registered to close as the loop ends) on its first use."""
        state = self.last
        if state is not None and state.loop is loop:
            return state
        state = self.states.get(loop)
        if state is not None:
            self.last = state
            return state
        with self.lock:
            state = self.states.get(loop)
            if state is not None:
                return state
            if not self.home_used:
                self.home_used = True
                client = self.home
            elif self.clone is None:
                raise InvalidArgumentError(
                    "this Redis adapter was given a client (client=) that is bound to the event loop it was "
                    "first used on, and redis-py cannot copy a cluster client for another loop: use the adapter "
                    "from that one loop, or build it from a URL (url=..., cluster=True) so that every event loop "
                    "gets its own client"
                )
            else:
                client = self.clone()
            state = self.make(loop, client)
            gen = _until_loop_ends(self, state)
            with contextlib.suppress(StopIteration):
                # Runs it to its yield now (nothing in it awaits before), which
                # also registers it with the loop's async generators.
                gen.asend(None).send(None)
            state.until_loop_ends = gen
            self.states[loop] = state
            return state

    def forget(self, state: _LoopState) -> None:
        """Drop ``state`` (its loop has ended, or the adapter closed it)."""
        with self.lock:
            if self.states.get(state.loop) is state:
                del self.states[state.loop]
            if self.last is state:
                self.last = None

    def take_all(self) -> list[_LoopState]:
        """Every state, removed from the table (the adapter is closing)."""
        with self.lock:
            states = list(self.states.values())
            self.states.clear()
            self.last = None
            return states


class _Shared:
    """What the adapter and its internal handle share: the layout once read, and readers starting at "now"."""

    __slots__ = ("layout", "starting")

    def __init__(self) -> None:
        self.layout: Layout | None = None
        #: Readers fixing their "now" position: writes wait for them (see RedisChangeStream).
        self.starting: set[asyncio.Task[list[int]]] = set()


class RedisStateAdapter(StateAdapter):
    """State in Redis (or Redis Cluster), shared by every runtime that points at it.

    ``url`` as redis-py understands it (``redis://``, ``rediss://``,
    ``unix://``); ``key_prefix`` namespaces applications sharing one Redis;
    ``ttl`` (seconds) expires a group that long after its last write;
    ``timeout`` bounds connecting and each reply, after which the operation
    fails with UNAVAILABLE. ``cluster=True`` treats ``url`` as any node of a
    Redis Cluster. ``client`` takes a ready ``redis.asyncio`` client instead
    of a URL (a configured ``RedisCluster``, for instance).

    The change feed keeps the newest ``feed_retention`` records of each
    shard within about ``feed_retention_bytes`` of stream memory
    (``feed_retention=0``: no feed). ``shards`` sets the shard count of a new
    store (default 16 on a cluster client, else 1); an existing store keeps
    the count its layout marker records.

    ``auto_pipeline`` (on by default) sends operations issued together
    from this process in shared round trips (see docs/redis.md);
    ``auto_pipeline=False`` sends each through redis-py's own per-command
    path.
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
        feed_retention: int = DEFAULT_RETENTION,
        feed_retention_bytes: int = DEFAULT_RETENTION_BYTES,
        shards: int | None = None,
        auto_pipeline: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(auto_pipeline, bool):
            raise InvalidArgumentError(f"auto_pipeline: expected true or false, got {auto_pipeline!r}")
        check_retention(feed_retention, feed_retention_bytes)
        if shards is not None and (type(shards) is not int or not 1 <= shards <= MAX_SHARDS):
            raise InvalidArgumentError(
                f"shards: expected an int from 1 to {MAX_SHARDS} or None, got {describe(shards)}"
            )
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
        given_client = client is not None
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

        def build() -> Any:
            # Ride over a blip, but never for long: two quick retries.
            retry = redis.retry.Retry(redis.backoff.ExponentialBackoff(cap=0.2, base=0.02), 2)
            if cluster:
                return redis.asyncio.RedisCluster.from_url(
                    url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=retry
                )
            return redis.asyncio.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=retry, health_check_interval=30
            )

        clone: Callable[[], Any] | None = build
        if client is None:
            try:
                client = build()
            except ValueError as e:
                raise InvalidArgumentError(f"url: {e}") from e
        elif type(client) is redis.asyncio.Redis:
            clone = functools.partial(_clone_client, client)
        else:
            clone = None  # a given cluster client serves the loop it was first used on
        encoder = getattr(client, "get_encoder", None)
        if encoder is not None and encoder().decode_responses:
            raise InvalidArgumentError(
                "client: the Redis adapter reads bytes; pass a client made with decode_responses=False"
            )
        if given_client:
            self.url = _url_of(client, url)  # errors name the server really used
        plain = type(client) is redis.asyncio.Redis
        single = bool(getattr(client, "single_connection_client", False))

        def make(loop: asyncio.AbstractEventLoop, client: Any) -> _LoopState:
            # Calls issued together share round trips through one connection
            # (a client bound to a single connection keeps its own path).
            program = LuaProgram(
                client,
                redis.exceptions,
                functions=plain,
                pipeline=auto_pipeline and plain and not single,
                # Without the pipeline, calls still packed and read by the program (a connection each).
                direct=plain and not single,
            )
            # Single operations meeting on one group go out together (see combine.py).
            return _LoopState(loop, client, program, Combiner(program, redis.exceptions))

        self._loops = _Loops(client, clone, make)
        self._cluster_client = isinstance(client, redis.asyncio.RedisCluster)
        self._max_result = limits.max_result_bytes
        self.feed_retention = feed_retention
        self.feed_retention_bytes = feed_retention_bytes
        self.shards = shards
        #: Whether this handle's writes make feed records (the internal handle's make none).
        self._records = feed_retention > 0
        self._headers = self._make_headers(feed_retention)
        # A blocking feed read must return before the client's socket timeout.
        self._block_ms = max(50, int(timeout * 800))
        self._group_keys: dict[str, tuple[bytes, bytes, bytes]] = {}
        self._shared = _Shared()
        self._closed = False
        #: The runtime's handle: reserved groups allowed, no change events.
        self.internal: RedisStateAdapter = _InternalRedis(self)

    # ------------------------------------------------------------- plumbing

    def _loop_state(self) -> _LoopState:
        return self._loops.get(asyncio.get_running_loop())

    @property
    def client(self) -> Any:
        """The redis-py client of the running event loop (outside any loop: the one the adapter was built with).

        Each event loop that uses the adapter has a client of its own (see
        docs/redis.md), since redis-py's connections belong to one loop.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._loops.home
        return self._loops.get(loop).client

    @property
    def _program(self) -> LuaProgram:
        return self._loops.get(asyncio.get_running_loop()).program

    @_program.setter
    def _program(self, program: LuaProgram) -> None:
        # The running loop's program replaced (tests count or record its calls);
        # outside a loop there is none to replace.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._loops.get(loop).program = program

    @property
    def _pipeline(self) -> AutoPipeline | None:
        return self._loops.get(asyncio.get_running_loop()).program.pipeline

    @property
    def _combiner(self) -> Combiner:
        return self._loops.get(asyncio.get_running_loop()).combiner

    def _make_headers(self, feed_records: int) -> dict[tuple[str, bool], bytes]:
        limits = self.limits
        common = (
            f"{self._ttl_arg} {limits.max_value_bytes} {self._max_result} {feed_records} {self.feed_retention_bytes}"
        )
        return {
            (mode, sinks): f"{mode} {int(sinks)} {common}".encode() for mode in _WRITE_MODES for sinks in (False, True)
        }

    def hash_key(self, group: str) -> str:
        """The Redis key holding ``group``'s hash (in its shard, whose tag it shares)."""
        layout = self._shared.layout or Layout(self.key_prefix, self.shards or self._default_shards())
        return layout.hash_key(group)

    def _default_shards(self) -> int:
        return CLUSTER_SHARDS if self._cluster_client else 1

    async def _layout(self) -> Layout:
        """The store's layout: read (or recorded) at first use, refused when it is not this version's."""
        shared = self._shared
        layout = shared.layout
        if layout is not None:
            return layout
        async with self._loop_state().layout_lock:
            if shared.layout is None:
                with self._boundary():
                    shared.layout = await read_layout(self.client, self.key_prefix, self.shards, self._default_shards())
            return shared.layout

    async def _keys(self, group: str) -> tuple[bytes, bytes, bytes]:
        """The group's hash, its shard's feed and its shard's index (encoded once per hot group)."""
        keys = self._group_keys.get(group)
        if keys is None:
            layout = await self._layout()
            shard = layout.shard(group)
            if len(self._group_keys) > 4096:  # bounded
                self._group_keys.clear()
            keys = self._group_keys[group] = (
                layout.hash_key(group).encode(),
                layout.feeds[shard],
                layout.indexes[shard],
            )
        return keys

    async def _key(self, group: str) -> bytes:
        return (await self._keys(group))[0]

    def _stamp(self) -> bytes:
        """The writer's depth and origin, for the feed records of this call."""
        depth, origin = current_write_context()
        if origin is None:
            return b"0" if depth == 0 else str(depth).encode()
        return str(depth).encode() + b" " + _encode(origin)

    async def _write(self, group: str, header: bytes, *args: Any) -> Any:
        """One call of a writing mode of the program on ``group`` (its feed records in the same call)."""
        if self._shared.starting:
            # A reader asked for "now": its position is read before anything written after the ask.
            await self._after_starting_readers()
        keys = await self._keys(group)
        return await self._program(keys, header, group.encode(), self._stamp(), *args)

    async def _after_starting_readers(self) -> None:
        """Wait for the readers fixing their "now" position, those of other event loops (threads) too."""
        loop = asyncio.get_running_loop()
        starting = list(self._shared.starting)  # a copy: other threads' readers come and go
        here = [task for task in starting if task.get_loop() is loop]
        if here:
            await asyncio.wait(here)
        while any(not task.done() for task in starting if task.get_loop() is not loop):
            await asyncio.sleep(0.001)  # another loop's task cannot be awaited here

    async def _read_command(self, *args: str | bytes) -> Any:
        """A reading command, on the program's path; once more on a connection lost before its reply.

        Reads change nothing, so sending one again is safe: a connection
        the server closed while it sat in the pool costs no error.
        """
        program = self._program
        if program.pipeline is None and not program.direct:
            return await self.client.execute_command(*args)
        command = pack(*args)
        pipeline = program.pipeline
        if pipeline is not None:
            try:
                return await pipeline.call(command)
            except self._errors.ConnectionError:
                if self._closed:  # failed by the close, not by the connection
                    raise
                # The shared connection may have been closed by the server while idle.
                return await pipeline.call(command)
        try:
            return await round_trip(self.client.connection_pool, command, self._errors)
        except self._errors.ConnectionError:
            return await round_trip(self.client.connection_pool, command, self._errors)

    def _check(self, trace_id: Any, key: Any) -> bool | None:
        """Check a (group, key) pair; true when a name is a str subclass, which the caller makes plain."""
        renamed = self._names.check(trace_id, key)
        self._check_usable()
        return renamed

    def _check_group(self, group: Any, what: str = "traceId") -> str:
        # ``what``: the argument's name in the error (getGroup calls it groupId).
        name = check_name(group, what, self.limits)
        self._check_usable()
        return name

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
            return error_for_code("CORRUPT", f"a value stored in Redis at {redacted(self.url)} cannot be read: {e}")
        errors = self._errors
        # redis-py turns some error codes into classes and drops the code
        # from the message ("CLUSTERDOWN ..." becomes ClusterDownError("The
        # cluster is down")), so transient ones are known by class or prefix.
        transient = (errors.ReadOnlyError, errors.ClusterError, errors.TryAgainError, errors.OutOfMemoryError)
        if isinstance(e, errors.ResponseError) and "Invalid stream ID" in str(e):
            # Feed records are numbered with "0-*" IDs, which Redis reads from 7.0 on.
            return InvalidArgumentError(
                f"the change feed needs Redis 7.0 or newer (Redis said: {e}); "
                "upgrade it, or turn the feed off with feed_retention=0"
            )
        if isinstance(e, errors.ResponseError) and not (isinstance(e, transient) or str(e).startswith(_TRANSIENT)):
            return InternalError(f"Redis refused a command: {e}")
        return UnavailableError(f"Redis at {redacted(self.url)} is unavailable: {type(e).__name__}: {e}")

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
            reply = await self._write(group, self._headers[mode, bool(self._sinks)], *ops)
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

    async def _one_text(self, group: str, op: tuple[Any, ...]) -> bytes:
        """One operation in the program's "one" mode: its result text; a failure raises its error.

        ``op`` is (type, key, args...) with trailing empty slots left out.
        The path every single-entry write takes, so it is :meth:`_run`
        without its indirections.
        """
        try:
            if self._shared.starting:
                # A reader asked for "now": its position is read before anything written after the ask.
                await self._after_starting_readers()
            keys = self._group_keys.get(group)
            if keys is None:
                keys = await self._keys(group)
            state = self._loop_state()
            if self._sinks:  # change events come with a reply of one operation only
                header = self._headers["one", True]
                reply = await state.program(keys, header, group.encode(), self._stamp(), *op)
            else:
                headers = self._headers
                reply = await state.combiner.call(
                    keys, headers["one", False], headers["batch", False], group.encode(), self._stamp(), op
                )
        except self._foreign as e:
            raise self._translate(e) from e
        if type(reply) is bytes and reply[:1] == b"=":
            return reply[1:]
        with self._boundary():
            (text,) = self._reply(group, reply, "one")
        return text  # type: ignore[no-any-return]

    async def _one(self, group: str, *op: Any) -> Any:
        """One operation, its result decoded."""
        text = await self._one_text(group, op)
        try:
            return _decode(text)
        except msgspec.MsgspecError as e:
            raise self._translate(e) from e

    # --------------------------------------------------- single-entry ops

    async def get(self, trace_id: str, key: str) -> Any:
        if self._check(trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        with self._boundary():
            hash_key = await self._key(trace_id)
            text = await self._read_command("HGET", hash_key, key.encode())
            return None if text is None else _decode(text)

    async def exists(self, trace_id: str, key: str) -> bool:
        if self._check(trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        with self._boundary():
            hash_key = await self._key(trace_id)
            return bool(await self._read_command("HEXISTS", hash_key, key.encode()))

    async def set(self, trace_id: str, key: str, value: Any) -> Any:
        if self._check(trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        value = import_value(value, self.limits)
        await self._one_text(trace_id, (b"set", key.encode(), _encode(value)))
        return value

    async def delete(self, trace_id: str, key: str) -> Any:
        if self._check(trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        return await self._one(trace_id, b"delete", key.encode())

    async def increment(self, trace_id: str, key: str, delta: int | float = 1) -> int | float:
        if self._check(trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        delta = check_delta(delta)
        result: int | float = await self._one(trace_id, b"increment", key.encode(), _encode(delta))
        return result

    async def decrement(self, trace_id: str, key: str, delta: int | float = 1) -> int | float:
        if self._check(trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        delta = check_delta(delta)
        result: int | float = await self._one(trace_id, b"decrement", key.encode(), _encode(_negate(delta)))
        return result

    async def compare_and_swap(self, trace_id: str, key: str, expected: Any, new_value: Any) -> bool:
        if self._check(trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        expected = import_value(expected, self.limits, "expected")
        new_value = import_value(new_value, self.limits, "newValue")
        return bool(await self._one(trace_id, b"compareAndSwap", key.encode(), _encode(expected), _encode(new_value)))

    async def _swap_for_update(self, trace_id: str, key: str, expected: Any, new_value: Any) -> bool:
        # The Lua "update" is compareAndSwap under the name its change event carries.
        return bool(await self._one(trace_id, b"update", key.encode(), _encode(expected), _encode(new_value)))

    async def push(self, trace_id: str, key: str, *items: Any) -> list[Any]:
        if self._check(trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        copied = import_value(list(items), self.limits, "items")
        result: list[Any] = await self._one(trace_id, b"push", key.encode(), _encode(copied)[1:-1])
        return result

    async def unshift(self, trace_id: str, key: str, *items: Any) -> list[Any]:
        if self._check(trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        copied = import_value(list(items), self.limits, "items")
        result: list[Any] = await self._one(trace_id, b"unshift", key.encode(), _encode(copied)[1:-1])
        return result

    async def pop(self, trace_id: str, key: str) -> Any:
        if self._check(trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        return await self._one(trace_id, b"pop", key.encode())

    async def shift(self, trace_id: str, key: str) -> Any:
        if self._check(trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        return await self._one(trace_id, b"shift", key.encode())

    async def set_field(self, trace_id: str, key: str, field: str, value: Any) -> dict[str, Any]:
        if self._check(trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        field = check_field(field)
        value = import_value(value, self.limits, nested=1)  # one level below the stored object
        result: dict[str, Any] = await self._one(trace_id, b"setField", key.encode(), _encode(field), _encode(value))
        return result

    async def delete_field(self, trace_id: str, key: str, field: str) -> dict[str, Any]:
        if self._check(trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        field = check_field(field)
        result: dict[str, Any] = await self._one(trace_id, b"deleteField", key.encode(), _encode(field))
        return result

    async def update(self, trace_id: str, key: str, fn: UpdateFn) -> Any:
        """Store ``fn(current)``: no code runs on the server, so get + compare-and-swap, retried."""
        if self._check(trace_id, key):
            trace_id, key = plain_str(trace_id), plain_str(key)
        if inspect.iscoroutinefunction(fn):
            return await self._optimistic_update(trace_id, key, fn)

        async def call(value: Any) -> Any:
            return fn(value)

        return await self._optimistic_update(trace_id, key, call)

    # ------------------------------------------------------------ group ops

    async def get_group(self, group_id: str) -> list[Any]:
        group_id = self._check_group(group_id, "groupId")
        with self._boundary():
            entries = await self.client.hgetall(await self._key(group_id))
            decoded = {k.decode(): v for k, v in entries.items()}
            return [_decode(decoded[k]) for k in sorted(decoded)]

    async def keys(self, trace_id: str) -> list[str]:
        trace_id = self._check_group(trace_id)
        with self._boundary():
            names = await self.client.hkeys(await self._key(trace_id))
        return sorted(k.decode() for k in names)

    async def groups(self) -> list[str]:
        """Every non-empty group, from the shards' group indexes (no SCAN, no KEYS)."""
        self._check_usable()
        with self._boundary():
            layout = await self._layout()
            found: list[str] = []
            for shard in range(layout.shards):
                names = await self._program((layout.indexes[shard],), b"groups", layout.hash_prefix(shard).encode())
                found.extend(name.decode() for name in names)
        if self._hide_reserved:
            return sorted(g for g in found if not g.startswith(RESERVED_PREFIX))
        return sorted(found)

    async def clear(self, trace_id: str) -> None:
        trace_id = self._check_group(trace_id)
        with self._boundary():
            flat = await self._write(trace_id, self._headers["clear", bool(self._sinks)])
            if not self._sinks:
                return
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
        trace_id = self._check_group(trace_id)
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
        trace_id = self._check_group(trace_id)
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
        key = await self._key(trace_id)
        feed = self._records
        names = list(dict.fromkeys(keys))
        for attempt in range(OCC_RETRIES):
            with self._boundary():
                texts = await self.client.hmget(key, names)
                read = {n: (MISSING if t is None else _decode(t)) for n, t in zip(names, texts)}
            result, writes, changes = compute(read)
            if not writes:
                return result
            args: list[Any] = [str(len(names))]
            for n, t in zip(names, texts):
                new = writes.get(n, _UNWRITTEN)
                new_text = b"=" if new is _UNWRITTEN else (b"" if new is MISSING else _encode(new))
                args.extend([n, t or b"", new_text])
            if feed:
                for c in changes:
                    old_text = b"" if c.event == "created" else _encode(c.old_value)
                    args.extend([c.key, c.op, old_text, b"" if c.event == "deleted" else _encode(c.new_value)])
            with self._boundary():
                committed = await self._write(trace_id, self._headers["commit", False], *args)
            if committed:
                if changes and self._sinks:
                    self._publish(changes)
                return result
            await backoff(attempt)
        raise ConflictError(f"{what} lost {OCC_RETRIES} races in a row")

    # ------------------------------------------------------------- the feed

    def _feed_check(self) -> None:
        if not self.feed_retention:
            raise InvalidArgumentError(FEED_OFF)
        self._check_usable()

    def changes(
        self,
        after: str | None = None,
        *,
        groups: Collection[str] | None = None,
        keys: Collection[str] | None = None,
        follow: bool = True,
    ) -> AsyncIterator[Change]:
        """The store's change feed from ``after``, in commit order per shard (see :class:`RedisChangeStream`).

        Records written by any process sharing the store arrive as they
        commit (a blocking stream read, no polling). A cursor older than the
        feed retains raises CursorExpiredError when the iteration starts.
        """
        self._feed_check()
        return RedisChangeStream(self, after, groups=groups, keys=keys, follow=follow)

    async def _shard_info(
        self, position: list[int] | None = None
    ) -> list[tuple[int, int, int, tuple[bytes, list[Any]] | None]]:
        """(first record number, last record number, records retained, entry) of every shard.

        With a ``position``, entry is the stream entry holding that shard's
        record after it when the same entry also holds the position's own
        record (a cursor inside an entry), else None.
        """
        layout = await self._layout()
        with self._boundary():
            replies = await asyncio.gather(
                *(
                    self._program((feed,), b"info", *(() if position is None else (str(position[s]),)))
                    for s, feed in enumerate(layout.feeds)
                )
            )
        return [
            (int(reply[0]), int(reply[1]), int(reply[2]), (reply[3], reply[4]) if len(reply) > 3 else None)
            for reply in replies
        ]

    async def _last_position(self) -> list[int]:
        return [last for _, last, _, _ in await self._shard_info()]

    def _fix_position(self) -> asyncio.Task[list[int]]:
        """Start reading every shard's newest record number; writes from here on wait for it."""
        task = asyncio.ensure_future(self._last_position())
        starting = self._shared.starting
        starting.add(task)
        task.add_done_callback(starting.discard)
        task.add_done_callback(_retrieve)  # a stream never iterated still leaves no unread error
        return task

    async def _read_shards(self, shards: list[int], position: list[int], count: int) -> list[tuple[int, list[Any]]]:
        """Up to ``count`` entries of each of ``shards`` after its position."""
        layout = await self._layout()
        with self._boundary():
            replies = await asyncio.gather(
                *(self.client.xrange(layout.feeds[s], min=f"0-{position[s] + 1}", count=count) for s in shards)
            )
        return [(s, entries) for s, entries in zip(shards, replies, strict=True) if entries]

    async def _block(self, shards: list[int], position: list[int]) -> list[tuple[int, list[Any]]]:
        """Entries after the positions of ``shards``, waiting in XREAD BLOCK (nothing when it times out)."""
        layout = await self._layout()
        streams = {layout.feeds[s]: f"0-{position[s]}" for s in shards}
        with self._boundary():
            reply = await self.client.xread(streams, count=READ_BATCH, block=self._block_ms)
        by_name = {layout.feeds[s]: s for s in shards}
        if isinstance(reply, dict):  # RESP3
            return [
                (by_name[name], entries[0] if entries and isinstance(entries[0], list) else entries)
                for name, entries in reply.items()
            ]
        return [(by_name[name], entries) for name, entries in reply or ()]

    async def history(self, group: str, key: str, limit: int = 100) -> list[Change]:
        """The retained records of one entry, newest first, at most ``limit``.

        Searches the group's shard from its newest record back (at most
        HISTORY_STEP records per program call), so it costs about the
        records of that shard committed since the oldest one returned.
        """
        if self._check(group, key):
            group, key = plain_str(group), plain_str(key)
        if type(limit) is not int or limit < 0:
            raise InvalidArgumentError(f"limit: expected a non-negative int, got {describe(limit)}")
        self._feed_check()
        layout = await self._layout()
        shard = layout.shard(group)
        found: list[tuple[int, list[Any]]] = []
        start = b"+"
        with self._boundary():
            while len(found) < limit:
                reply = await self._program(
                    (layout.feeds[shard],),
                    b"history",
                    group.encode(),
                    key.encode(),
                    str(limit - len(found)),
                    start,
                    str(HISTORY_STEP),
                )
                found.extend((int(reply[i]), reply[i + 1 : i + 5]) for i in range(1, len(reply), 5))
                if not reply[0]:
                    break
                start = reply[0]
            position = await self._last_position() if layout.shards > 1 else [0]
            records = []
            for n, (stamp, op, old, new) in found:
                # Sharded: the other shards' positions are their newest at this call.
                position[shard] = n
                records.append(Change(format_cursor(position), *decode_record(group, key, op, old, new, stamp)))
        return records

    async def feed_info(self) -> dict[str, Any]:
        """``{"first": cursor|None, "last": cursor|None, "retained": n}`` over every shard.

        ``first`` names each shard's oldest retained record, ``last`` its
        newest (on one shard, exactly the cursors of those records).
        """
        self._feed_check()
        info = await self._shard_info()
        retained = sum(length for _, _, length, _ in info)
        if not retained:
            return {"first": None, "last": None, "retained": 0}
        return {
            "first": format_cursor([first if length else last for first, last, length, _ in info]),
            "last": format_cursor([last for _, last, _, _ in info]),
            "retained": retained,
        }

    # ------------------------------------------------------------- listing

    async def scan(
        self,
        after: tuple[str, str] | None = None,
        *,
        limit: int = 100,
        group: str | None = None,
        where: Predicate | None = None,
    ) -> tuple[list[tuple[str, str, Any]], tuple[str, str] | None]:
        """One page of ``(group, key, value)`` in (group, key) order, strictly after ``after``.

        Returns the page and the position to continue from (None at the
        end). ``group`` limits it to one group (no other is read); ``where``,
        a predicate as :func:`~motia_state.predicates.parse_predicate`
        returns it, keeps only the values it holds for, and is evaluated by
        the Lua program next to the data: values that do not match never
        leave Redis. Groups come from the shards' group indexes
        (``ZRANGEBYLEX``) and each group's keys are ordered on the server,
        so a page costs about its own size (plus the key count of the
        groups it reads), however many groups the store holds. Each program
        call examines at most SCAN_CALL_BUDGET entries (and about
        SCAN_CALL_BYTES of values), and a page at most SCAN_BUDGET entries:
        a filter that matches little returns a short page with a position
        to go on from. Reserved groups are never listed.
        """
        if type(limit) is not int or limit < 1:
            raise InvalidArgumentError(f"limit: expected a positive int, got {describe(limit)}")
        if after is not None and not (
            isinstance(after, tuple) and len(after) == 2 and all(type(part) is str for part in after)
        ):
            raise InvalidArgumentError(f"after: expected a (group, key) pair or None, got {describe(after)}")
        if group is not None:
            group = self._check_group(group)
        else:
            self._check_usable()
        layout = await self._layout()
        predicate = b"" if where is None else _encode(where)
        if layout.shards == 1 and group is None:
            return await self._walk(layout, after, limit, predicate)
        page: list[tuple[str, str, Any]] = []
        examined = groups_done = 0
        # A page of n entries needs at most n + 1 groups, spread evenly over the
        # shards (by hash): each shard is asked for its share twice over at first.
        share = limit + 1 if layout.shards == 1 else -(-2 * (limit + 1) // layout.shards)
        names = self._groups_from(layout, group, after[0] if after else None, min(256, max(16, share)))

        async def read(batch: list[tuple[str, str]], want: int) -> dict[str, tuple[bool, str, int, list[Any]]]:
            """What one step of the program gives of each (group, key to start after) it reached.

            One call per shard, all at once; the page's remaining budget is
            split between them, so that a round examines at most that much.
            """
            by_shard: dict[int, list[tuple[str, str]]] = {}
            for name, last in batch:
                by_shard.setdefault(layout.shard(name), []).append((name, last))
            budget = max(1, min(SCAN_CALL_BUDGET, SCAN_BUDGET - examined) // len(by_shard))
            limits = f"{want} {budget} {SCAN_CALL_BYTES}".encode()
            calls = [
                self._program(
                    tuple(layout.hash_key(name).encode() for name, _ in part),
                    b"page",
                    limits,
                    predicate,
                    *(last.encode() for _, last in part),
                )
                for part in by_shard.values()
            ]
            out: dict[str, tuple[bool, str, int, list[Any]]] = {}
            for part, reply in zip(by_shard.values(), await asyncio.gather(*calls), strict=True):
                heads, i = reply[0].split(), 1
                # The groups the call reached, in order (it stops before the rest).
                for (name, start), h in zip(part, range(0, len(heads), 4)):
                    more, seen, n, apart = heads[h : h + 4]
                    if apart == b"1":
                        last = reply[i].decode()
                        i += 1
                    else:  # the last key given, else none examined
                        last = reply[i + 2 * int(n) - 2].decode() if n != b"0" else start
                    flat = reply[i : i + 2 * int(n)]
                    out[name] = (more == b"1", last, int(seen), flat)
                    i += len(flat)
            return out

        # Groups (with the key to start after) to read before taking new names.
        carry: list[tuple[str, str]] = []
        count, most = 1, 256 if layout.shards == 1 else 64
        position = after
        with self._boundary():
            while True:
                # Groups are read several at once: as many as the page still
                # seems to need from what the groups read so far gave (a call
                # stops where the page is full; the groups it does not reach
                # cost their names). Over several shards each call fills the
                # page from its own groups, so the first call reads one group.
                want = limit + 1 - len(page)
                gave = len(page) if where is not None else examined
                if not groups_done:
                    count = min(16, want) if layout.shards == 1 else 1
                elif gave:
                    count = min(most, -(-want * groups_done // gave))
                else:
                    count = min(most, 2 * count)
                batch, carry = carry[:count], carry[count:]
                while len(batch) < count:
                    name = await anext(names, None)
                    if name is None:
                        break
                    batch.append((name, after[1] if after and name == after[0] else ""))
                if not batch:
                    return page, None
                got = await read(batch, want)
                for index, (name, _) in enumerate(batch):
                    if name not in got:
                        carry[:0] = batch[index:]
                        break
                    more, last, seen, flat = got[name]
                    examined += seen
                    for i in range(0, len(flat), 2):
                        page.append((name, flat[i].decode(), _decode(flat[i + 1])))
                        if len(page) > limit:
                            page.pop()
                            return page, (page[-1][0], page[-1][1])
                    position = (name, last)
                    if more:
                        # The step stopped inside this group: go on from its last key.
                        carry[:0] = [position, *batch[index + 1 :]]
                        break
                    groups_done += 1
                if examined >= SCAN_BUDGET:
                    return page, position

    async def _walk(
        self, layout: Layout, after: tuple[str, str] | None, limit: int, predicate: bytes
    ) -> tuple[list[tuple[str, str, Any]], tuple[str, str] | None]:
        """``scan`` on a store of one shard: the program walks the group index itself, a page per call."""
        page: list[tuple[str, str, Any]] = []
        position = after or ("", "")
        hidden = RESERVED_PREFIX.encode() if self._hide_reserved else b""
        examined = 0
        with self._boundary():
            while True:
                budget = min(SCAN_CALL_BUDGET, SCAN_BUDGET - examined)
                before = (position, examined)
                reply = await self._program(
                    (layout.indexes[0],),
                    b"walk",
                    f"{limit + 1 - len(page)} {budget} {SCAN_CALL_BYTES}".encode(),
                    predicate,
                    layout.hash_prefix(0).encode(),
                    position[0].encode(),
                    position[1].encode(),
                    hidden,
                )
                numbers, names = reply[0].split(), reply[1]
                i, at = 2, 0
                for h in range(1, len(numbers), 5):
                    _more, seen, n, apart, size = numbers[h : h + 5]
                    name = names[at : at + int(size)].decode()
                    at += int(size)
                    count = 2 * int(n)
                    if apart == b"1":
                        last = reply[i].decode()
                        i += 1
                    elif count:  # the last key given
                        last = reply[i + count - 2].decode()
                    else:  # none examined
                        last = position[1] if name == position[0] else ""
                    for j in range(i, i + count, 2):
                        page.append((name, reply[j].decode(), _decode(reply[j + 1])))
                    if len(page) > limit:
                        del page[limit:]
                        return page, (page[-1][0], page[-1][1])
                    i += count
                    examined += int(seen)
                    position = (name, last)
                if numbers[0] == b"1":
                    return page, None
                # A step that moved nothing (its one visit spent on the group it
                # starts in, read to its end) would be the same step again.
                if examined >= SCAN_BUDGET or (position, examined) == before:
                    return page, position

    async def _groups_from(
        self, layout: Layout, group: str | None, start: str | None, first: int
    ) -> AsyncIterator[str]:
        """Group names from ``start`` (inclusive) in order, merged from every shard's index.

        Each shard is asked for ``first`` names at first, all shards at once,
        then for more names only as its own run out.
        """
        if group is not None:
            yield group
            return
        low = b"-" if start is None else b"[" + start.encode()
        indexes = layout.indexes
        replies = await asyncio.gather(
            *(self.client.zrangebylex(index, low, b"+", start=0, num=first) for index in indexes)
        )
        pending: dict[int, list[bytes]] = {}
        heads: list[tuple[bytes, int]] = []
        for shard, names in enumerate(replies):
            if names:
                pending[shard] = names[::-1]
                heads.append((pending[shard].pop(), shard))
        heapq.heapify(heads)
        while heads:
            name, shard = heapq.heappop(heads)
            text = name.decode()
            if not (self._hide_reserved and text.startswith(RESERVED_PREFIX)):
                yield text
            rest = pending[shard]
            if not rest:
                rest = await self.client.zrangebylex(indexes[shard], b"(" + name, b"+", start=0, num=256)
                rest.reverse()
                pending[shard] = rest
            if rest:
                heapq.heappush(heads, (rest.pop(), shard))

    # -------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        """Close the connection pools (of every event loop still running); later operations fail with UNAVAILABLE.

        A loop that is not running (it ended, or waits to run again) cannot
        close what it holds from here: its client closes when the loop
        shuts down, as ``asyncio.run`` does at its end.
        """
        if self._closed:
            return
        self._closed = True
        loops = self._loops
        here = asyncio.get_running_loop()
        for state in loops.take_all():
            assert state.until_loop_ends is not None  # set before a state is listed
            ending = state.until_loop_ends.aclose()
            if state.loop is here:
                await ending
            elif state.loop.is_running():  # a loop of another thread: closed there
                done = asyncio.run_coroutine_threadsafe(ending, state.loop)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.wrap_future(done), 5.0)
            else:
                ending.close()
        if not loops.home_used:  # never used: it holds no connection, but it may own its pool
            loops.home_used = True
            close = getattr(loops.home, "aclose", None) or loops.home.close
            with contextlib.suppress(*self._failures):
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
        self._records = False  # and no feed records
        self._headers = self._make_headers(0)

    def add_change_sink(self, sink: ChangeSink) -> Callable[[], None]:
        """Refused: writes through the internal handle fire no change events."""
        raise InvalidArgumentError("the internal handle fires no change events")

    def _check(self, trace_id: Any, key: Any) -> bool | None:
        check_name(trace_id, "internal group", self.limits)
        check_name(key, "key", self.limits)
        self._check_usable()
        return type(trace_id) is not str or type(key) is not str

    def _check_group(self, group: Any, what: str = "internal group") -> str:
        name = check_name(group, "internal group", self.limits)
        self._check_usable()
        return name

    def _check_usable(self) -> None:
        self._closed = self._public._closed
        super()._check_usable()

    async def close(self) -> None:
        """Nothing to release: the adapter owns the client."""


#: Entries copied per program call by :func:`migrate_legacy_layout`.
MIGRATE_STEP: Final = 1000


async def migrate_legacy_layout(adapter: RedisStateAdapter) -> int:
    """Move the data of the layout before the feed into the current layout, in place; returns the entries moved.

    Under the adapter's ``key_prefix``, each old group hash is copied into
    the current layout (groups, index; no feed records and no change events:
    moving data is not a change of it), then deleted; the layout marker is
    written last, so that until every group has moved, other runtimes keep
    refusing the store. Stop every runtime of the old version first. An
    interrupted run can be started again: groups already moved are gone
    from the old layout, and copying one again writes the same values.
    """
    adapter._check_usable()
    client, prefix = adapter.client, adapter.key_prefix
    with adapter._boundary():
        raw = await client.get(f"{prefix}layout")
        layout = (
            marker_layout(prefix, raw)
            if raw is not None
            else Layout(prefix, adapter.shards or adapter._default_shards())
        )
        adapter._shared.layout = layout  # this adapter writes the current layout while the old one remains
        moved = 0
        async for group in legacy_groups(client, prefix):
            old_key = f"{prefix}{{{escape_group(group)}}}"
            entries = [(field.decode(), text) async for field, text in client.hscan_iter(old_key, count=MIGRATE_STEP)]
            for start in range(0, len(entries), MIGRATE_STEP):
                part = entries[start : start + MIGRATE_STEP]
                ops = [{"type": "set", "key": key, "value": _decode(text)} for key, text in part]
                result = await adapter.internal.batch(group, ops)
                for item in result.results:
                    if item.code is not None:  # over a limit of this adapter: the old hash stays
                        raise error_for_code(item.code, f"group {group!r}: {item.error}")
            await client.delete(old_key)
            moved += len(entries)
        await client.set(f"{prefix}layout", layout.marker())
    return moved
