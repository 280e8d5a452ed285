"""A child process for the crash and race tests of the file and Redis adapters.

usage: state_writer.py CONFIG JOB COUNT

CONFIG is a state configuration for create_state_adapter, as JSON.
JOB "crash": forever (or COUNT times), increment "n" and then write
"a" = "b" = n in one transaction; print n once both are acknowledged.
JOB "race": COUNT increments of "n"; print each returned value.
JOB "txn": COUNT transactions [increment "n", increment "t"]; print the
returned value of "n".
The child prints "ready" once the store is open, then waits for a line on
stdin before it starts, so that racing children really overlap. Lines are
flushed one by one so that the parent knows what was acknowledged at the
instant it sends SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import sys

import motia_state as ms


async def main() -> None:
    config, job, count = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    adapter = ms.create_state_adapter(config)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    sys.stdin.readline()  # the parent's "go": racers start together
    i = 0
    while count <= 0 or i < count:
        i += 1
        if job == "crash":
            n = await adapter.increment("g", "n")
            result = await adapter.transaction(
                "g", [{"type": "set", "key": "a", "value": n}, {"type": "set", "key": "b", "value": n}]
            )
            assert result.success, result
        elif job == "race":
            n = await adapter.increment("g", "n")
        else:
            result = await adapter.transaction(
                "g", [{"type": "increment", "key": "n"}, {"type": "increment", "key": "t"}]
            )
            assert result.success, result
            n = result.results[0]
        out.write(f"{n}\n")
        out.flush()
    await adapter.close()


asyncio.run(main())
