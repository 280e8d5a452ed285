# Frame-limit checks through the real parent: data = {"blob": str} -> its length;
# {"size": n} -> a string of n bytes; {"value": v} -> v stored and read back.


async def handler(data, ctx):
    if "blob" in data:
        return {"length": len(data["blob"])}
    if "size" in data:
        return "x" * data["size"]
    await ctx.state.set(ctx.trace_id, "v", data["value"])
    return await ctx.state.get(ctx.trace_id, "v")
