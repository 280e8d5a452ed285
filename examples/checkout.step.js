// A guarded, all-or-nothing transaction from Node.
//
// The stock starts at 3. Each run sells one book: the check refuses the sale
// once the stock is gone, so a fourth run returns
// { success: false, failedIndex: 0, code: 'CONFLICT', ... } and stores
// nothing, instead of taking the stock to -1.
//
// Run me: motia-state run examples/checkout.step.js --data '{"sku": "book"}'
exports.handler = async (data, ctx) => {
  const sku = (data && data.sku) || 'book'
  await ctx.state.compareAndSwap('stock', sku, null, 3) // seed the stock once
  return ctx.state.transaction('stock', [
    { type: 'check', key: sku, op: 'gte', value: 1 },
    { type: 'decrement', key: sku },
    { type: 'push', key: 'orders', items: [sku] },
  ])
}
