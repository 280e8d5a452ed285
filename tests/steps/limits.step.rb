# Frame-limit checks through the real parent (see limits.step.py).
def handler(data, ctx)
  return { "length" => data["blob"].length } if data.key?("blob")
  return "x" * data["size"] if data.key?("size")

  ctx.state.set(ctx.trace_id, "v", data["value"])
  ctx.state.get(ctx.trace_id, "v")
end
