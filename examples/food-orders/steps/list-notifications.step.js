// GET /notifications/:email: what was sent to an address.
exports.config = {
  name: 'ListNotifications',
  flows: ['food-orders'],
  triggers: [{ type: 'api', method: 'GET', path: '/notifications/:email' }],
}

exports.handler = async (req, ctx) => (await ctx.state.get('notifications', req.pathParams.email)) || []
