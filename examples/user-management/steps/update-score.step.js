// POST /users/:id/score {"delta": 10}: adds to the user's score with one
// atomic increment; concurrent updates never lose each other.
exports.config = {
  name: 'UpdateScore',
  flows: ['user-management'],
  triggers: [{ type: 'api', method: 'POST', path: '/users/:id/score' }],
}

exports.handler = async (req, ctx) => {
  const delta = (req.body || {}).delta
  if (typeof delta !== 'number' || !Number.isFinite(delta)) return { status: 400, body: { error: 'delta must be a number' } }
  const score = await ctx.state.increment('scores', req.pathParams.id, delta)
  return { status: 200, body: { id: req.pathParams.id, score } }
}
