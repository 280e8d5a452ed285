// Grants the score achievements a user has reached, once each, into the
// object user.achievements (what InventoryManager rewards).
//
// The condition is a function: "an achievement is due" needs the user's
// achievements, another entry, which a predicate on the new score alone
// cannot read. It runs in this step's worker, so most score changes start
// no handler at all. A grant is a transaction guarded by a check that the
// achievement is still missing: a redelivered change, or a score that
// drops and climbs again, never grants it twice.
const ACHIEVEMENTS = [
  ['rookie', 50],
  ['century', 100],
  ['high-roller', 500],
  ['legend', 1000],
]

function due(score, achievements) {
  return ACHIEVEMENTS.filter(([id, threshold]) => score >= threshold && !(achievements && id in achievements))
}

exports.config = {
  name: 'ScoreAchievementMonitor',
  description: 'Unlocks score achievements in user.achievements',
  flows: ['user-lifecycle'],
  triggers: [
    {
      type: 'state',
      key: 'user.score',
      condition: async (score, ctx) =>
        typeof score === 'number' && due(score, await ctx.state.get(ctx.change.group, 'user.achievements')).length > 0,
    },
  ],
}

exports.handler = async (change, ctx) => {
  const userId = change.group
  // The score of this change, not the current one: changes arrive in commit
  // order, so each achievement records the score that reached it.
  for (const [id] of due(change.value, await ctx.state.get(userId, 'user.achievements'))) {
    const result = await ctx.state.transaction(userId, [
      { type: 'check', key: 'user.achievements', path: `/${id}`, op: 'missing' },
      { type: 'setField', key: 'user.achievements', field: id, value: { score: change.value } },
    ])
    if (result.success) ctx.logger.info('achievement unlocked', { userId, achievement: id, score: change.value })
    else if (result.code !== 'CONFLICT') throw new Error(result.error) // CONFLICT: it was granted already
  }
}
