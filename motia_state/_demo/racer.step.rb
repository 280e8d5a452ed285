# The demo's racing step in Ruby: the same writes as racer.step.py.
# Calls block; the four writes of a round run on four threads at once.
def handler(data, ctx)
  state = ctx.state
  group = data["group"]
  me = data["worker"]
  seen = data["rounds"].times.map do |i|
    writes = [
      Thread.new { state.increment(group, "counter", 1) },
      Thread.new { state.push(group, "queue", "#{me}-#{i}") },
      Thread.new do
        state.transaction(group, [
                            { "type" => "increment", "key" => "credit", "delta" => 5 },
                            { "type" => "decrement", "key" => "debit", "delta" => 5 }
                          ])
      end,
      Thread.new { state.update(group, "cas") { |v| (v || 0) + 1 } }
    ]
    writes.map(&:value).first
  end
  { "worker" => me, "seen" => seen }
end
