// Runs conformance cases inside a Node worker, through ctx.state (see
// vectors.step.py): fresh state per case via `test.reset`, each result or
// error code recorded, the whole state read back; the parent compares.

async function call (state, op, a) {
  const t = a.traceId
  const k = a.key
  switch (op) {
    case 'get': case 'delete': case 'exists': case 'pop': case 'shift':
      return state[op](t, k)
    case 'set': return state.set(t, k, a.value)
    case 'increment': case 'decrement':
      return 'delta' in a ? state[op](t, k, a.delta) : state[op](t, k)
    case 'compareAndSwap': return state.compareAndSwap(t, k, a.expected, a.newValue)
    case 'push': case 'unshift': return state[op](t, k, ...a.items)
    case 'setField': return state.setField(t, k, a.field, a.value)
    case 'deleteField': return state.deleteField(t, k, a.field)
    case 'getGroup': return state.getGroup(a.groupId)
    case 'keys': case 'clear': return state[op](t)
    case 'groups': return state.groups()
    default: return state[op](t, a.operations)
  }
}

exports.handler = async (data, ctx) => {
  const out = []
  for (const c of data.cases) {
    await ctx.call('test.reset', { limits: c.limits || {} })
    const steps = []
    for (const step of c.steps) {
      try {
        const result = await call(ctx.state, step.op, step.args)
        steps.push({ result: result === undefined ? null : result })
      } catch (e) {
        steps.push({ error: e.code || e.name, message: String(e.message) })
      }
    }
    const groups = await ctx.state.groups()
    const final = {}
    for (const g of groups) {
      const keys = await ctx.state.keys(g)
      final[g] = { keys, values: await Promise.all(keys.map((k) => ctx.state.get(g, k))) }
    }
    out.push({ steps, groups, final })
  }
  return out
}
