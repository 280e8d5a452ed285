// Unlocks the high-score achievement when a user's score goes above 100.
// A native condition: "goes above" compares the old value with the new
// one, which a predicate on the new value alone cannot do.
exports.config = {
  name: 'ScoreAchievementMonitor',
  flows: ['user-management'],
  triggers: [
    {
      type: 'state',
      key: 'user.score',
      condition: (value, ctx) => typeof value === 'number' && value > 100 && !((ctx.change && ctx.change.oldValue) > 100),
    },
  ],
}

exports.handler = async (change, ctx) => {
  // Awarded once: a score that drops and climbs again keeps the first unlock.
  await ctx.state.compareAndSwap(change.group, 'user.achievements.high_score', null, {
    achievementType: 'high_score',
    score: change.value,
  })
}
