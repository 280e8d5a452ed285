"""``motia-state dev``: a real uvicorn server in a subprocess, over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ..helpers import RedisServer
from .devserver import DevServer

SLOW = """
import asyncio

config = {"name": "Slow", "triggers": [{"type": "api", "method": "POST", "path": "/slow"}], "emits": ["done"]}

async def handler(req, ctx):
    ctx.logger.info("sleeping", seconds=req["body"]["seconds"])
    await asyncio.sleep(req["body"]["seconds"])
    return {"slept": req["body"]["seconds"]}
"""

GREET = """
config = {{"name": "Greet", "triggers": [{{"type": "api", "method": "GET", "path": "/greet/:who"}}]}}

def handler(req, ctx):
    return {{"status": 200, "body": {{"{word}": req["pathParams"]["who"]}}}}
"""


def make_app(root: Path) -> Path:
    root.mkdir(exist_ok=True)
    (root / "slow.step.py").write_text(SLOW)
    (root / "greet.step.py").write_text(GREET.format(word="hello"))
    return root


def test_sigterm_lets_a_running_invocation_finish_then_exits_0(tmp_path: Path) -> None:
    root = make_app(tmp_path / "app")
    with DevServer(root, "--grace", "10").start(tmp_path) as server:
        out = server.wait_output("workbench: ")
        assert "POST   /slow  -> Slow" in out and "GET    /greet/:who  -> Greet" in out
        assert f"workbench: {server.url}/__motia" in out
        assert server.client.get("/greet/ann").json() == {"hello": "ann"}

        answers: list[httpx.Response] = []
        request = threading.Thread(target=lambda: answers.append(server.client.post("/slow", json={"seconds": 1.5})))
        request.start()
        server.wait_output("sleeping", stream="stderr")
        assert server.stop(signal.SIGTERM) == 0
        request.join(10)
        assert [a.status_code for a in answers] == [200] and answers[0].json() == {"slept": 1.5}
        out = server.stdout
        assert "SIGTERM: stopping" in out and out.rstrip().endswith("stopped")
        assert "[Slow] sleeping {'seconds': 1.5}" in server.stderr  # step logs carry the step's name
        lines = [line for line in out.splitlines() if " Greet [api GET /greet/ann] traceId=" in line]
        assert len(lines) == 1 and lines[0].endswith(" ok"), out
        assert "Traceback" not in server.stderr


def test_an_open_workbench_tab_does_not_hold_up_a_stop(tmp_path: Path) -> None:
    # The page keeps its change stream open: a stop must not wait the whole
    # grace period for it, nor end in uvicorn's traceback.
    root = make_app(tmp_path / "app")
    with DevServer(root, "--grace", "30").start(tmp_path) as server:
        server.wait_output("workbench: ")
        with server.client.stream("GET", "/__motia/state/changes") as r:
            lines = r.iter_lines()  # kept: dropping the iterator would close the stream
            assert next(lines).startswith(":")
            started = time.monotonic()
            assert server.stop(signal.SIGTERM) == 0
            took = time.monotonic() - started
        assert took < 15, f"stopping took {took:.1f} s"  # not the 30 s grace
        assert "Traceback" not in server.stderr and "ERROR" not in server.stderr, server.stderr
        assert server.stdout.rstrip().endswith("stopped")


@pytest.mark.parametrize("signals", [1, 2])
def test_an_invocation_that_outlives_the_grace_period_is_stopped(tmp_path: Path, signals: int) -> None:
    # One signal: the invocation gets --grace seconds, then is stopped and
    # answered 503; a second signal stops it at once.
    root = make_app(tmp_path / "app")
    grace = "2" if signals == 1 else "30"
    with DevServer(root, "--grace", grace).start(tmp_path) as server:
        answers: list[httpx.Response] = []
        request = threading.Thread(target=lambda: answers.append(server.client.post("/slow", json={"seconds": 60})))
        request.start()
        server.wait_output("sleeping", stream="stderr")
        started = time.monotonic()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGINT)
        if signals == 2:
            server.wait_output("SIGINT: stopping")
            server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(40) == 0
        took = time.monotonic() - started
        request.join(10)
        assert took < 8, f"stopping took {took:.1f} s\n{server.output()}"
        assert [a.status_code for a in answers] == [503], answers and answers[0].text
        assert answers[0].json()["code"] == "UNAVAILABLE"
        assert "Traceback" not in server.stderr and "ERROR" not in server.stderr, server.stderr


def test_sigint_exits_0_too(tmp_path: Path) -> None:
    root = make_app(tmp_path / "app")
    with DevServer(root).start(tmp_path) as server:
        assert server.stop(signal.SIGINT) == 0
        assert "SIGINT: stopping" in server.stdout and "Traceback" not in server.stderr


def test_watch_picks_up_an_edit_and_keeps_the_last_good_version_on_a_config_error(tmp_path: Path) -> None:
    root = make_app(tmp_path / "app")
    with DevServer(root, "--watch").start(tmp_path) as server:
        assert server.client.get("/greet/bo").json() == {"hello": "bo"}
        greet = root / "greet.step.py"
        greet.write_text(GREET.format(word="bonjour"))
        deadline = time.monotonic() + 20
        while server.client.get("/greet/bo").json() != {"bonjour": "bo"}:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)

        (root / "added.step.py").write_text(
            'config = {"name": "Added", "triggers": [{"type": "api", "method": "GET", "path": "/added"}]}\n'
            "def handler(req, ctx):\n    return {'added': True}\n"
        )
        server.wait_output("GET    /added  -> Added")
        assert server.client.get("/added").json() == {"added": True}

        # The last good config keeps serving (the route stays); the code is read from disk at each new worker.
        (root / "added.step.py").write_text(
            'config = {"name": "Added", "triggers": [{"type": "evnt", "topic": "t"}]}\n'
            "def handler(req, ctx):\n    return {'added': 'still'}\n"
        )
        err = server.wait_output("keep their last good config", stream="stderr")
        assert 'added.step.py: config.triggers[0].type: unknown trigger type "evnt"' in err
        assert server.client.get("/added").json() == {"added": "still"}

        (root / "added.step.py").unlink()
        deadline = time.monotonic() + 20
        while server.client.get("/added").status_code != 404:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        assert server.stop() == 0


def test_a_config_error_refuses_to_start_with_exit_2(tmp_path: Path) -> None:
    root = make_app(tmp_path / "app")
    (root / "bad.step.py").write_text('config = {"name": "Greet", "triggers": []}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "motia_state.cli", "dev", str(root), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "config error: greet.step.py: config.name: the name 'Greet' is already used by bad.step.py" in proc.stderr


def test_a_public_host_needs_a_token(tmp_path: Path) -> None:
    root = make_app(tmp_path / "app")
    proc = subprocess.run(
        [sys.executable, "-m", "motia_state.cli", "dev", str(root), "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "MOTIA_TOKEN"},
    )
    assert proc.returncode == 2
    assert "refusing to serve on 0.0.0.0 without a token" in proc.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_with_a_token_the_workbench_needs_the_bearer_and_the_api_does_not(tmp_path: Path, how: str) -> None:
    root = make_app(tmp_path / "app")
    args = ("--host", "0.0.0.0", "--token", "s3cret") if how == "flag" else ("--host", "0.0.0.0")
    env = {"MOTIA_TOKEN": "s3cret"} if how == "env" else None
    with DevServer(root, *args, env=env).start(tmp_path) as server:
        # The printed address carries the token in its fragment, for the page to open its session,
        # and names loopback, which a browser opens (it refuses 0.0.0.0).
        assert f"workbench: http://127.0.0.1:{server.port}/__motia/#s3cret" in server.wait_output("workbench: ")
        assert server.client.get("/__motia").status_code == 401
        wrong = server.client.get("/__motia", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "UNAUTHORIZED"
        ok = server.client.get("/__motia", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and [s["name"] for s in ok.json()["steps"]] == ["Greet", "Slow"]
        assert server.client.get("/greet/x").status_code == 200
        assert server.stop() == 0


def test_an_unreachable_store_exits_3_before_serving(tmp_path: Path) -> None:
    root = make_app(tmp_path / "app")
    # A store that is there, but whose lock file cannot be opened (a folder is in its place).
    broken = tmp_path / "store"
    (broken / "lock").mkdir(parents=True)
    (broken / "log").write_bytes(b"")
    for state in (f"file:{broken}", "redis://127.0.0.1:1/0"):
        proc = subprocess.run(
            [sys.executable, "-m", "motia_state.cli", "dev", str(root), "--port", "0", "--state", state],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 3, (state, proc.stdout, proc.stderr)
        assert "UNAVAILABLE" in proc.stderr and "Traceback" not in proc.stderr
        assert "workbench:" not in proc.stdout  # nothing is announced that is not served


def test_a_taken_port_exits_1(tmp_path: Path) -> None:
    import socket

    root = make_app(tmp_path / "app")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "motia_state.cli", "dev", str(root), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    assert "address already in use" in proc.stderr
    # One message that says what to do, not the server library's log line.
    assert f"127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr and "ERROR:" not in proc.stderr
    assert "workbench:" not in proc.stdout  # nothing is announced that is not served


def test_a_signal_while_the_configs_load_stops_cleanly(tmp_path: Path) -> None:
    root = make_app(tmp_path / "app")
    # A step whose runner takes a while to load: the signal comes while configs are read.
    (root / "slow_load.step.py").write_text(
        "import sys, time\nprint('loading', file=sys.stderr, flush=True)\ntime.sleep(3)\n"
        "config = {'name': 'SlowLoad', 'triggers': []}\ndef handler(d, c): pass\n"
    )
    server = DevServer(root).start(tmp_path, wait=False)
    with server:
        server.wait_output("[slow_load.step.py] loading", stream="stderr")
        assert server.stop(signal.SIGTERM, timeout=20) == 0, server.output()
        assert "SIGTERM: stopping" in server.stdout and "workbench:" not in server.stdout
        assert "Traceback" not in server.stderr


def test_a_step_file_without_a_config_is_named_as_not_served(tmp_path: Path) -> None:
    root = make_app(tmp_path / "app")
    (root / "helper.step.py").write_text("def handler(data, ctx):\n    return 1\n")  # forgot its config
    with DevServer(root).start(tmp_path) as server:
        out = server.wait_output("workbench: ")
        assert "not served (no config): helper.step.py" in out, out
        assert server.stop() == 0


def test_a_typescript_step_is_named_as_not_served_unless_its_javascript_is_beside_it(tmp_path: Path) -> None:
    # TypeScript is not run: a step ported from Motia must not go missing without a word.
    root = make_app(tmp_path / "app")
    ts = "export const config = { name: 'Typed', triggers: [] }\nexport const handler = async () => {}\n"
    (root / "typed.step.ts").write_text(ts)
    (root / "built.step.ts").write_text(ts.replace("Typed", "Built"))
    (root / "built.step.js").write_text(
        "exports.config = { name: 'Built', triggers: [] }\nexports.handler = async () => {}\n"
    )
    with DevServer(root).start(tmp_path) as server:
        out = server.wait_output("workbench: ")
        assert "not served (TypeScript: compile it to JavaScript): typed.step.ts" in out, out
        assert "built.step.ts" not in out, out
        assert server.stop() == 0


def test_a_reader_of_its_output_that_goes_away_does_not_break_the_server(tmp_path: Path) -> None:
    # `motia-state dev | head`: once head exits, the server keeps serving and stops cleanly.
    root = make_app(tmp_path / "app")
    port = DevServer(root).port
    argv = [sys.executable, "-m", "motia_state.cli", "dev", str(root), "--port", str(port)]
    with open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("motia-state dev:")
        proc.stdout.close()  # the reader is gone
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert client.get("/greet/ann").json() == {"hello": "ann"}
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            assert client.get("/greet/bob").json() == {"hello": "bob"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    errors = (tmp_path / "err").read_text()
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors


def test_the_summary_names_the_store_without_its_password(tmp_path: Path, redis_server: RedisServer) -> None:
    # The default user takes any password (nopass), so the URL works as given and its password must not show.
    url = f"redis://default:s3cret@127.0.0.1:{redis_server.port}/0"
    with DevServer(make_app(tmp_path / "app"), "--state", url).start(tmp_path) as server:
        out = server.wait_output("workbench: ")
        assert f"on state redis://***@127.0.0.1:{redis_server.port}/0" in out, out
        assert server.stop() == 0
        assert "s3cret" not in server.stdout and "s3cret" not in server.stderr


def test_cors_origins_are_given_repeated_or_comma_separated(tmp_path: Path) -> None:
    root = make_app(tmp_path / "app")
    args = ("--cors", "http://a.example, http://b.example", "--cors", "http://c.example")
    with DevServer(root, *args).start(tmp_path) as server:
        out = server.wait_output("workbench: ")
        assert "(CORS): http://a.example, http://b.example, http://c.example" in out
        for origin in ("http://b.example", "http://c.example"):
            r = server.client.get("/greet/x", headers={"origin": origin})
            assert r.headers["access-control-allow-origin"] == origin
        r = server.client.get("/greet/x", headers={"origin": "http://d.example"})
        assert "access-control-allow-origin" not in r.headers
        server.wait_output("--cors http://d.example", stream="stderr")  # the refusal says how to allow it
        assert server.stop() == 0
