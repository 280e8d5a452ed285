// Promotes a user when the score reaches a tier's threshold: silver from
// 100, gold from 500, platinum from 1000. The condition is a predicate, run
// by the runtime itself: lower scores start no worker at all.
//
// One transaction: a check that the current tier is a lower one, the new
// tier, and a line in user.tierHistory, all or nothing. Promotions only go
// up: a tier that an admin (TierUpdater) or an earlier change already put
// at or above the target fails the check, and nothing is written.
const TIERS = [
  ['bronze', 0],
  ['silver', 100],
  ['gold', 500],
  ['platinum', 1000],
]

exports.config = {
  name: 'AutoTierPromoter',
  description: 'Raises user.tier when user.score crosses a threshold',
  flows: ['user-lifecycle'],
  triggers: [{ type: 'state', key: 'user.score', condition: { op: 'gte', value: 100 } }],
}

exports.handler = async (change, ctx) => {
  const userId = change.group
  const reached = TIERS.filter(([, threshold]) => change.value >= threshold)
  const [target] = reached[reached.length - 1]
  const lower = reached.slice(0, -1).map(([tier]) => ({ op: 'eq', value: tier }))
  const result = await ctx.state.transaction(userId, [
    { type: 'check', key: 'user.tier', any: lower },
    { type: 'set', key: 'user.tier', value: target },
    { type: 'push', key: 'user.tierHistory', items: [{ to: target, by: 'auto', score: change.value }] },
  ])
  if (result.success) {
    ctx.logger.info('promoted', { userId, to: target, score: change.value })
  } else if (result.code !== 'CONFLICT') {
    throw new Error(result.error) // CONFLICT: the tier is already at or above the target
  }
}
