# A guarded, all-or-nothing transaction from Ruby.
#
# The stock starts at 3. Each run sells one book: the check refuses the sale
# once the stock is gone, so a fourth run returns
# {"success" => false, "failedIndex" => 0, "code" => "CONFLICT", ...} and
# stores nothing, instead of taking the stock to -1.
#
# Run me: motia-state run examples/checkout.step.rb --data '{"sku": "book"}'
def handler(data, ctx)
  sku = (data || {}).fetch("sku", "book")
  ctx.state.compare_and_swap("stock", sku, nil, 3) # seed the stock once
  ctx.state.transaction("stock", [
    { "type" => "check", "key" => sku, "op" => "gte", "value" => 1 },
    { "type" => "decrement", "key" => sku },
    { "type" => "push", "key" => "orders", "items" => [sku] },
  ])
end
