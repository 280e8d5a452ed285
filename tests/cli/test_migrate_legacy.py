"""``migrate`` over a Redis written in the layout before the change feed (one hash per group, no marker)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import RedisServer
from ._cli import cli, dump_store

PREFIX = "motia:state:"  # the Redis adapter's default key_prefix, the one a redis:// URL uses

#: The old layout as a runtime of that version wrote it: ``<prefix>{<group>}`` hashes of compact JSON.
LEGACY: dict[str, dict[str, str]] = {
    "orders": {"a": '{"total":3,"items":["x"]}', "b": "0", "c": "null"},
    "with}brace": {"k": "true"},
    "users": {"ü": '""'},
}
EXPECTED = {
    "orders": {"a": {"total": 3, "items": ["x"]}, "b": 0, "c": None},
    "users": {"ü": ""},
    "with}brace": {"k": True},
}


@pytest.fixture
def legacy(redis_server: RedisServer) -> Iterator[tuple[str, Any]]:
    """A Redis database holding the old layout, plus a reserved group of that runtime; emptied afterwards."""
    redis = pytest.importorskip("redis")
    url = redis_server.url.rsplit("/", 1)[0] + "/13"
    client = redis.Redis.from_url(url)
    client.flushdb()
    for group, fields in LEGACY.items():
        escaped = group.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
        client.hset(f"{PREFIX}{{{escaped}}}", mapping=fields)
    client.hset(PREFIX + "{__motia/positions}", "t", '"r.1"')
    yield url, client
    client.flushdb()
    client.close()


def _legacy_keys(client: Any) -> list[bytes]:
    return sorted(k for k in client.keys(PREFIX + "{*}") if k.endswith(b"}"))


def test_the_old_layout_is_refused_with_advice_naming_migrate(legacy: tuple[str, Any]) -> None:
    url, client = legacy
    proc = cli("state", "get", "orders", "a", "--state", url)
    assert proc.returncode == 2, proc.stderr
    assert "[INVALID_ARGUMENT]" in proc.stderr and "motia-state migrate" in proc.stderr
    assert client.get(PREFIX + "layout") is None  # nothing written


def test_migrate_copies_the_old_layout_into_another_store_and_verifies(legacy: tuple[str, Any], tmp_path: Path) -> None:
    url, client = legacy
    before = _legacy_keys(client)
    target = f"file:{tmp_path / 'new'}"
    proc = cli("migrate", "--from", url, "--to", target, "--verify", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"copied": 5, "differences": []}
    assert dump_store(target) == EXPECTED  # the old runtime's reserved group is not copied
    assert _legacy_keys(client) == before and client.get(PREFIX + "layout") is None  # the source is left as it was
    assert not list(tmp_path.glob(".motia-migrate-*"))  # the checkpoint is gone once complete

    client.hset(PREFIX + "{orders}", "b", "7")
    again = cli("migrate", "--from", url, "--to", target, "--verify", "--dry-run", cwd=tmp_path)
    assert again.returncode == 1, again.stderr
    assert json.loads(again.stdout)["differences"] == [{"group": "orders", "key": "b", "side": "different values"}]


def test_migrate_onto_the_same_redis_moves_the_old_layout_in_place(legacy: tuple[str, Any], tmp_path: Path) -> None:
    url, client = legacy
    dry = cli("migrate", "--from", url, "--to", url, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {"inPlace": True, "dryRun": True, "moved": 0, "toMove": 5}
    assert client.get(PREFIX + "layout") is None and len(_legacy_keys(client)) == 4  # nothing written
    for option in ("--verify", "--follow"):
        refused = cli("migrate", "--from", url, "--to", url, option, cwd=tmp_path)
        assert refused.returncode == 2 and "in place" in refused.stderr, refused.stderr
    assert len(_legacy_keys(client)) == 4

    proc = cli("migrate", "--from", url, "--to", url, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"inPlace": True, "moved": 6}  # the reserved group moves too
    assert "moved 6 entries" in proc.stderr
    assert _legacy_keys(client) == [] and json.loads(client.get(PREFIX + "layout"))["layout"] == 3
    assert dump_store(url) == EXPECTED
    assert json.loads(cli("state", "get", "orders", "a", "--state", url).stdout) == {"total": 3, "items": ["x"]}
    assert json.loads(cli("state", "history", "orders", "a", "--state", url).stdout) == []  # moving is no change
    assert cli("validate", "--state", url).returncode == 0

    done = cli("migrate", "--from", url, "--to", url, cwd=tmp_path)
    assert done.returncode == 2 and "the same store" in done.stderr  # nothing old is left to move


def test_follow_is_refused_for_the_old_layout_which_has_no_feed(legacy: tuple[str, Any], tmp_path: Path) -> None:
    url, _ = legacy
    proc = cli("migrate", "--from", url, "--to", f"file:{tmp_path / 'new'}", "--follow", cwd=tmp_path)
    assert proc.returncode == 2 and "no feed to follow" in proc.stderr, proc.stderr
    assert not (tmp_path / "new").exists()


def test_a_store_is_not_migrated_onto_itself(tmp_path: Path) -> None:
    store = f"file:{tmp_path / 's'}"
    assert cli("state", "set", "g", "k", "1", "--state", store).returncode == 0
    proc = cli("migrate", "--from", store, "--to", f"file:{tmp_path / 's' / '.'}", cwd=tmp_path)
    assert proc.returncode == 2 and "the same store" in proc.stderr, proc.stderr
