// Frame-limit checks through the real parent (see limits.step.py).
exports.handler = async (data, ctx) => {
  if ('blob' in data) return { length: data.blob.length }
  if ('size' in data) return 'x'.repeat(data.size)
  await ctx.state.set(ctx.traceId, 'v', data.value)
  return ctx.state.get(ctx.traceId, 'v')
}
