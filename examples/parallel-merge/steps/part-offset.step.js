// One part of a run: n + 100. Its result and the run's count of finished
// parts change in one transaction, so the count never runs ahead of the parts.
exports.config = {
  name: 'PartOffset',
  flows: ['parallel-merge'],
  triggers: [{ type: 'event', topic: 'pm.part' }],
  emits: ['pm.join'],
}

exports.handler = async (data, ctx) => {
  const group = `merge:${data.run}`
  const result = await ctx.state.transaction(group, [
    { type: 'set', key: 'part:offset', value: { part: 'offset', value: data.n + 100 } },
    { type: 'increment', key: 'done' },
  ])
  if (result.success && result.results[1] === 3) {
    await ctx.emit({ topic: 'pm.join', data: { run: data.run } })
  }
}
