# Run me: motia-state run examples/score.step.rb --data '{"points": 5}'
def handler(data, ctx)
  n = ctx.state.increment(ctx.trace_id, "score", (data || {}).fetch("points", 1))
  history = ctx.state.push(ctx.trace_id, "history", n)
  ctx.emit({ topic: "score.changed", data: n })
  ctx.logger.info("scored", n: n)
  { "score" => n, "history" => history }
end
