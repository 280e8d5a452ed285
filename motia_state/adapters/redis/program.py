"""The Lua program (``ops.lua``) and the one way the adapter calls it.

Every server-side step of the Redis adapter (a single operation, a
transaction, a batch, the commit of a transaction computed in Python, a
clear that reports what it removed) is one mode of one program, and every
call goes through :class:`LuaProgram`, which owns how the program reaches
the server, as redis-py's ``Script`` object owns a script's SHA.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any, Final

__all__ = ["FUNCTION", "LIBRARY", "SHA", "SOURCE", "LuaProgram"]

#: The program as a script: its last line runs it.
SOURCE: Final = resources.files(__package__).joinpath("ops.lua").read_text(encoding="utf-8")
SHA: Final = hashlib.sha1(SOURCE.encode()).hexdigest()
#: The same code as a function library, named after its hash, so runtimes of
#: different versions can share one Redis. Bytes: redis-py sends them as they are.
FUNCTION: Final = f"motia_state_{SHA[:16]}_ops".encode()
LIBRARY: Final = f"#!lua name=motia_state_{SHA[:16]}\n" + SOURCE.replace(
    "\nreturn run(KEYS, ARGV)\n", f"\nredis.register_function('{FUNCTION.decode()}', run)\n"
)


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
    """

    __slots__ = ("client", "errors", "functions")

    def __init__(self, client: Any, errors: Any, *, functions: bool) -> None:
        self.client = client
        self.errors = errors  # the redis.exceptions module
        #: FCALL (True) or EVALSHA (False); turns False on a Redis without functions.
        self.functions = functions

    async def __call__(self, keys: tuple[bytes, ...], header: bytes, *args: Any) -> Any:
        """Run the program on ``keys`` (one slot: they share a hash tag); ``header`` is its ARGV[1]."""
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
