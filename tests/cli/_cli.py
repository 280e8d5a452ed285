"""Running the command line as a user does: a subprocess of ``python -m motia_state``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def env(**extra: str) -> dict[str, str]:
    """The environment the CLI runs in: this checkout first on the path, no MOTIA_STATE from outside."""
    base = {k: v for k, v in os.environ.items() if k != "MOTIA_STATE"}
    return {**base, "PYTHONPATH": str(ROOT), **extra}


def cli(
    *args: str, input: str | None = None, cwd: str | Path | None = None, timeout: float = 120, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m motia_state ARGS`` to completion (stdin from ``input``, else /dev/null)."""
    return subprocess.run(
        [sys.executable, "-m", "motia_state", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(**extra),
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        cwd=cwd,
    )


def start(*args: str, cwd: str | Path | None = None, **extra: str) -> subprocess.Popen[str]:
    """Start ``python -m motia_state ARGS`` in the background, its output on pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "motia_state", *args],
        env=env(**extra),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def dump_store(store: str) -> dict[str, dict[str, object]]:
    """Every entry of the store at URL ``store``, read through ``motia-state export``."""
    proc = cli("export", "--state", store)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, dict[str, object]] = {}
    for line in proc.stdout.splitlines()[1:-1]:
        doc = json.loads(line)
        out.setdefault(doc["groupId"], {})[doc["key"]] = doc["value"]
    return out
