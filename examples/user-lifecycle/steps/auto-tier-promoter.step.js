// Promotes a user when the score reaches a tier's threshold: silver from
// 100, gold from 500. A declarative condition (evaluated by the runtime,
// no worker started for lower scores); promotions only go up, and the tier
// moves with a compare-and-swap, so a concurrent change is never undone.
const RANK = { bronze: 0, silver: 1, gold: 2 }

exports.config = {
  name: 'AutoTierPromoter',
  description: 'Raises user.tier when user.score crosses a threshold',
  flows: ['user-lifecycle'],
  triggers: [{ type: 'state', key: 'user.score', condition: { op: 'gte', value: 100 } }],
}

exports.handler = async (change, ctx) => {
  const target = change.value >= 500 ? 'gold' : 'silver'
  for (let i = 0; i < 10; i++) {
    const current = await ctx.state.get(change.group, 'user.tier')
    if ((RANK[current] ?? 0) >= RANK[target]) return
    if (await ctx.state.compareAndSwap(change.group, 'user.tier', current, target)) {
      ctx.logger.info('promoted', { userId: change.group, from: current, to: target, score: change.value })
      return
    }
  }
  throw new Error(`user.tier of ${change.group} kept changing`)
}
