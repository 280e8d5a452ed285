# One state write: the cold-call probe (a new process per call on Motia's side).
config = {"type": "event", "name": "peer-trivial", "subscribes": ["peer"], "emits": [], "flows": ["peer"]}


async def handler(data, ctx):
    await ctx.state.set(ctx.trace_id, "cold", 1)
    return {"ok": True}
