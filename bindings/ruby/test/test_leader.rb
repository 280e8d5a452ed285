# frozen_string_literal: true

# Who reads the input: a waiting caller (the leader) reads it itself, the
# turn passes to another waiting thread when its reply is in or when it is
# interrupted, and the background thread serves the parent's requests
# (scripted pipes, no parent).

require "minitest/autorun"
require "json"
require "timeout"
require_relative "../lib/motia_state"
require_relative "test_rpc"

class LeaderTest < Minitest::Test
  def setup
    @parent = FakeParent.new
    @client = @parent.client
    @state = MotiaState::StateManager.new(@client)
    @reads = Queue.new # the thread that read each chunk
    reads = @reads
    @client.singleton_class.prepend(Module.new do
      define_method(:feed) do |chunk|
        reads << Thread.current
        super(chunk)
      end
    end)
    aside(@client, -> { @parent.next_frame["id"] }, ->(bytes) { @parent.write(bytes) })
  end

  # The background thread reads the first call's reply, then stands aside
  # (and, with the pause made long, stays aside).
  def aside(client, next_id, write)
    client.instance_variable_set(:@pause, 600)
    t = in_thread { client.request("state.get", { "traceId" => "t", "key" => "warm" }) }
    id = next_id.call
    # A reply read before the call waits (it neither leads nor is parked)
    # wakes nobody, and the background thread would read on for good.
    until_true("the call waits") do
      client.instance_variable_get(:@leader).equal?(t) || !client.instance_variable_get(:@parked).empty?
    end
    write.call(reply_line(id, "warm"))
    assert_equal "warm", Timeout.timeout(5) { t.value }
    until_true("the background thread stands aside") { client.instance_variable_get(:@leader).nil? }
  end

  def in_thread(&block)
    t = Thread.new(&block)
    t.report_on_exception = false
    t
  end

  def leader
    @client.instance_variable_get(:@leader)
  end

  # Wait until +cond+ holds (a thread reached a state), failing after 5 s.
  def until_true(what)
    Timeout.timeout(5) { sleep 0.002 until yield }
  rescue Timeout::Error
    flunk "timed out waiting until #{what}"
  end

  def reply_line(id, result)
    "#{JSON.generate({ 'type' => 'rpc_response', 'id' => id, 'result' => result })}\n"
  end

  def test_a_lone_threads_reply_is_read_by_that_thread
    @reads.clear
    t = in_thread { 3.times.map { |i| @state.get("t", "k#{i}") } }
    3.times do |i|
      frame = @parent.next_frame
      until_true("the caller leads") { leader.equal?(t) }
      @parent.reply(frame["id"], result: i)
    end
    assert_equal [0, 1, 2], Timeout.timeout(5) { t.value }
    read_by = []
    read_by << @reads.pop until @reads.empty?
    assert_equal [t] * 3, read_by
  end

  def test_replies_out_of_order_reach_their_threads_while_the_leader_waits_for_its_own
    threads = 3.times.map { |i| in_thread { @state.get("t", "k#{i}") } }
    frames = 3.times.map { @parent.next_frame }.to_h { |f| [f["args"]["key"], f["id"]] }
    until_true("a caller leads and the others wait") do
      threads.include?(leader) && threads.count { |t| t.status == "sleep" } == 3
    end
    first = leader
    others = threads - [first]
    others.reverse_each { |t| @parent.reply(frames["k#{threads.index(t)}"], result: "for #{threads.index(t)}") }
    others.each { |t| assert_equal "for #{threads.index(t)}", Timeout.timeout(5) { t.value } }
    assert_same first, leader, "the leader keeps reading until its own reply is in"
    @parent.reply(frames["k#{threads.index(first)}"], result: "mine")
    assert_equal "mine", Timeout.timeout(5) { first.value }
  end

  def test_a_leader_killed_mid_read_hands_the_turn_on_and_loses_no_reply
    a = in_thread { @state.get("t", "a") }
    ida = @parent.next_frame["id"]
    until_true("a leads") { leader.equal?(a) }
    b = in_thread { @state.get("t", "b") }
    idb = @parent.next_frame["id"]
    until_true("b waits") { b.status == "sleep" }
    a.kill
    Timeout.timeout(5) { a.join }
    until_true("b takes the turn") { leader.equal?(b) }
    # a's reply arrives for nobody and is dropped; b's is b's.
    _, err = capture_subprocess_io do
      @parent.write(reply_line(ida, "for a") + reply_line(idb, "for b"))
      assert_equal "for b", Timeout.timeout(5) { b.value }
    end
    assert_kind_of String, err
    t = in_thread { @state.get("t", "after") }
    @parent.reply(@parent.next_frame["id"], result: 1)
    assert_equal 1, Timeout.timeout(5) { t.value }
  end

  def test_a_timeout_in_the_leader_keeps_the_bytes_it_read_for_the_next_one
    a = in_thread { Timeout.timeout(0.3) { @state.get("t", "a") } }
    ida = @parent.next_frame["id"]
    until_true("a leads") { leader.equal?(a) }
    b = in_thread { @state.get("t", "b") }
    idb = @parent.next_frame["id"]
    until_true("b waits") { b.status == "sleep" }
    # Half of b's reply reaches the leader before its timeout fires.
    line = reply_line(idb, "héllo ✓").b
    @parent.write(line.byteslice(0, 20))
    assert_raises(Timeout::Error) { Timeout.timeout(5) { a.value } }
    until_true("b takes the turn") { leader.equal?(b) }
    @parent.write(line.byteslice(20, line.bytesize - 20))
    assert_equal "héllo ✓", Timeout.timeout(5) { b.value }
    _, err = capture_subprocess_io { @parent.reply(ida, result: "late") } # dropped, not given to anyone
    assert_kind_of String, err
  end

  def test_an_interrupt_while_the_leader_handles_what_it_read_loses_none_of_it
    handling = Queue.new
    slow = Module.new do
      define_method(:feed) do |chunk|
        if Thread.current[:slow_feed]
          handling << true
          sleep 0.2 # an interrupt sent now must wait until these bytes are handled
        end
        super(chunk)
      end
    end
    @client.singleton_class.prepend(slow)
    a = in_thread do
      Thread.current[:slow_feed] = true
      @state.get("t", "a")
    end
    ida = @parent.next_frame["id"]
    until_true("a leads") { leader.equal?(a) }
    b = in_thread { @state.get("t", "b") }
    idb = @parent.next_frame["id"]
    until_true("b waits") { b.status == "sleep" }
    @parent.write(reply_line(idb, "for b"))
    Timeout.timeout(5) { handling.pop }
    a.raise(Interrupt)
    assert_raises(Interrupt) { Timeout.timeout(5) { a.join } }
    assert_equal "for b", Timeout.timeout(5) { b.value }
    _, err = capture_subprocess_io { @parent.reply(ida, result: "late") }
    assert_kind_of String, err
  end

  def test_a_line_split_across_reads_and_leaders_is_whole
    a = in_thread { @state.get("t", "a") }
    ida = @parent.next_frame["id"]
    until_true("a leads") { leader.equal?(a) }
    b = in_thread { @state.get("t", "b") }
    idb = @parent.next_frame["id"]
    until_true("b waits") { b.status == "sleep" }
    emoji = "😀 #{'x' * 100_000}" # longer than one read
    line_b = reply_line(idb, emoji).b
    cut = line_b.index("😀".b) + 2 # inside the multibyte character
    @parent.write(reply_line(ida, "a").b + line_b.byteslice(0, cut)) # a's reply and half of b's, one read
    assert_equal "a", Timeout.timeout(5) { a.value }
    until_true("b takes the turn") { leader.equal?(b) }
    sleep 0.02
    @parent.write(line_b.byteslice(cut, line_b.bytesize - cut))
    assert_equal emoji, Timeout.timeout(5) { b.value }
  end

  # Threads parked for calls whose replies came in one read, waiting in
  # +waiters+ order; returns their call ids (the caller's first).
  def park_behind(caller, waiters)
    ids = [@parent.next_frame["id"]]
    until_true("the caller leads") { leader.equal?(caller) }
    waiters.each do |t|
      t.run
      ids << @parent.next_frame["id"]
      until_true("a thread waits") { t.status == "sleep" && t[:calling] }
    end
    ids
  end

  # Each thread: one call, then +after+ (a sleep, say) with its value.
  def caller_thread(key, &after)
    in_thread do
      Thread.stop
      Thread.current[:calling] = true
      value = @state.get("t", key)
      after ? after.call(value) : value
    end
  end

  def test_woken_threads_that_block_elsewhere_hold_up_no_other
    release = Queue.new
    leading = caller_thread("lead") { |v| release.pop && v } # leads, then waits elsewhere
    sleepers = 2.times.map { |i| caller_thread("s#{i}") { |v| release.pop && v } } # woken first, then wait elsewhere
    last = caller_thread("last")
    until_true("threads started") { [leading, *sleepers, last].all? { |t| t.status == "sleep" } }
    leading.run
    ids = park_behind(leading, [*sleepers, last])
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    @parent.write(ids.each_with_index.map { |id, i| reply_line(id, i) }.join) # one read brings all four
    assert_equal 3, Timeout.timeout(5) { last.value }
    assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :<, 2
    assert(sleepers.all?(&:alive?), "the threads woken first still wait elsewhere")
    4.times { release << true }
    assert_equal [0, 1, 2], [leading, *sleepers].map { |t| Timeout.timeout(5) { t.value } }
  end

  def test_a_woken_thread_that_blocks_elsewhere_holds_up_no_other_while_a_leader_waits
    release = Queue.new
    leading = caller_thread("lead") # its own reply comes last: it keeps reading
    sleeper = caller_thread("s") { |v| release.pop && v }
    last = caller_thread("last")
    until_true("threads started") { [leading, sleeper, last].all? { |t| t.status == "sleep" } }
    leading.run
    ids = park_behind(leading, [sleeper, last])
    @parent.write(reply_line(ids[1], 1) + reply_line(ids[2], 2))
    assert_equal 2, Timeout.timeout(5) { last.value }
    assert sleeper.alive?
    assert_same leading, leader
    @parent.reply(ids[0], result: 0)
    release << true
    assert_equal [0, 1], [leading, sleeper].map { |t| Timeout.timeout(5) { t.value } }
  end

  def test_a_woken_thread_that_ends_holds_up_no_other
    @client.instance_variable_set(:@relay_wait, 600) # no timed fallback: the thread's end passes it on
    leading = caller_thread("lead")
    ending = caller_thread("end") # its thread ends with its value
    last = caller_thread("last")
    until_true("threads started") { [leading, ending, last].all? { |t| t.status == "sleep" } }
    leading.run
    ids = park_behind(leading, [ending, last])
    @parent.write(ids.each_with_index.map { |id, i| reply_line(id, i) }.join)
    assert_equal [0, 1, 2], [leading, ending, last].map { |t| Timeout.timeout(5) { t.value } }
  end

  def test_requests_read_by_a_caller_are_served_by_the_background_thread
    served = Queue.new
    to_child_r, to_child_w = IO.pipe
    from_child_r, from_child_w = IO.pipe
    client = MotiaState::RpcClient.new(to_child_r, from_child_w) { |frame| served << [frame["method"], Thread.current] }
    background = client.start
    aside(client, -> { Timeout.timeout(5) { JSON.parse(from_child_r.gets)["id"] } }, ->(bytes) { to_child_w.write(bytes) })
    state = MotiaState::StateManager.new(client)
    t = in_thread { state.get("t", "k") }
    id = Timeout.timeout(5) { JSON.parse(from_child_r.gets)["id"] }
    until_true("the caller leads") { client.instance_variable_get(:@leader).equal?(t) }
    invoke = JSON.generate({ "type" => "rpc_request", "id" => "i1", "method" => "invoke", "args" => {} })
    to_child_w.write("#{invoke}\n")
    method, by = Timeout.timeout(5) { served.pop }
    assert_equal "invoke", method
    assert_same background, by
    assert t.alive?, "the caller still waits for its own reply"
    to_child_w.write(reply_line(id, 7))
    assert_equal 7, Timeout.timeout(5) { t.value }
  end

  def test_many_threads_with_sleeps_and_interrupts_each_get_their_own_replies
    rng = Random.new(42)
    stop = false
    from_child = @parent.instance_variable_get(:@from_child_r)
    server = in_thread do
      pending = []
      until stop && pending.empty?
        frame = from_child.wait_readable(0.01) && JSON.parse(from_child.gets)
        pending << frame if frame
        # Answer a random few of what is pending, in random order, the
        # bytes of one write cut at a random place into two writes.
        next if pending.empty? || (frame && rng.rand < 0.5)

        pending.shuffle!(random: rng)
        bytes = pending.shift(rng.rand(1..pending.size)).map do |f|
          reply_line(f["id"], [f["args"]["key"], f["args"]["delta"]])
        end.join.b
        cut = rng.rand(0..bytes.bytesize)
        @parent.write(bytes.byteslice(0, cut))
        sleep(rng.rand * 0.002)
        @parent.write(bytes.byteslice(cut, bytes.bytesize - cut))
      end
    end
    threads = 12.times.map do |i|
      seed = rng.rand(1 << 30)
      in_thread do
        r = Random.new(seed)
        got = []
        40.times do |j|
          sleep(r.rand * 0.003) if r.rand < 0.3
          begin
            if r.rand < 0.1
              Timeout.timeout(r.rand * 0.004) { @state.increment("t", "th#{i}", j + 1) }
              got << :timed_in
            else
              value = @state.increment("t", "th#{i}", j + 1)
              raise "thread #{i} call #{j} got #{value.inspect}" unless value == ["th#{i}", j + 1]

              got << :ok
            end
          rescue Timeout::Error
            got << :timed_out
          end
        end
        got
      end
    end
    # Some threads are interrupted from outside, whatever they are doing.
    victims = threads.first(3)
    victims.each do |t|
      sleep 0.01
      t.raise(Interrupt) if t.alive?
    end
    results = threads.map do |t|
      Timeout.timeout(30) { t.value }
    rescue Interrupt
      :interrupted
    end
    results.drop(3).each { |got| assert_equal 40, got.size }
    assert_operator results.drop(3).flatten.count(:ok), :>=, 9 * 20
    # the client still works, and the turn is free or held by a live thread
    t = in_thread { @state.increment("t", "last", 1) }
    assert_equal ["last", 1], Timeout.timeout(10) { t.value }
    assert(leader.nil? || leader.alive?)
  ensure
    stop = true
    server&.join(5)
  end

  def test_the_spin_budget_comes_from_the_environment_and_is_off_on_one_cpu
    assert_equal 50.0, MotiaState.spin_micros({}, 2)
    assert_equal 120.0, MotiaState.spin_micros({ "MOTIA_STEP_SPIN_US" => "120" }, 2)
    assert_equal 10_000.0, MotiaState.spin_micros({ "MOTIA_STEP_SPIN_US" => "1e9" }, 2)
    assert_equal 50.0, MotiaState.spin_micros({ "MOTIA_STEP_SPIN_US" => "fast" }, 2)
    assert_equal 50.0, MotiaState.spin_micros({ "MOTIA_STEP_SPIN_US" => "NaN" }, 2)
    assert_equal 0.0, MotiaState.spin_micros({ "MOTIA_STEP_SPIN_US" => "0" }, 2)
    assert_equal 0.0, MotiaState.spin_micros({ "MOTIA_STEP_SPIN_US" => "-5" }, 2)
    assert_equal 0.0, MotiaState.spin_micros({}, 1)
  end

  # A client whose parent is a thread of this process that answers at once.
  def echo_client(spin_micros)
    to_child_r, to_child_w = IO.pipe
    from_child_r, from_child_w = IO.pipe
    client = MotiaState::RpcClient.new(to_child_r, from_child_w, spin_micros: spin_micros)
    echo = in_thread do
      while (line = from_child_r.gets)
        to_child_w.write(reply_line(JSON.parse(line)["id"], 1))
      end
    end
    [client, echo, from_child_w]
  end

  def test_a_lone_caller_spins_for_a_fast_reply_and_not_when_told_not_to
    client, echo, = echo_client(10_000)
    200.times { client.request("state.increment", { "traceId" => "t", "key" => "k" }) }
    assert_operator client.spins, :>, 0
    assert_operator client.spin_hits, :>, 0, "an echo answering at once is caught by the spin"
    off, echo_off, = echo_client(0)
    50.times { off.request("state.increment", { "traceId" => "t", "key" => "k" }) }
    assert_equal 0, off.spins
  ensure
    [echo, echo_off].compact.each(&:kill)
  end

  def test_a_spin_that_finds_nothing_backs_off
    # A wait that ends with nothing read counts as one of the skipped ones:
    # long waits, so that none ends before the reply on a loaded machine.
    @client.instance_variable_set(:@recheck, 600)
    t = in_thread { @state.get("t", "slow") } # nobody answers within the spin
    id = @parent.next_frame["id"]
    until_true("the caller sleeps") { t.status == "sleep" && leader.equal?(t) }
    spins = @client.spins
    @parent.reply(id, result: 1)
    assert_equal 1, Timeout.timeout(5) { t.value }
    # One spin missed: the next two waits sleep at once (a wait for a
    # stalled relay, which a loaded machine may bring, is one of them).
    assert_equal 1, @client.instance_variable_get(:@spin_misses)
    assert_includes [1, 2], @client.instance_variable_get(:@spin_skip), "the next two waits sleep at once"
    assert_equal 0, @client.spin_hits
    assert_operator spins, :>=, 1
  end
end
