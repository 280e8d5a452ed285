"""The Redis adapter: one shared state for runtimes on several hosts.

- ``adapter.py``: :class:`RedisStateAdapter`: the key layout, argument
  checks, the encoding of operations for the server, change events, and the
  translation of every Redis and decoding failure into a state error.
- ``ops.lua``: the Lua program, the server-side twin of ``ops.py``; each of
  its modes (one operation, transaction, batch, commit, clear) is listed in
  its header.
- ``program.py``: :class:`LuaProgram`, the one way the program is called
  (a function library, or a script by SHA, loaded again when Redis forgot it).
- ``fallback.py``: :class:`FallbackStateAdapter`, memory only when Redis
  cannot be reached at first use, and only when configured.

Importing this package does not import redis-py: the client library is
loaded when an adapter is created.
"""

from .adapter import RedisStateAdapter
from .fallback import FallbackStateAdapter

__all__ = ["FallbackStateAdapter", "RedisStateAdapter"]
