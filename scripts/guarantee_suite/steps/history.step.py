"""Run the operations in ``data["ops"]`` one after another; time each on the monotonic clock."""

import time


async def handler(data, ctx):
    out = []
    for name, group, args in data["ops"]:
        start = time.monotonic_ns()
        try:
            result = await getattr(ctx.state, name)(group, *args)
            out.append([str(start), str(time.monotonic_ns()), result, None])
        except Exception as e:  # an operation's error is part of the history
            out.append([str(start), str(time.monotonic_ns()), None, getattr(e, "code", "INTERNAL")])
    return out
