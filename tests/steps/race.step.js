// Races on shared state: data = {n, kind, tag}; returns what each call got back.
exports.handler = async (data, ctx) => {
  const got = []
  for (let i = 0; i < data.n; i++) {
    if (data.kind === 'increment') {
      got.push(await ctx.state.increment('race', 'n'))
    } else if (data.kind === 'push') {
      got.push((await ctx.state.push('race', 'list', `${data.tag}-${i}`)).length)
    } else {
      const ops = [{ type: 'increment', key: 'n' }, { type: 'push', key: 'list', value: `${data.tag}-${i}` }]
      const result = await ctx.state.transaction('race', ops)
      if (result.results[1].length !== result.results[0]) throw new Error('torn transaction')
      got.push(result.results[0])
    }
  }
  return got
}
