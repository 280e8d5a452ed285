# Runs conformance cases inside a Ruby worker, through ctx.state (see
# vectors.step.py): fresh state per case via `test.reset`, each result or
# error code recorded, the whole state read back; the parent compares.

def run_op(state, op, a)
  t = a["traceId"]
  k = a["key"]
  case op
  when "get", "delete", "exists", "pop", "shift" then state.public_send(op, t, k)
  when "set" then state.set(t, k, a["value"])
  when "increment", "decrement"
    a.key?("delta") ? state.public_send(op, t, k, a["delta"]) : state.public_send(op, t, k)
  when "compareAndSwap" then state.compare_and_swap(t, k, a["expected"], a["newValue"])
  when "push", "unshift" then state.public_send(op, t, k, *a["items"])
  when "setField" then state.set_field(t, k, a["field"], a["value"])
  when "deleteField" then state.delete_field(t, k, a["field"])
  when "getGroup" then state.get_group(a["groupId"])
  when "keys", "clear" then state.public_send(op, t)
  when "groups" then state.groups
  else state.public_send(op, t, a["operations"])
  end
end

def handler(data, ctx)
  data["cases"].map do |c|
    ctx.call("test.reset", { "limits" => c["limits"] || {} })
    steps = c["steps"].map do |step|
      { "result" => run_op(ctx.state, step["op"], step["args"]) }
    rescue MotiaState::Error => e
      { "error" => e.code, "message" => e.message }
    end
    groups = ctx.state.groups
    final = groups.to_h do |g|
      keys = ctx.state.keys(g)
      [g, { "keys" => keys, "values" => keys.map { |k| ctx.state.get(g, k) } }]
    end
    { "steps" => steps, "groups" => groups, "final" => final }
  end
end
