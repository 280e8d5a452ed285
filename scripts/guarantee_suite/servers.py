"""A throwaway redis-server for the sections that need one (the test suite's own ``RedisServer``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.helpers import RedisServer


@contextmanager
def redis_server(directory: Path, appendfsync: str | None = None) -> Iterator[RedisServer | None]:
    """A redis-server on a free loopback port with its files in ``directory``, or None when it is not installed."""
    if shutil.which("redis-server") is None:
        yield None
        return
    # Imported here: the test helpers bring pytest, which only the sections that start a server need.
    from tests.helpers import RedisServer

    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer(str(directory), appendfsync=appendfsync).start()
    try:
        yield server
    finally:
        server.stop()
