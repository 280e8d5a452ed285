// Places a food order, from the event CreatePet emits or from
// POST /process-food-order. The order id comes from an atomic counter and
// the food ordered per pet is an atomic increment (no get + set).
exports.config = {
  name: 'ProcessFoodOrder',
  description: 'Stores an order and sends a notification for it',
  flows: ['food-orders'],
  triggers: [
    { type: 'event', topic: 'process-food-order' },
    { type: 'api', method: 'POST', path: '/process-food-order' },
  ],
  emits: ['notification'],
}

// An API invocation gets the request; an event gets the order itself.
const isRequest = (data) => data !== null && typeof data === 'object' && 'headers' in data && 'method' in data

exports.handler = async (data, ctx) => {
  const input = isRequest(data) ? data.body || {} : data
  const problem = typeof input.email !== 'string' ? 'email'
    : !Number.isInteger(input.quantity) || input.quantity < 1 ? 'quantity'
      : typeof input.petId !== 'string' ? 'petId' : null
  if (problem) {
    if (isRequest(data)) return { status: 400, body: { error: `bad or missing ${problem}` } }
    throw new Error(`bad or missing ${problem}`)
  }
  const n = await ctx.state.increment('counters', 'order')
  const order = {
    id: `order-${n}`,
    petId: input.petId,
    quantity: input.quantity,
    email: input.email,
    shipDate: input.shipDate || new Date().toISOString(),
    status: 'placed',
    complete: false,
  }
  await ctx.state.set('orders', order.id, order)
  await ctx.state.increment('food-per-pet', order.petId, order.quantity)
  ctx.logger.info('order placed', { id: order.id, petId: order.petId })
  await ctx.emit({
    topic: 'notification',
    data: {
      email: order.email,
      templateId: 'new-order',
      templateData: { id: order.id, status: order.status, shipDate: order.shipDate, petId: order.petId, quantity: order.quantity },
    },
  })
  if (isRequest(data)) return { status: 200, body: { success: true, order } }
}
