# A batch from Ruby: several independent writes in one round trip, each with
# its own result.
#
# Each run records a visit to `page` by `user` in group `visits`: the total,
# the page's own counter, whether the user is new (a compareAndSwap from nil:
# true on the first visit, false after, not an error) and who came last. The
# items do not depend on each other, so one that fails does not stop the
# others: if `page:<page>` holds something that is not a number, that item
# alone fails with TYPE_MISMATCH and the other three are still stored. The
# step returns each item's id with its value or its error code.
#
# Run me: motia-state run examples/visit.step.rb --data '{"page": "home", "user": "ada"}'
def handler(data, ctx)
  page = (data || {}).fetch("page", "home")
  user = (data || {}).fetch("user", "anonymous")
  batch = ctx.state.batch("visits", [
    { "id" => "total", "type" => "increment", "key" => "total" },
    { "id" => "page", "type" => "increment", "key" => "page:#{page}" },
    { "id" => "new", "type" => "compareAndSwap", "key" => "seen:#{user}", "expected" => nil, "value" => true },
    { "id" => "last", "type" => "set", "key" => "last", "value" => user },
  ])
  batch["results"].to_h do |r|
    [r["id"], r["code"] ? { "code" => r["code"] } : { "value" => r["value"] }]
  end
end
