# Races on shared state: data = {n, kind, tag}; returns what each call got back.
def handler(data, ctx)
  data["n"].times.map do |i|
    case data["kind"]
    when "increment" then ctx.state.increment("race", "n")
    when "push" then ctx.state.push("race", "list", "#{data['tag']}-#{i}").length
    else
      ops = [{ "type" => "increment", "key" => "n" }, { "type" => "push", "key" => "list", "value" => "#{data['tag']}-#{i}" }]
      result = ctx.state.transaction("race", ops)
      raise "torn transaction" unless result["results"][1].length == result["results"][0]

      result["results"][0]
    end
  end
end
