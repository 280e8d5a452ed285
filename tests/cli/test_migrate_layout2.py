"""``migrate`` over a Redis of layout 2 (one stream entry per feed record): upgraded in place, records and cursors kept."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import RedisServer
from ._cli import cli, dump_store

PREFIX = "motia:state:"  # the Redis adapter's default key_prefix, the one a redis:// URL uses
FEED = PREFIX + "{s0}:feed"


@pytest.fixture
def layout2(redis_server: RedisServer) -> Iterator[tuple[str, Any]]:
    """A Redis database holding a store as a runtime of layout 2 wrote it; emptied afterwards."""
    redis = pytest.importorskip("redis")
    url = redis_server.url.rsplit("/", 1)[0] + "/11"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.set(PREFIX + "layout", json.dumps({"layout": 2, "shards": 1}))
    client.hset(PREFIX + "{s0}:g:orders", mapping={"a": "2", "b": '"x"'})
    client.zadd(PREFIX + "{s0}:groups", {"orders": 0})
    for n, (key, op, old, new) in enumerate(
        [("a", "set", "", "1"), ("b", "set", "", '"x"'), ("a", "increment", "1", "2")]
    ):
        fields = {"g": "orders", "k": key, "o": op, "a": old, "b": new, "x": f"{1700000000000 + n} 0"}
        client.xadd(FEED, fields, id=f"0-{n + 1}")
    yield url, client
    client.flushdb()
    client.close()


def test_layout_2_is_refused_naming_migrate_then_upgraded_in_place(layout2: tuple[str, Any], tmp_path: Path) -> None:
    url, client = layout2
    marker = client.get(PREFIX + "layout")
    refused = cli("state", "set", "orders", "c", "1", "--state", url)
    assert refused.returncode == 2 and "motia-state migrate" in refused.stderr, refused.stderr
    assert client.hget(PREFIX + "{s0}:g:orders", "c") is None and client.xlen(FEED) == 3  # nothing written

    dry = cli("migrate", "--from", url, "--to", url, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {"inPlace": True, "dryRun": True, "upgraded": False, "fromLayout": 2, "shards": 1}
    elsewhere = cli("migrate", "--from", url, "--to", f"file:{tmp_path / 'new'}", cwd=tmp_path)
    assert elsewhere.returncode == 2 and "upgrade it in place" in elsewhere.stderr, elsewhere.stderr
    for option in ("--verify", "--follow"):
        assert cli("migrate", "--from", url, "--to", url, option, cwd=tmp_path).returncode == 2
    assert client.get(PREFIX + "layout") == marker

    proc = cli("migrate", "--from", url, "--to", url, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"inPlace": True, "upgraded": True, "fromLayout": 2, "shards": 1}
    assert json.loads(client.get(PREFIX + "layout")) == {"layout": 3, "shards": 1}
    assert dump_store(url) == {"orders": {"a": 2, "b": "x"}}
    history = json.loads(cli("state", "history", "orders", "a", "--state", url).stdout)
    assert [(h["cursor"], h["newValue"]) for h in history] == [("r.3", 2), ("r.1", 1)]
    assert cli("state", "set", "orders", "a", "3", "--state", url).returncode == 0
    history = json.loads(cli("state", "history", "orders", "a", "--state", url).stdout)
    assert [(h["cursor"], h["newValue"]) for h in history] == [("r.4", 3), ("r.3", 2), ("r.1", 1)]

    again = cli("migrate", "--from", url, "--to", url, cwd=tmp_path)
    assert again.returncode == 2 and "the same store" in again.stderr  # nothing left to upgrade
