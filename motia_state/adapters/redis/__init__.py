"""The Redis adapter: one shared state for runtimes on several hosts.

- ``adapter.py``: :class:`RedisStateAdapter`: argument checks, the
  encoding of operations for the server, change events, the feed's and the
  listing's reads, and the translation of every Redis and decoding failure
  into a state error.
- ``layout.py``: where things are kept (shards, each a hash tag shared by
  its groups' hashes, its feed stream and its group index), the layout
  marker, :class:`RedisLayoutError`, :func:`upgrade_layout`, which
  upgrades a store of layout 2 in place, and :func:`iter_legacy_entries`,
  which reads the layout before the feed for ``motia-state migrate``
  (:func:`migrate_legacy_layout`, in ``adapter.py``, moves it in place).
- ``stream.py``: :class:`RedisChangeStream`, what ``changes()`` returns,
  the cursors over every shard, and the feed's stream entries (one per
  write call, holding all of its records).
- ``ops.lua``: the Lua program, the server-side twin of ``ops.py``; each of
  its modes (one operation, transaction, batch, commit, clear, and the
  reading modes) is listed in its header; every write appends its feed
  records (one stream entry per call) and keeps the group index in the
  same call.
- ``program.py``: :class:`LuaProgram`, the one way the program is called
  (a function library, or a script by SHA, loaded again when Redis forgot it),
  and :class:`AutoPipeline`, which sends the calls issued together from one
  process in shared round trips on one connection.
- ``fallback.py``: :class:`FallbackStateAdapter`, memory only when Redis
  cannot be reached at first use, and only when configured.

Importing this package does not import redis-py: the client library is
loaded when an adapter is created.
"""

from .adapter import RedisStateAdapter, migrate_legacy_layout
from .fallback import FallbackStateAdapter
from .layout import RedisLayoutError, iter_legacy_entries, upgrade_layout

__all__ = [
    "FallbackStateAdapter",
    "RedisLayoutError",
    "RedisStateAdapter",
    "iter_legacy_entries",
    "migrate_legacy_layout",
    "upgrade_layout",
]
