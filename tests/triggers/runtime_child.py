"""A runtime in its own process for the multi-process trigger tests.

Usage: ``python runtime_child.py CONFIG_JSON``. It opens the store
(``config["store"]``, an adapter URL), runs one trigger "t" on key "k"
whose handler appends ``{"pid", "cursor", "value"}`` as a line to
``config["out"]`` (after sleeping ``config["sleep"]`` seconds; mode "hang"
prints "started CURSOR" and never finishes), prints "ready" once the
trigger is registered, and stops cleanly when its stdin closes.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio

from motia_state.adapters.factory import create_state_adapter
from motia_state.manager import StateManager
from motia_state.records import Change
from motia_state.triggers import TriggerRunner


async def main(config: dict[str, Any]) -> None:
    state = StateManager(create_state_adapter(config["store"]))
    out = os.open(config["out"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    async def handler(change: Change) -> None:
        if config.get("mode") == "hang":
            print("started", change.cursor, flush=True)
            await anyio.sleep_forever()
        await anyio.sleep(config.get("sleep", 0))
        line = {"pid": os.getpid(), "cursor": change.cursor, "value": change.new_value}
        os.write(out, (json.dumps(line) + "\n").encode())  # one write, appended whole

    async with (
        state,
        TriggerRunner(
            state,
            lease=config.get("lease", 1.0),
            backoff=0.01,
            partitions=config.get("partitions", 8),
            max_concurrency=config.get("concurrency", 8),
        ) as triggers,
    ):
        await triggers.add("t", {"type": "state", "key": "k", "from": config.get("from", "now")}, handler)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the test closes our stdin
    os.close(out)
    print("stopped", flush=True)


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
