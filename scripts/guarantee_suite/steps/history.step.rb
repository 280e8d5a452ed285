# Run the operations in data["ops"] one after another; time each on the monotonic clock.
def handler(data, ctx)
  data["ops"].map do |name, group, args|
    start = Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)
    begin
      result = ctx.state.public_send(name, group, *args)
      [start.to_s, Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond).to_s, result, nil]
    rescue MotiaState::Error => e
      [start.to_s, Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond).to_s, nil, e.code]
    end
  end
end
