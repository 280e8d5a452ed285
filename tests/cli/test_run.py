"""``motia-state run`` and ``demo``: results, error shapes, exit codes, logs and signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ..helpers import process_alive, require_tool
from ._cli import ROOT, cli, env

EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize("name", ["score.step.py", "score.step.js", "score.step.rb"])
def test_run_prints_the_examples_result(name: str, tmp_path: Path) -> None:
    tool = {"js": "node", "rb": "ruby"}.get(name.rsplit(".", 1)[1])
    if tool:
        require_tool(tool)
    state = f"file:{tmp_path / 'state'}"
    first = cli("run", str(EXAMPLES / name), "--data", '{"points": 5}', "--state", state)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"score": 5, "history": [5]}
    again = cli("run", str(EXAMPLES / name), "--data", '{"points": 2}', "--state", state)
    assert json.loads(again.stdout) == {"score": 7, "history": [5, 7]}, "the file store kept the first run"


CRON_STEPS = {
    "audit.step.py": (
        "config = {'name': 'Audit', 'type': 'cron', 'cron': '0 * * * *'}\n"
        "def handler(context):\n    return {'trace': context.trace_id}\n"
    ),
    "audit.step.js": (
        "exports.config = { name: 'Audit', type: 'cron', cron: '0 * * * *' }\n"
        "exports.handler = async ({ traceId, logger }) => ({ trace: traceId, logger: typeof logger.info })\n"
    ),
    "audit.step.rb": (
        "CONFIG = { name: 'Audit', type: 'cron', cron: '0 * * * *' }.freeze\n"
        "def handler(ctx)\n  { 'trace' => ctx.trace_id }\nend\n"
    ),
}


@pytest.mark.parametrize("name", list(CRON_STEPS))
def test_run_calls_a_cron_step_in_motias_older_shape_with_its_context_alone(name: str, tmp_path: Path) -> None:
    # As Motia (and `dev`) call it: handler(ctx), however the step is started.
    tool = {"js": "node", "rb": "ruby"}.get(name.rsplit(".", 1)[1])
    if tool:
        require_tool(tool)
    step = tmp_path / name
    step.write_text(CRON_STEPS[name])
    proc = cli("run", str(step), "--trace-id", "t-cron")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["trace"] == "t-cron"


def test_run_reports_a_failing_step_as_json_with_a_code(tmp_path: Path) -> None:
    step = tmp_path / "fail.step.py"
    step.write_text("async def handler(data, ctx):\n    raise KeyError('missing')\n")
    proc = cli("run", str(step), "--json")
    assert proc.returncode == 1
    error = json.loads(proc.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "STEP_FAILED" and "KeyError" in error["message"]


def test_demo_races_every_language_and_checks_the_totals() -> None:
    require_tool("node")
    require_tool("ruby")
    proc = cli("demo", "--workers", "2", "--rounds", "30")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert report["languages"] == ["python", "node", "ruby"]
    assert report["checks"]["counter"] == {"got": 180, "want": 180}


def test_demo_on_the_file_store(tmp_path: Path) -> None:
    proc = cli("demo", "--workers", "1", "--rounds", "20", "--state", f"file:{tmp_path / 's'}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True


@pytest.mark.parametrize(
    "args",
    [
        ["run", "STEP", "--timeout", "nan"],
        ["run", "STEP", "--timeout", "-1"],
        ["run", "STEP", "--timeout", "inf"],
        ["demo", "--workers", "0"],
        ["demo", "--rounds", "-3"],
        ["demo", "--timeout", "nan"],
    ],
)
def test_bad_numbers_are_usage_errors_not_tracebacks(args: list[str], tmp_path: Path) -> None:
    step = tmp_path / "ok.step.py"
    step.write_text("async def handler(data, ctx):\n    return 1\n")
    proc = cli(*[str(step) if a == "STEP" else a for a in args])
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "expected" in proc.stderr


@pytest.mark.parametrize("data", ['{"x": NaN}', "Infinity", "[-Infinity]"])
def test_run_refuses_an_input_that_is_not_json(data: str, tmp_path: Path) -> None:
    step = tmp_path / "echo.step.py"
    step.write_text("async def handler(data, ctx):\n    return data\n")
    proc = cli("run", str(step), "--data", data, "--json")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert json.loads(proc.stderr.strip().splitlines()[-1])["error"]["code"] == "INVALID_ARGUMENT"


def _marked_processes(mark: str) -> list[int]:
    """Processes (ours) whose environment carries ``mark``: everything the CLI started."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark.encode() in (entry / "environ").read_bytes() and process_alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the CLI's processes through /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("command", ["run", "demo"])
def test_a_signal_stops_the_cli_and_everything_it_started(tmp_path: Path, signum: signal.Signals, command: str) -> None:
    mark = f"MOTIA_TEST_MARK=signal-{uuid.uuid4()}"
    started = tmp_path / "started"
    step = tmp_path / "sleeper.step.py"
    step.write_text(
        "import subprocess, time\n"
        "def handler(data, ctx):\n"
        "    subprocess.Popen(['sleep', '60'])  # a child of the step: in its process group\n"
        f"    open({str(started)!r}, 'w').close()\n"
        "    time.sleep(60)\n"
    )
    args = ["run", str(step)] if command == "run" else ["demo", "--workers", "1", "--rounds", "1000000"]
    name, value = mark.split("=")
    proc = subprocess.Popen(
        [sys.executable, "-m", "motia_state", *args],
        env=env(**{name: value}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        # Wait until the work runs: the step has started its child, or the demo's racers race.
        while not (started.exists() if command == "run" else len(_marked_processes(mark)) >= 2):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    deadline = time.monotonic() + 10
    while (left := _marked_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == [], "processes the CLI started outlived it"


# -- error shapes ---------------------------------------------------------------------------------

FAILING = {
    "py": "def helper():\n    raise KeyError('missing')\n\nasync def handler(data, ctx):\n    helper()\n",
    "js": "function helper() { throw new Error('node failed'); }\nexports.handler = async () => { helper(); };\n",
    "rb": "def helper\n  raise ArgumentError, 'ruby failed'\nend\n\ndef handler(data, ctx)\n  helper\nend\n",
}


@pytest.mark.parametrize("ext", ["py", "js", "rb"])
def test_a_step_that_raises_shows_its_own_stack_only(ext: str, tmp_path: Path) -> None:
    if ext != "py":
        require_tool({"js": "node", "rb": "ruby"}[ext])
    step = tmp_path / f"fail.step.{ext}"
    step.write_text(FAILING[ext])
    proc = cli("run", str(step))
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    err = proc.stderr
    assert err.startswith("motia-state: error [STEP_FAILED]: "), err
    assert "helper" in err and str(step) in err, "the step's own frames are shown"
    assert "what to do:" in err
    for runner in (
        "motia_state/runtime",
        "motia_state/rpc",
        "run_step",
        "bindings/",
        'Traceback (most recent call last):\n  File "/',
    ):
        if runner.startswith("Traceback"):
            continue
        assert runner not in err, f"a runner frame ({runner}) is shown:\n{err}"
    assert not any(line.strip() and set(line.strip()) == {"^"} for line in err.splitlines()[:2])


def test_debug_adds_our_own_traceback(tmp_path: Path) -> None:
    step = tmp_path / "fail.step.py"
    step.write_text(FAILING["py"])
    proc = cli("run", str(step), "--debug")
    assert proc.returncode == 1
    assert "motia_state/runtime" in proc.stderr and "StepError" in proc.stderr


def test_json_errors_carry_code_message_hint_and_the_steps_stack(tmp_path: Path) -> None:
    step = tmp_path / "fail.step.py"
    step.write_text(FAILING["py"])
    proc = cli("--json", "run", str(step))
    error = json.loads(proc.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "STEP_FAILED" and error["hint"]
    assert "helper" in error["stack"] and "motia_state/runtime" not in error["stack"]


def test_a_missing_step_is_bad_input(tmp_path: Path) -> None:
    proc = cli("run", str(tmp_path / "nope.step.py"))
    assert proc.returncode == 2
    assert "[INVALID_ARGUMENT]" in proc.stderr and "no such step file" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("data", ["{bad", "[1,", "NaN"])
def test_bad_json_data_is_bad_input_and_the_step_never_runs(data: str, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    step = tmp_path / "s.step.py"
    step.write_text(f"async def handler(data, ctx):\n    open({str(ran)!r}, 'w').close()\n")
    proc = cli("run", str(step), "--data", data)
    assert proc.returncode == 2, proc.stderr
    assert "--data: not valid JSON" in proc.stderr
    assert not ran.exists()


def test_data_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    step = tmp_path / "echo.step.py"
    step.write_text("async def handler(data, ctx):\n    return data\n")
    (tmp_path / "in.json").write_text('{"from": "file"}')
    proc = cli("run", str(step), "--data", f"@{tmp_path / 'in.json'}")
    assert json.loads(proc.stdout) == {"from": "file"}
    proc = cli("run", str(step), "--data", "@-", input='{"from": "stdin"}')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"from": "stdin"}


def test_a_store_that_is_down_is_unavailable_before_the_step_starts(tmp_path: Path) -> None:
    pytest.importorskip("redis")
    from ..helpers import free_port

    ran = tmp_path / "ran"
    step = tmp_path / "s.step.py"
    step.write_text(f"async def handler(data, ctx):\n    open({str(ran)!r}, 'w').close()\n")
    proc = cli("run", str(step), "--state", f"redis://127.0.0.1:{free_port()}/0")
    assert proc.returncode == 3, proc.stderr
    assert "[UNAVAILABLE]" in proc.stderr and "what to do:" in proc.stderr
    assert not ran.exists(), "the step started although the store was down"


def test_trio_with_redis_says_it_needs_asyncio(tmp_path: Path) -> None:
    step = tmp_path / "s.step.py"
    step.write_text("async def handler(data, ctx):\n    return 1\n")
    proc = cli("run", str(step), "--backend", "trio", "--state", "redis://127.0.0.1:6379/0")
    assert proc.returncode == 2
    assert "needs asyncio" in proc.stderr and "no running event loop" not in proc.stderr


def test_run_on_trio_with_the_file_store(tmp_path: Path) -> None:
    pytest.importorskip("trio")
    step = tmp_path / "s.step.py"
    step.write_text("async def handler(data, ctx):\n    return await ctx.state.increment('g', 'n', 2)\n")
    proc = cli("--backend", "trio", "run", str(step), "--state", f"file:{tmp_path / 's'}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == 2


def test_a_redis_database_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    proc = cli("state", "ls", "--state", "redis://127.0.0.1:6379/abc")
    assert proc.returncode == 2
    assert "'abc' is not a number" in proc.stderr


# -- logs and global options ----------------------------------------------------------------------

LOGGING = "async def handler(data, ctx):\n    ctx.logger.info('from the logger')\n    print('from print')\n    await ctx.state.set('g', 'k', 1)\n    return 1\n"


@pytest.mark.parametrize("where", ["before", "after"])
def test_step_logs_are_shown_prefixed_and_q_hides_them(where: str, tmp_path: Path) -> None:
    step = tmp_path / "talk.step.py"
    step.write_text(LOGGING)
    shown = cli("run", str(step))
    assert "[talk.step.py] from the logger" in shown.stderr
    assert "[talk.step.py] from print" in shown.stderr
    quiet = cli("-q", "run", str(step)) if where == "before" else cli("run", str(step), "-q")
    assert quiet.returncode == 0
    assert "from the logger" not in quiet.stderr and "from print" not in quiet.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_vv_logs_every_state_operation_with_group_key_and_duration(where: str, tmp_path: Path) -> None:
    step = tmp_path / "talk.step.py"
    step.write_text(LOGGING)
    proc = cli("-vv", "run", str(step)) if where == "before" else cli("run", str(step), "-vv")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "motia_state.operations" in line]
    assert any(" set g k " in line and " ms OK" in line for line in lines), proc.stderr
    once = cli("run", str(step), "-v")
    assert "motia_state.operations" not in once.stderr


def test_the_state_option_may_come_before_the_command(tmp_path: Path) -> None:
    step = tmp_path / "inc.step.py"
    step.write_text("async def handler(data, ctx):\n    return await ctx.state.increment('g', 'n', 1)\n")
    store = f"file:{tmp_path / 's'}"
    assert json.loads(cli("--state", store, "run", str(step)).stdout) == 1
    assert json.loads(cli("run", str(step), "--state", store).stdout) == 2
    assert json.loads(cli("run", str(step), MOTIA_STATE=store).stdout) == 3


def test_help_shows_defaults_and_no_developer_notes() -> None:
    proc = cli("run", "--help")
    assert proc.returncode == 0
    assert "default" in proc.stdout and "Thin" not in proc.stdout
    top = cli("--help").stdout
    for command in (
        "run",
        "dev",
        "workbench",
        "state",
        "export",
        "import",
        "migrate",
        "validate",
        "codemod",
        "create",
        "bindings",
        "demo",
        "bench",
    ):
        assert f"    {command} " in top, command


def test_the_console_script_is_the_module() -> None:
    script = Path(sys.executable).parent / "motia-state"
    if not script.exists():
        pytest.skip("the console script is not installed beside this interpreter")
    a = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=env())
    b = cli("--version")
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout and "motia-state" in a.stdout


def test_an_unknown_option_is_a_usage_error_with_what_to_do() -> None:
    proc = cli("run", "--nope")
    assert proc.returncode == 2
    assert "[INVALID_ARGUMENT]" in proc.stderr and "--help" in proc.stderr


def test_workbench_takes_the_global_state_option_before_its_name(tmp_path: Path) -> None:
    import re

    import httpx

    store = f"file:{tmp_path / 's'}"
    assert cli("state", "set", "g", "k", "7", "--state", store).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "motia_state", "--state", store, "workbench", "--port", "0"],
        env=env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        found = re.search(r"http://[0-9.]+:\d+", proc.stdout.readline())
        assert found, proc.stderr
        with httpx.Client(base_url=found.group(0), timeout=30) as client:
            rows = client.get("/__motia/state", params={"groupId": "g"}).json()
        assert [(r["key"], r["value"]) for r in rows] == [("k", 7)]
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, "a server stopped by a signal exits 0"
