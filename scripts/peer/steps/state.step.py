# n sequential state writes inside one invocation; the step times itself.
import time

config = {"type": "event", "name": "peer-state", "subscribes": ["peer"], "emits": [], "flows": ["peer"]}


async def handler(data, ctx):
    n = data["n"]
    await ctx.state.set(ctx.trace_id, "k", 0)
    start = time.perf_counter()
    for i in range(n):
        await ctx.state.set(ctx.trace_id, "k", i)
    return {"rate": n / (time.perf_counter() - start)}
