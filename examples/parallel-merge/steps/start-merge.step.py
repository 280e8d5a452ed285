"""POST /parallel-merge {"n": 7}: starts three parts in parallel; the answer names the run."""

config = {
    "name": "StartParallelMerge",
    "description": "Starts a run: three parts work on n in parallel, a join merges them",
    "flows": ["parallel-merge"],
    "triggers": [{"type": "api", "method": "POST", "path": "/parallel-merge"}],
    "emits": ["pm.part"],
}


async def handler(req, ctx):
    body = req["body"] or {}
    n = body.get("n")
    if isinstance(n, bool) or not isinstance(n, int):
        return {"status": 400, "body": {"error": "give an integer n"}}
    run = ctx.trace_id  # the run's parts share the trace, and its group
    await ctx.state.set("merge:" + run, "started", {"n": n, "parts": 3})
    await ctx.emit({"topic": "pm.part", "data": {"run": run, "n": n}})
    ctx.logger.info("parallel merge started", run=run, n=n)
    return {"status": 202, "body": {"run": run}}
