"""Run me: motia-state run examples/score.step.py --data '{"points": 5}'"""


async def handler(data, ctx):
    n = await ctx.state.increment(ctx.trace_id, "score", (data or {}).get("points", 1))
    history = await ctx.state.push(ctx.trace_id, "history", n)
    await ctx.emit({"topic": "score.changed", "data": n})
    ctx.logger.info("scored", n=n)
    return {"score": n, "history": history}
