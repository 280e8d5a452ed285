// Run me: motia-state run examples/score.step.js --data '{"points": 5}'
exports.handler = async (data, ctx) => {
  const n = await ctx.state.increment(ctx.traceId, 'score', (data && data.points) || 1)
  const history = await ctx.state.push(ctx.traceId, 'history', n)
  await ctx.emit({ topic: 'score.changed', data: n })
  ctx.logger.info('scored', { n })
  return { score: n, history }
}
