"""The demo's racing step: every kind of atomic write, many times over.

Each worker hammers the same group; the parent then checks that nothing was
lost or counted twice. Runs as a step file (``call_step_file``).
"""

import asyncio


async def handler(data, ctx):
    state, group, rounds, me = ctx.state, data["group"], data["rounds"], data["worker"]
    seen = []
    for i in range(rounds):
        # A pipelined burst: one round is four requests in flight at once.
        n, *_ = await asyncio.gather(
            state.increment(group, "counter", 1),
            state.push(group, "queue", "%s-%d" % (me, i)),
            state.transaction(
                group,
                [
                    {"type": "increment", "key": "credit", "delta": 5},
                    {"type": "decrement", "key": "debit", "delta": 5},
                ],
            ),
            state.update(group, "cas", lambda v: (v or 0) + 1),
        )
        seen.append(n)
    return {"worker": me, "seen": seen}
