"""``motia-state dev -vv``: every state operation a step performs is logged with group, key, op and duration."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ..app.devserver import DevServer

COUNTER = """
config = {"name": "Count", "triggers": [{"type": "api", "method": "POST", "path": "/count/:who"}]}

async def handler(req, ctx):
    n = await ctx.state.increment("visits", req["pathParams"]["who"], 1)
    return {"status": 200, "body": {"visits": n}}
"""

OPERATION = re.compile(r"motia_state\.operations: increment visits ada \d+\.\d{3} ms OK$", re.MULTILINE)


class _GlobalFirst(DevServer):
    """``motia-state -vv dev DIR``: the global option before the command's name."""

    def start(self, tmp: Path, wait: bool = True) -> DevServer:
        self._out, self._err = tmp / "dev.out", tmp / "dev.err"
        argv = [sys.executable, "-m", "motia_state", *self.args, "dev", str(self.root), "--port", str(self.port)]
        with open(self._out, "w") as out, open(self._err, "w") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True, env=self.env)
        self.wait_ready()
        return self


def _app(root: Path) -> Path:
    root.mkdir()
    (root / "count.step.py").write_text(COUNTER)
    return root


@pytest.mark.parametrize("server_class", [DevServer, _GlobalFirst], ids=["after", "before"])
def test_dev_vv_logs_each_state_operation_of_a_step(server_class: type[DevServer], tmp_path: Path) -> None:
    root = _app(tmp_path / "app")
    with server_class(root, "-vv", "--state", f"file:{tmp_path / 'state'}").start(tmp_path) as server:
        assert server.client.post("/count/ada").json() == {"visits": 1}
        server.wait_output("increment visits ada", stream="stderr")
        assert server.stop(signal.SIGTERM) == 0
        assert OPERATION.search(server.stderr), server.output()


def test_dev_without_vv_logs_no_state_operation(tmp_path: Path) -> None:
    root = _app(tmp_path / "app")
    with DevServer(root, "-v").start(tmp_path) as server:
        assert server.client.post("/count/ada").json() == {"visits": 1}
        assert server.stop(signal.SIGTERM) == 0
        assert "motia_state.operations" not in server.stderr, server.output()


LOGGER = """
config = {"name": "Talk", "triggers": [{"type": "api", "method": "GET", "path": "/talk"}]}

def handler(req, ctx):
    ctx.logger.info("a step log line")
    return {"ok": True}
"""


@pytest.mark.parametrize("quiet", [False, True], ids=["default", "-q"])
def test_dev_shows_step_logs_unless_q(quiet: bool, tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "talk.step.py").write_text(LOGGER)
    with DevServer(root, *(["-q"] if quiet else [])).start(tmp_path) as server:
        assert server.client.get("/talk").json() == {"ok": True}
        server.wait_output(" Talk [api GET /talk] ")  # the invocation line is a result: it stays
        assert server.stop(signal.SIGTERM) == 0
        assert ("[Talk] a step log line" in server.stderr) is not quiet, server.output()
