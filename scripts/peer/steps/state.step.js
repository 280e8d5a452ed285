// n sequential state writes inside one invocation; the step times itself.
exports.config = { type: 'event', name: 'peer-state-js', subscribes: ['peer'], emits: [], flows: ['peer'] }

exports.handler = async (data, ctx) => {
  const n = data.n
  await ctx.state.set(ctx.traceId, 'k', 0)
  const start = performance.now()
  for (let i = 0; i < n; i++) await ctx.state.set(ctx.traceId, 'k', i)
  return { rate: n / ((performance.now() - start) / 1000) }
}
