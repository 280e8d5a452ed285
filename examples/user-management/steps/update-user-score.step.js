// POST /update-score {"userId": "u1", "scoreChange": 10}: one atomic
// increment, so concurrent updates never lose each other.
exports.config = {
  name: 'UpdateUserScore',
  description: "Adds to a user's score; state triggers watch it",
  flows: ['user-management'],
  triggers: [{ type: 'api', method: 'POST', path: '/update-score' }],
}

exports.handler = async (req, ctx) => {
  const { userId, scoreChange } = req.body || {}
  if (typeof userId !== 'string' || !userId || typeof scoreChange !== 'number' || !Number.isFinite(scoreChange)) {
    return { status: 400, body: { error: 'give a userId and a numeric scoreChange' } }
  }
  const newScore = await ctx.state.increment(userId, 'user.score', scoreChange)
  return { status: 200, body: { message: 'Score updated', userId, newScore } }
}
