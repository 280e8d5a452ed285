// PUT /lifecycle/users/:id/tier {"tier": "gold", "expectedTier": "silver"}:
// an admin sets a tier by hand, up or down.
//
// The admin names the tier they saw; one transaction checks that the user
// exists and still has that tier before it writes, so an admin working from
// a stale page (a promotion landed meanwhile) gets a 409 instead of silently
// undoing it. The new tier starts the same chain as a promotion: TierMonitor,
// UserGroupManager and InventoryManager react to user.tier.
const TIERS = ['bronze', 'silver', 'gold', 'platinum']

exports.config = {
  name: 'TierUpdater',
  description: "Sets a user's tier, guarded by the tier the admin expects",
  flows: ['user-lifecycle'],
  triggers: [{ type: 'api', method: 'PUT', path: '/lifecycle/users/:id/tier' }],
}

exports.handler = async (req, ctx) => {
  const userId = req.pathParams.id
  const { tier, expectedTier } = req.body || {}
  if (!TIERS.includes(tier) || !TIERS.includes(expectedTier)) {
    return { status: 400, body: { error: `give a tier and the expectedTier, each one of ${TIERS.join(', ')}` } }
  }
  const result = await ctx.state.transaction(userId, [
    { type: 'check', key: 'user.profile', op: 'exists' },
    { type: 'check', key: 'user.tier', op: 'eq', value: expectedTier },
    { type: 'set', key: 'user.tier', value: tier },
    { type: 'push', key: 'user.tierHistory', items: [{ to: tier, by: 'admin' }] },
  ])
  if (result.success) {
    ctx.logger.info('tier set by an admin', { userId, from: expectedTier, to: tier })
    return { status: 200, body: { userId, tier, previousTier: expectedTier } }
  }
  if (result.code !== 'CONFLICT') throw new Error(result.error)
  if (result.failedIndex === 0) return { status: 404, body: { error: `no user ${userId}`, code: 'NOT_FOUND' } }
  return {
    status: 409,
    body: { error: `the tier of ${userId} is no longer ${expectedTier}: read it again and retry`, code: 'CONFLICT' },
  }
}
