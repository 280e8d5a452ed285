// One state write: the cold-call probe (a new process per call on Motia's side).
exports.config = { type: 'event', name: 'peer-trivial-js', subscribes: ['peer'], emits: [], flows: ['peer'] }

exports.handler = async (data, ctx) => {
  await ctx.state.set(ctx.traceId, 'cold', 1)
  return { ok: true }
}
