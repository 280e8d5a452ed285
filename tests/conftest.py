"""Fixtures shared by the test modules."""

from __future__ import annotations

import contextlib
import subprocess
import weakref
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from .helpers import RedisClusterServers, RedisServer

# Every child process a test starts, so that one the test leaves running
# (it failed before stopping it) is stopped when the test ends. Left alone,
# it would outlive the test and fail a later, unrelated one: the warnings
# its Popen and pipes give when they are collected are errors here.
_started: list[weakref.ref[subprocess.Popen[Any]]] = []
_broad_fixtures = 0  # > 0 while a session or module fixture sets up: its processes are its own
_popen_init = subprocess.Popen.__init__


def _tracking_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
    _popen_init(self, *args, **kwargs)
    if not _broad_fixtures:
        _started.append(weakref.ref(self))


subprocess.Popen.__init__ = _tracking_init  # type: ignore[method-assign]


class _BroadFixtures:
    """Counts the session and module fixtures setting up: the processes they start are their own.

    A plugin, not a hook of this conftest: a session fixture is set up
    through the session's hooks, which a conftest below the root does not see.
    """

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any]) -> Generator[None, Any, Any]:
        global _broad_fixtures
        broad = fixturedef.scope != "function"
        _broad_fixtures += broad
        try:
            return (yield)
        finally:
            _broad_fixtures -= broad


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_BroadFixtures(), "motia-broad-fixtures")


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    """Kill and reap what the test started and did not wait for (set up first, so it runs last)."""
    first = len(_started)
    yield
    for ref in _started[first:]:
        proc = ref()
        if proc is None or proc.returncode is not None:
            continue
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
    del _started[first:]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (tests use their own key prefixes)."""
    server = RedisServer(str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A three-primary Redis Cluster for the session."""
    cluster = RedisClusterServers(str(tmp_path_factory.mktemp("redis-cluster"))).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix unique to the test, so tests sharing the server never meet."""
    return f"test:{abs(hash(request.node.nodeid))}:"
