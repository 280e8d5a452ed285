# One part of a run: n * n, written with the run's count of finished parts
# in one transaction.
CONFIG = {
  name: "PartSquare",
  flows: ["parallel-merge"],
  triggers: [{ type: "event", topic: "pm.part" }],
  emits: ["pm.join"]
}.freeze

def handler(data, ctx)
  group = "merge:#{data['run']}"
  result = ctx.state.transaction(group, [
    { "type" => "set", "key" => "part:square", "value" => { "part" => "square", "value" => data["n"] * data["n"] } },
    { "type" => "increment", "key" => "done" }
  ])
  ctx.emit({ topic: "pm.join", data: { "run" => data["run"] } }) if result["success"] && result["results"][1] == 3
end
