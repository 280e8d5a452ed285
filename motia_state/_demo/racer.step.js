// The demo's racing step in Node: the same writes as racer.step.py.
exports.handler = async (data, ctx) => {
  const { group, rounds, worker: me } = data
  const state = ctx.state
  const seen = []
  for (let i = 0; i < rounds; i++) {
    // A pipelined burst: one round is four requests in flight at once.
    const [n] = await Promise.all([
      state.increment(group, 'counter', 1),
      state.push(group, 'queue', `${me}-${i}`),
      state.transaction(group, [
        { type: 'increment', key: 'credit', delta: 5 },
        { type: 'decrement', key: 'debit', delta: 5 },
      ]),
      state.update(group, 'cas', (v) => (v || 0) + 1),
    ])
    seen.push(n)
  }
  return { worker: me, seen }
}
