// Records an achievement when a user's score crosses 100. A native
// condition: "crosses" needs the old value too, which a declarative
// predicate (on the new value only) cannot see.
exports.config = {
  name: 'ScoreMonitor',
  flows: ['user-management'],
  triggers: [
    {
      type: 'state',
      group: 'scores',
      key: '*',
      condition: (value, ctx) => value >= 100 && ((ctx.change && ctx.change.oldValue) || 0) < 100,
    },
  ],
}

exports.handler = async (change, ctx) => {
  await ctx.state.push('achievements', change.key, { badge: 'score-100', score: change.value })
}
