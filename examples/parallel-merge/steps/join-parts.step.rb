# The join: reads the three parts of a run, stores the merged result, and
# clears the run's working group.
CONFIG = {
  name: "JoinParts",
  flows: ["parallel-merge"],
  triggers: [{ type: "event", topic: "pm.join" }]
}.freeze

def handler(data, ctx)
  run = data["run"]
  group = "merge:#{run}"
  parts = ctx.state.get_group(group).select { |v| v.is_a?(Hash) && v.key?("part") }
  merged = parts.to_h { |p| [p["part"], p["value"]] }
  started = ctx.state.get(group, "started")
  ctx.state.set("merges", run, { "n" => started["n"], "parts" => merged, "total" => merged.values.sum })
  ctx.state.clear(group)
  ctx.logger.info("parallel merge joined", { "run" => run, "total" => merged.values.sum })
end
