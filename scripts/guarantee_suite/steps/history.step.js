// Run the operations in data.ops one after another; time each on the monotonic clock.
exports.handler = async (data, ctx) => {
  const out = []
  for (const [name, group, args] of data.ops) {
    const start = process.hrtime.bigint()
    try {
      const result = await ctx.state[name](group, ...args)
      out.push([String(start), String(process.hrtime.bigint()), result, null])
    } catch (e) {
      out.push([String(start), String(process.hrtime.bigint()), null, e.code || 'INTERNAL'])
    }
  }
  return out
}
