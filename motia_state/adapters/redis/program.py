"""The Lua program (``ops.lua``) and the one way the adapter calls it.

Every server-side step of the Redis adapter (a single operation, a
transaction, a batch, the commit of a transaction computed in Python, a
clear that reports what it removed) is one mode of one program, and every
call goes through :class:`LuaProgram`, which owns how the program reaches
the server, as redis-py's ``Script`` object owns a script's SHA.

On a plain (non-cluster) client the calls travel through an
:class:`AutoPipeline`: calls issued while a round trip is in flight are
sent together as one pipeline when it returns, each still its own atomic
program call.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
from collections.abc import Callable, Coroutine
from importlib import resources
from typing import Any, Final

__all__ = ["FUNCTION", "LIBRARY", "SHA", "SOURCE", "AutoPipeline", "LuaProgram", "pack"]

#: The program as a script: its last line runs it.
SOURCE: Final = resources.files(__package__).joinpath("ops.lua").read_text(encoding="utf-8")
SHA: Final = hashlib.sha1(SOURCE.encode()).hexdigest()
#: The same code as a function library, named after its hash, so runtimes of
#: different versions can share one Redis. Bytes: redis-py sends them as they are.
FUNCTION: Final = f"motia_state_{SHA[:16]}_ops".encode()
LIBRARY: Final = f"#!lua name=motia_state_{SHA[:16]}\n" + SOURCE.replace(
    "\nreturn run(KEYS, ARGV)\n", f"\nredis.register_function('{FUNCTION.decode()}', run)\n"
)


def _arg(value: Any) -> bytes:
    """One argument as redis-py would send it: bytes as they are, text as UTF-8, numbers as their digits."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value).encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"cannot send {type(value).__name__} to Redis")


def _bulk(value: Any) -> bytes:
    data = value if type(value) is bytes else _arg(value)
    return b"$%d\r\n%b\r\n" % (len(data), data)


def pack(*args: Any) -> bytes:
    """One command in the Redis protocol (RESP), as ``connection.pack_command`` packs it, in one buffer."""
    return b"*%d\r\n" % len(args) + b"".join([_bulk(a) for a in args])


class _Incomplete(Exception):
    """The buffer ends inside a reply; ``need``: the buffer length it needs at least (0: unknown).

    Knowing it lets a large value be read in whole before it is parsed
    again, instead of parsing the growing buffer once per read.
    """

    def __init__(self, need: int = 0) -> None:
        super().__init__()
        self.need = need


_INCOMPLETE: Final = _Incomplete()
_CR: Final = b"\r\n"


def parse_reply(buf: bytes, pos: int, error: Callable[[str], Exception]) -> tuple[Any, int]:
    """The reply starting at ``buf[pos]`` and where the next one starts (RESP2 and RESP3).

    Values come back as redis-py returns them without decoding: bulk and
    simple strings as bytes, integers as ints, nulls as None, arrays (and
    sets) as lists, maps as dicts. An error reply is returned, not raised,
    as ``error(message)``. Raises :class:`_Incomplete` when the buffer ends
    inside the reply.
    """
    end = buf.find(_CR, pos)
    if end < 0:
        raise _INCOMPLETE
    kind = buf[pos]
    if kind == 36 or kind == 61 or kind == 33:  # $ bulk, = verbatim, ! bulk error
        n = int(buf[pos + 1 : end])
        if n < 0:
            return None, end + 2
        start = end + 2
        stop = start + n
        if len(buf) < stop + 2:
            raise _Incomplete(stop + 2)
        data = buf[start:stop]
        if kind == 36:
            return data, stop + 2
        if kind == 61:
            return data[4:], stop + 2  # "txt:" or "mkd:" first
        return error(data.decode("utf-8", "replace")), stop + 2
    if kind == 58 or kind == 40:  # : integer, ( big number
        return int(buf[pos + 1 : end]), end + 2
    if kind == 43:  # + simple string
        return buf[pos + 1 : end], end + 2
    if kind == 45:  # - error
        return error(buf[pos + 1 : end].decode("utf-8", "replace")), end + 2
    if kind == 42 or kind == 126 or kind == 62:  # * array, ~ set, > push
        n = int(buf[pos + 1 : end])
        pos = end + 2
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            item, pos = parse_reply(buf, pos, error)
            items.append(item)
        return items, pos
    if kind == 37:  # % map
        n = int(buf[pos + 1 : end])
        pos = end + 2
        mapping = {}
        for _ in range(n):
            key, pos = parse_reply(buf, pos, error)
            mapping[key], pos = parse_reply(buf, pos, error)
        return mapping, pos
    if kind == 95:  # _ null
        return None, end + 2
    if kind == 35:  # # boolean
        return buf[pos + 1 : end] == b"t", end + 2
    if kind == 44:  # , double
        return float(buf[pos + 1 : end]), end + 2
    raise ValueError(f"not a Redis reply: {buf[pos : pos + 32]!r}")


def _answer(buf: bytes, pos: int, error: Callable[[str], Exception]) -> tuple[Any, int]:
    """The next reply from ``buf[pos]`` that answers a command, and where the next one starts.

    Push messages (RESP3 ``>``: client-side caching invalidations,
    maintenance notifications) come unasked, between replies: they are
    passed over, so no caller takes one for its reply.
    """
    while pos < len(buf) and buf[pos] == 62:  # > push
        _, pos = parse_reply(buf, pos, error)
    return parse_reply(buf, pos, error)


def _pushes_only(buf: bytes, pos: int, error: Callable[[str], Exception]) -> bool:
    """Whether what ``buf`` holds from ``pos`` is push messages (the last one perhaps cut), and nothing else."""
    try:
        while pos < len(buf):
            if buf[pos] != 62:
                return False
            _, pos = parse_reply(buf, pos, error)
    except _Incomplete:
        pass
    return True


_timeout: Any = getattr(asyncio, "timeout", None)  # Python >= 3.11


async def _read_more(conn: Any, buf: bytes, need: int, errors: Any) -> bytes:
    """``buf`` and what ``conn`` brings next: at least one read, and reads until ``need`` bytes.

    Each read waits at most the connection's socket timeout. The pieces are
    joined once, so a large reply costs its size, not its size times the
    number of reads. Failures raise as redis-py's ``TimeoutError`` or
    ``ConnectionError``; the caller drops the connection.
    """
    chunks = [buf] if buf else []
    have = len(buf)
    reader = conn._reader
    timeout = conn.socket_timeout
    try:
        while True:
            want = max(65536, need - have)
            if not timeout:
                data = await reader.read(want)
            elif _timeout is not None:
                async with _timeout(timeout):
                    data = await reader.read(want)
            else:  # pragma: no cover - Python 3.10
                data = await asyncio.wait_for(reader.read(want), timeout)
            if not data:
                raise errors.ConnectionError("Connection closed by server.")
            chunks.append(data)
            have += len(data)
            if have >= need:
                break
    except asyncio.TimeoutError:
        raise errors.TimeoutError(f"Timeout reading from Redis after {timeout} s") from None
    except OSError as e:
        raise errors.ConnectionError(f"Error while reading from Redis: {e}") from e
    more: bytes = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return more


async def _read_reply(conn: Any, errors: Any) -> tuple[Any, bool]:
    """The reply to the one command just written on ``conn``, and whether ``conn`` is still in step.

    Not in step (False): push messages came after the reply, which no
    command will read, so the caller drops the connection; anything else
    after the reply raises ``InvalidResponse``. The caller drops the
    connection on any failure too.
    """
    error = conn._parser.parse_error
    buf = await _read_more(conn, b"", 0, errors)
    while True:
        try:
            reply, pos = _answer(buf, 0, error)
            break
        except _Incomplete as e:
            buf = await _read_more(conn, buf, e.need, errors)
        except ValueError as e:
            raise errors.InvalidResponse(str(e)) from e
    if pos == len(buf):
        return reply, True
    try:
        pushes = _pushes_only(buf, pos, error)
    except ValueError:
        pushes = False
    if not pushes:
        raise errors.InvalidResponse("Redis sent more than the reply asked for")
    return reply, False


class AutoPipeline:
    """Sends the commands issued at the same time from one process in one round trip.

    A command issued while nothing is in flight is written at once, by its
    caller (no added latency). Commands issued while a round trip is in
    flight wait in a queue; when it returns, a task of this pipeline writes
    everything queued as one pipeline (one write, one round trip) and hands
    each caller its own reply, error replies included; commands queued
    while replies are still on their way are written at once, behind them.
    Each command stays what it was (an FCALL is atomic on the server; a
    pipeline is not a transaction), and a caller's commands keep their
    order, since a caller waits for each reply before it sends the next.

    The round trips use one connection taken from the client's pool and
    kept; the replies are read from it here, several per read. A caller
    cancelled while its command waits is left out of the next write; one
    cancelled after the write only loses its reply: the pipeline's task
    reads every reply, so the connection stays in step (a lone caller
    cancelled while it reads its own reply drops the connection, which
    holds nothing else). A lost connection fails every command in flight
    with redis-py's ``ConnectionError`` or ``TimeoutError`` (the adapter's
    UNAVAILABLE); those commands are not sent again, since the server may
    have run them. Push messages (RESP3) answer no command: they are
    passed over wherever a reply is read.
    """

    __slots__ = ("_active", "_closed", "_conn", "_flusher", "_loop", "_queue", "commands", "errors", "pool", "writes")

    def __init__(self, client: Any, errors: Any) -> None:
        self.pool = client.connection_pool
        self.errors = errors
        #: Writes made and commands sent in them (for tests and benchmarks).
        self.writes = 0
        self.commands = 0
        self._conn: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: True while a round trip is owned: a lone caller's, or the flushing task's.
        self._active = False
        self._queue: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    def _stopped(self) -> Exception:
        stopped: Exception = self.errors.ConnectionError("the adapter was closed")
        return stopped

    async def call(self, command: bytes) -> Any:
        """Send ``command`` (packed, as :func:`pack` makes it) and return its reply; an error reply raises.

        After :meth:`aclose` it raises redis-py's ``ConnectionError`` ("the
        adapter was closed") at once: nothing is sent, no connection opened.
        """
        if self._closed:
            raise self._stopped()
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._reset(loop)
        if self._active:
            future: asyncio.Future[Any] = loop.create_future()
            self._queue.append((command, future))
            return await future
        self._active = True
        try:
            conn = await self._connection()
            await self._write(conn, command)
            self.writes += 1
            self.commands += 1
            try:
                reply, in_step = await _read_reply(conn, self.errors)
            except Exception as e:
                await self._drop(conn)  # out of step, or a reply owed on it: it cannot be used again
                if self._closed:  # the close dropped it under this call
                    raise self._stopped() from e
                raise
            except BaseException:
                await self._drop(conn)
                raise
            if not in_step:
                await self._drop(conn)  # it holds bytes that no command will read
            if isinstance(reply, Exception):
                raise reply
            return reply
        finally:
            if self._queue:
                self._flusher = loop.create_task(self._flush())
            else:
                self._active = False

    async def _flush(self) -> None:
        """Write what is queued as soon as this task runs, read the replies in order, until none is left.

        Commands queued while replies are still on their way are written at
        once, behind them on the same connection: the server works on one
        pipeline while this process reads the replies of the one before.
        """
        outstanding: collections.deque[asyncio.Future[Any]] = collections.deque()
        conn: Any = None
        buf, pos = b"", 0
        try:
            while True:
                if not outstanding:
                    # The callers woken by the last replies queue their next
                    # command first: one write for all of them.
                    await asyncio.sleep(0)
                if self._queue:
                    batch = [item for item in self._queue if not item[1].done()]
                    self._queue = []
                    if batch:
                        owed = bool(outstanding)
                        outstanding.extend([future for _, future in batch])
                        if not owed:  # nothing owed on it: check the connection first
                            if pos != len(buf):  # bytes no command asked for (pushes, or out of step)
                                await self._drop(conn)
                            buf, pos = b"", 0
                            conn = await self._connection()
                        await self._write(conn, b"".join([command for command, _ in batch]))
                        self.writes += 1
                        self.commands += len(batch)
                if not outstanding:
                    if pos != len(buf):  # more than the replies owed: the connection is out of step
                        await self._drop(conn)
                    return
                # Half of what is owed at a time: the callers it wakes send
                # their next commands while the server still works on the rest.
                error = conn._parser.parse_error
                for _ in range((len(outstanding) + 1) // 2):
                    while True:
                        try:
                            reply, pos = _answer(buf, pos, error)
                            break
                        except _Incomplete as e:
                            buf = await self._more(conn, buf[pos:], e.need - pos if e.need else 0)
                            pos = 0
                    future = outstanding.popleft()
                    if future.done():
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
                if outstanding:
                    await asyncio.sleep(0)
        except Exception as e:
            # The connection failed: what was written may have run, and is
            # not sent again; what is still queued gets a fresh connection.
            if conn is not None:
                await self._drop(conn)
            if isinstance(e, ValueError):  # not a reply: the connection is out of step
                e = self.errors.InvalidResponse(str(e))
            if self._closed:
                e = self._stopped()
            for future in outstanding:
                if not future.done():
                    future.set_exception(e)
        except BaseException:
            # This task was stopped (the adapter closed): its callers were
            # not cancelled, and what was written may have run. They fail
            # as after a lost connection.
            if conn is not None:
                await self._drop(conn)
            stopped = self._stopped()
            for future in [*outstanding, *(future for _, future in self._queue)]:
                if not future.done():
                    future.set_exception(stopped)
            self._queue = []
            raise
        finally:
            if self._queue and not self._closed:
                self._flusher = asyncio.get_running_loop().create_task(self._flush())
            else:
                self._flusher = None
                self._active = False

    async def _more(self, conn: Any, buf: bytes, need: int = 0) -> bytes:
        """:func:`_read_more` on the pipeline's connection, dropped when the read fails (a reply is owed on it)."""
        try:
            return await _read_more(conn, buf, need, self.errors)
        except BaseException:
            await self._drop(conn)
            raise

    @staticmethod
    async def _drop(conn: Any) -> None:
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)

    async def _connection(self) -> Any:
        conn = self._conn
        if conn is None:
            conn = self._conn = await self.pool.get_connection()
        elif not conn.is_connected or await conn.can_read():
            # Closed by the server, or holding bytes nobody asked for: start afresh.
            await conn.disconnect()
            await conn.connect()
        return conn

    @staticmethod
    async def _write(conn: Any, data: bytes) -> None:
        writer = getattr(conn, "_writer", None)
        if writer is None or writer.transport.is_closing():
            # redis-py's own path (it reconnects; with a socket timeout it costs a task per write).
            await conn.send_packed_command(data, check_health=False)
            return
        # Handed to the socket at once when it has room: no task, no wait.
        writer.write(data)
        if writer.transport.get_write_buffer_size():
            try:
                await asyncio.wait_for(writer.drain(), conn.socket_timeout)
            except BaseException:
                await conn.disconnect(nowait=True)
                raise

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start over on ``loop``: a connection, queue and task belong to the loop that made them."""
        self._loop = loop
        self._conn = None
        self._queue = []
        self._flusher = None
        self._active = False

    async def aclose(self) -> None:
        """Fail what waits or is in flight, stop the task, and give the connection back to the pool.

        Every call waiting for a reply, queued or already written, fails with
        redis-py's ``ConnectionError`` ("the adapter was closed"; the
        adapter's UNAVAILABLE), and so does every later call: none waits
        for ever. A connection with a reply still owed on it is dropped, not
        given back, so that nobody else reads that reply.
        """
        self._closed = True
        busy = self._active
        flusher, self._flusher = self._flusher, None
        if flusher is not None and not flusher.done():
            flusher.cancel()
            with contextlib.suppress(BaseException):
                await flusher
        for _, future in self._queue:
            if not future.done():
                future.set_exception(self._stopped())
        self._queue = []
        # A flusher cancelled before its first step never ran its cleanup.
        self._active = False
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if busy or self._loop is not asyncio.get_running_loop():
            # A caller may be reading its reply on it: dropping it ends that read (the caller fails as closed).
            await self._drop(conn)
            return
        with contextlib.suppress(Exception):
            await self.pool.release(conn)


async def round_trip(pool: Any, command: bytes, errors: Any) -> Any:
    """Send ``command`` (packed) on a connection of ``pool`` and return its reply; an error reply raises.

    The connection is the caller's alone for the round trip, so no reply
    can reach anyone else; it is read by :func:`_read_reply` (push messages
    passed over), which reads a batch's reply of hundreds of items several
    times faster than redis-py's per-command path. Nothing is sent twice: a
    connection lost before the reply fails the call with redis-py's ``ConnectionError`` or
    ``TimeoutError`` (the server may have run it), and the connection is
    dropped. Connecting is retried as the pool's connections retry it.
    """
    conn = await pool.get_connection()
    try:
        idle = conn._reader
        if idle is not None and (idle.at_eof() or idle._buffer):
            # Closed by the server while it sat in the pool (a restart, the
            # server's idle timeout), or holding bytes nobody asked for: the
            # pool does not look when maintenance notifications are on.
            # Nothing is sent on it yet, so a fresh connection is safe.
            await conn.disconnect()
            await conn.connect()
        await AutoPipeline._write(conn, command)
        reply, in_step = await _read_reply(conn, errors)
        if not in_step:
            # The reply stands; the rest of a push may follow, which no command would read.
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
    except BaseException:
        # Out of step, or a reply still owed on it: it cannot serve anyone else.
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)
        await pool.release(conn)
        raise
    await pool.release(conn)
    if isinstance(reply, Exception):
        raise reply
    return reply


class LuaProgram:
    """Calls the program on one client, loading it where the server lacks it.

    On Redis >= 7 through a plain client the program is a function library
    called with FCALL: loaded once, it keeps its helper functions, which a
    script rebuilds on every call. Through a cluster client (whose
    FUNCTION LOAD would reach one node only), or on an older Redis, it is a
    script called with EVALSHA. Either way a server that forgot it (a
    restart without persistence, a flush) gets it again and the call is
    repeated, once. Redis failures propagate as redis-py raises them: the
    adapter translates them at its boundary.

    Through a plain client every call goes through an :class:`AutoPipeline`
    (``pipeline``); through a cluster client each call is its own command,
    routed by redis-py to the node owning its slot.
    """

    __slots__ = ("_loading", "_prefixes", "client", "direct", "errors", "functions", "pipeline")

    def __init__(
        self, client: Any, errors: Any, *, functions: bool, pipeline: bool = False, direct: bool = False
    ) -> None:
        self.client = client
        self.errors = errors  # the redis.exceptions module
        #: FCALL (True) or EVALSHA (False); turns False on a Redis without functions.
        self.functions = functions
        self.pipeline = AutoPipeline(client, errors) if pipeline else None
        #: Without the pipeline, calls packed here and read by :func:`round_trip` (a plain client's pool).
        self.direct = direct and self.pipeline is None
        #: The packed start of a call (command, name, keys, header), per keys and header.
        self._prefixes: dict[tuple[bool, tuple[bytes, ...], bytes], bytes] = {}
        self._loading: asyncio.Future[Any] | None = None

    def _packed(self, keys: tuple[bytes, ...], header: bytes, args: tuple[Any, ...]) -> bytes:
        functions = self.functions
        prefix = self._prefixes.get((functions, keys, header))
        if prefix is None:
            if len(self._prefixes) > 4096:  # bounded
                self._prefixes.clear()
            start = (b"FCALL", FUNCTION) if functions else (b"EVALSHA", SHA)
            prefix = self._prefixes[functions, keys, header] = b"".join(
                [_bulk(a) for a in (*start, str(len(keys)), *keys, header)]
            )
        # Inlined for bytes, which the adapter passes: a batch has hundreds of arguments.
        packed = [b"$%d\r\n%b\r\n" % (len(a), a) if type(a) is bytes else _bulk(a) for a in args]
        return b"*%d\r\n%b%b" % (4 + len(keys) + len(args), prefix, b"".join(packed))

    async def __call__(self, keys: tuple[bytes, ...], header: bytes, *args: Any) -> Any:
        """Run the program on ``keys`` (one slot: they share a hash tag); ``header`` is its ARGV[1]."""
        pipeline = self.pipeline
        if pipeline is not None:
            try:
                return await pipeline.call(self._packed(keys, header, args))
            except self.errors.ResponseError as e:
                return await self._pipelined_again(e, keys, header, args)
        if self.direct:
            try:
                return await round_trip(self.client.connection_pool, self._packed(keys, header, args), self.errors)
            except self.errors.ResponseError as e:
                return await self._pipelined_again(e, keys, header, args)
        client = self.client
        n = len(keys)
        if self.functions:
            try:
                return await client.fcall(FUNCTION, n, *keys, header, *args)
            except self.errors.ResponseError as e:
                message = str(e)
                if "Function not found" in message:
                    await client.function_load(LIBRARY, replace=True)
                    return await client.fcall(FUNCTION, n, *keys, header, *args)
                if "unknown command" not in message.lower():
                    raise
                self.functions = False  # Redis < 7: scripts from now on
        try:
            return await client.evalsha(SHA, n, *keys, header, *args)
        except self.errors.NoScriptError:
            await client.script_load(SOURCE)
            return await client.evalsha(SHA, n, *keys, header, *args)

    async def _pipelined_again(
        self, error: Exception, keys: tuple[bytes, ...], header: bytes, args: tuple[Any, ...]
    ) -> Any:
        """After ``error``: load the program if the server lacks it (or turn to scripts), and call again."""
        pipeline = self.pipeline
        errors = self.errors
        if pipeline is not None:
            send = pipeline.call
        else:
            pool = self.client.connection_pool

            async def send(command: bytes) -> Any:
                return await round_trip(pool, command, errors)

        for _ in range(2):
            message = str(error)
            if self.functions and "Function not found" in message:
                await self._load(send(pack(b"FUNCTION", b"LOAD", b"REPLACE", LIBRARY)))
            elif self.functions and "unknown command" in message.lower():
                self.functions = False  # Redis < 7: scripts from now on
            elif not self.functions and isinstance(error, errors.NoScriptError):
                await self._load(send(pack(b"SCRIPT", b"LOAD", SOURCE)))
            else:
                raise error
            try:
                return await send(self._packed(keys, header, args))
            except errors.ResponseError as e:
                error = e
        raise error

    async def _load(self, load: Coroutine[Any, Any, Any]) -> None:
        """Load the program, once for every call that found it missing at the same time."""
        loading = self._loading
        if loading is None or loading.done():
            loading = self._loading = asyncio.ensure_future(load)
        else:
            load.close()
        await asyncio.shield(loading)

    async def aclose(self) -> None:
        """Release what the calls hold (the pipeline's connection)."""
        if self.pipeline is not None:
            await self.pipeline.aclose()
