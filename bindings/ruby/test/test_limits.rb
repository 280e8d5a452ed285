# frozen_string_literal: true

# Only JSON goes in, and frames stay within the limit: checked before
# anything is sent, on scripted pipes (no parent).

require "minitest/autorun"
require "json"
require "timeout"
require_relative "../lib/motia_state"

class LimitsTest < Minitest::Test
  # A client on pipes; +sent+ reads what it wrote so far, +write+ plays the parent.
  class Pipes
    attr_reader :client, :state, :requests

    def initialize(max_frame_bytes: MotiaState::DEFAULT_MAX_FRAME)
      @in_r, @in_w = IO.pipe
      @out_r, @out_w = IO.pipe
      @requests = Queue.new
      @client = MotiaState::RpcClient.new(@in_r, @out_w, max_frame_bytes: max_frame_bytes) { |f| @requests << f }
      @client.start
      @state = MotiaState::StateManager.new(@client)
    end

    def sent
      frames = []
      loop do
        chunk = @out_r.read_nonblock(1 << 20)
        chunk.each_line { |l| frames << JSON.parse(l, max_nesting: false) unless l.strip.empty? }
      rescue IO::WaitReadable
        break
      end
      frames
    end

    def next_frame
      Timeout.timeout(5) { JSON.parse(@out_r.gets, max_nesting: false) }
    end

    def write(bytes)
      @in_w.write(bytes)
      @in_w.flush
    end
  end

  def nested(depth)
    value = []
    (depth - 1).times { value = [value] }
    value
  end

  def in_thread(&block)
    t = Thread.new(&block)
    t.report_on_exception = false
    t
  end

  def test_the_frame_limit_comes_from_the_environment_and_malformed_means_the_default
    default = 16 * 1024 * 1024
    assert_equal default, MotiaState::DEFAULT_MAX_FRAME
    assert_equal default, MotiaState.frame_limit({})
    assert_equal 4096, MotiaState.frame_limit({ "MOTIA_STEP_MAX_FRAME_BYTES" => "4096" })
    assert_equal 4096, MotiaState.frame_limit({ "MOTIA_STEP_MAX_FRAME_BYTES" => " 4096\n" })
    ["", "1e6", "-1", "0", "0x100", "12.5", "lots"].each do |bad|
      assert_equal default, MotiaState.frame_limit({ "MOTIA_STEP_MAX_FRAME_BYTES" => bad }), bad
    end
    saved = ENV.fetch("MOTIA_STEP_MAX_FRAME_BYTES", nil)
    ENV["MOTIA_STEP_MAX_FRAME_BYTES"] = "1234"
    r, w = IO.pipe
    assert_equal 1234, MotiaState::RpcClient.new(r, w).max_frame_bytes
  ensure
    ENV["MOTIA_STEP_MAX_FRAME_BYTES"] = saved
  end

  Point = Struct.new(:x)

  NOT_JSON = {
    "Object.new" => [->(s) { s.set("g", "k", Object.new) }, "value"],
    "Time" => [->(s) { s.set("g", "k", { "at" => Time.at(0) }) }, "value.at"],
    "Symbol value" => [->(s) { s.set("g", "k", [:a]) }, "value[0]"],
    "Symbol key" => [->(s) { s.set("g", "k", { a: 1 }) }, "value"],
    "Integer key" => [->(s) { s.set("g", "k", { "a" => { 1 => 2 } }) }, "value.a"],
    "Struct" => [->(s) { s.set("g", "k", Point.new(1)) }, "value"],
    "Rational" => [->(s) { s.set("g", "k", 1r) }, "value"],
    "NaN" => [->(s) { s.set("g", "k", Float::NAN) }, "value"],
    "Infinity in push" => [->(s) { s.push("g", "k", 1, Float::INFINITY) }, "items[1]"],
    "increment by Infinity" => [->(s) { s.increment("g", "k", -Float::INFINITY) }, "delta"],
    "invalid UTF-8" => [->(s) { s.set("g", "k", "ok\xFF".dup.force_encoding(Encoding::UTF_8)) }, "value"],
    "encoded surrogate" => [->(s) { s.set("g", "k", ["\xED\xA0\x80".dup.force_encoding(Encoding::UTF_8)]) }, "value[0]"],
    "binary bytes" => [->(s) { s.set_field("g", "k", "f", "\xFF".b) }, "value"],
    "bad key name" => [->(s) { s.get("g", "k\xFF".dup.force_encoding(Encoding::UTF_8)) }, "key"],
    "cas new value" => [->(s) { s.compare_and_swap("g", "k", nil, Object.new) }, "newValue"],
    "record value" => [->(s) { s.transaction("g", [{ "type" => "set", "key" => "k", "value" => Float::NAN }]) },
                       "operations[0].value"]
  }.freeze

  NOT_JSON.each do |name, (call, where)|
    define_method("test_not_json_is_refused_before_sending: #{name}") do
      pipes = Pipes.new
      err = assert_raises(MotiaState::InvalidArgumentError) { call.call(pipes.state) }
      assert_equal "INVALID_ARGUMENT", err.code
      assert err.message.start_with?("#{where}:"), err.message
      sleep 0.01
      assert_equal [], pipes.sent
    end
  end

  def test_a_cycle_is_invalid_and_a_value_seen_twice_is_not
    pipes = Pipes.new
    cyclic = { "a" => [] }
    cyclic["a"] << cyclic
    err = assert_raises(MotiaState::InvalidArgumentError) { pipes.state.set("g", "k", cyclic) }
    assert_match(/cyclic/, err.message)
    shared = [1]
    in_thread { pipes.state.set("g", "k", { "a" => shared, "b" => shared }) }
    assert_equal({ "a" => [1], "b" => [1] }, pipes.next_frame["args"]["value"])
  end

  def test_256_levels_go_out_257_are_limit_exceeded_and_a_256_deep_reply_is_read
    pipes = Pipes.new
    in_thread { pipes.state.set("g", "k", nested(256)) }
    assert_equal nested(256), pipes.next_frame["args"]["value"]
    in_thread { pipes.state.transaction("g", [{ "type" => "set", "key" => "k", "value" => nested(256) }]) }
    assert_equal "state.transaction", pipes.next_frame["method"]
    err = assert_raises(MotiaState::LimitExceededError) { pipes.state.set("g", "k", nested(257)) }
    assert_match(/value: nested more than 256/, err.message)
    assert_raises(MotiaState::LimitExceededError) { pipes.state.push("g", "k", nested(257)) }
    assert_raises(MotiaState::LimitExceededError) { MotiaState.check_json(nested(100_000), "deep") }
    t = in_thread { pipes.state.get("g", "k") }
    frame = pipes.next_frame
    pipes.write("#{JSON.generate({ 'type' => 'rpc_response', 'id' => frame['id'], 'result' => nested(256) }, max_nesting: false)}\n")
    assert_equal nested(256), t.value
  end

  def test_integers_are_held_to_4300_characters_sign_included
    pipes = Pipes.new
    in_thread { pipes.state.set("g", "k", [10**4300 - 1, -(10**4299 - 1)]) }
    assert_equal [10**4300 - 1, -(10**4299 - 1)], pipes.next_frame["args"]["value"]
    [10**4300, -(10**4299)].each do |over|
      err = assert_raises(MotiaState::LimitExceededError) { pipes.state.set("g", "k", { "n" => over }) }
      assert_match(/value\.n: an integer over 4300/, err.message)
    end
  end

  def test_a_frame_that_cannot_be_decoded_is_still_answered_when_its_id_can_be_read
    pipes = Pipes.new
    mine = in_thread { pipes.state.get("g", "k") }
    pipes.next_frame
    pipes.write(%({"type":"rpc_response","id":1,"result":tru}\n{"type":"rpc_request","id":"q","method":"x","args":[}\n))
    assert_raises(MotiaState::InvalidArgumentError) { mine.value }
    answer = pipes.next_frame
    assert_equal "q", answer["id"]
    assert_equal "INVALID_ARGUMENT", answer["error"]["code"]
  end

  def test_a_records_limits_are_left_to_the_parent_which_reports_them_in_the_result
    pipes = Pipes.new
    in_thread { pipes.state.transaction("g", [{ "type" => "set", "key" => "k", "value" => nested(257) }]) }
    assert_equal "state.transaction", pipes.next_frame["method"]
    in_thread { pipes.state.batch("g", [{ "type" => "set", "key" => "k", "value" => -(10**4299) }]) }
    assert_equal(-(10**4299), pipes.next_frame["args"]["operations"][0]["value"])
    assert_raises(MotiaState::InvalidArgumentError) { pipes.state.batch("g", [{ "type" => "set", "key" => "k", "value" => Time.at(0) }]) }
  end

  def test_an_update_fn_result_that_is_not_json_is_named_and_nothing_more_is_sent
    pipes = Pipes.new
    t = in_thread { pipes.state.update("g", "k") { |_| { "at" => Time.at(0) } } }
    get = pipes.next_frame
    pipes.write("#{JSON.generate({ 'type' => 'rpc_response', 'id' => get['id'], 'result' => 1 })}\n")
    err = assert_raises(MotiaState::InvalidArgumentError) { t.value }
    assert err.message.start_with?("the update fn's result.at: a Time"), err.message
    sleep 0.01
    assert_equal [], pipes.sent
  end

  def test_a_frame_nested_past_any_value_is_answered_with_limit_exceeded
    pipes = Pipes.new
    deep = "[" * 330 + "]" * 330
    pipes.write(%({"type":"rpc_request","method":"invoke","id":"inv-9","args":{"data":#{deep}}}\n))
    frame = pipes.next_frame
    assert_equal "inv-9", frame["id"]
    assert_equal "LIMIT_EXCEEDED", frame["error"]["code"]
  end

  def test_a_request_over_the_frame_limit_raises_and_sends_nothing
    pipes = Pipes.new(max_frame_bytes: 512)
    err = assert_raises(MotiaState::LimitExceededError) { pipes.state.set("g", "k", "x" * 1000) }
    assert_equal "LIMIT_EXCEEDED", err.code
    assert_match(/frame limit/, err.message)
    assert_raises(MotiaState::LimitExceededError) { pipes.state.set("g", "k", "✓" * 200) }
    assert_raises(MotiaState::LimitExceededError) { pipes.client.notify("log", { "msg" => "y" * 1000 }) }
    sleep 0.01
    assert_equal [], pipes.sent
  end

  def test_an_oversized_incoming_frame_is_answered_and_a_non_integer_id_is_never_read_as_one
    pipes = Pipes.new(max_frame_bytes: 512)
    mine = in_thread { pipes.state.get("g", "k") }
    first = pipes.next_frame
    pipes.write(%({"type":"rpc_request","method":"invoke","id":"inv-7","args":{"data":"#{'a' * 600}))
    answer = pipes.next_frame
    assert_equal "inv-7", answer["id"]
    assert_equal "LIMIT_EXCEEDED", answer["error"]["code"]
    pipes.write("#{'a' * 5000}\"}}\n")
    pipes.write(%({"type":"rpc_response","id":#{first['id']},"result":"#{'b' * 2000}"}\n))
    assert_raises(MotiaState::LimitExceededError) { mine.value }
    assert pipes.requests.empty?
    second = in_thread { pipes.state.get("g", "k") }
    id = pipes.next_frame["id"]
    _, err = capture_subprocess_io do
      pipes.write(%({"type":"rpc_response","id":#{id}.5,"result":"#{'c' * 2000}"}\n))
      sleep 0.05
    end
    assert second.alive?, "a reply to id #{id}.5 must not end the call with id #{id}"
    assert_match(/no id to answer/, err)
    pipes.write(%({"type":"rpc_response","id":#{id},"result":"fine"}\n))
    assert_equal "fine", second.value
  end

  def test_a_result_that_cannot_go_becomes_an_error_reply
    pipes = Pipes.new(max_frame_bytes: 4096)
    pipes.client.respond("r1", "x" * 5000)
    pipes.client.respond("r2", { "when" => Time.at(0) })
    pipes.client.respond("r3", nested(321))
    pipes.client.respond("r4", { "n" => Float::NAN })
    pipes.client.respond("r5", { "ok" => [1, 2] })
    pipes.client.respond("r7", { "steps" => [{ "result" => nested(256) }] }) # stored values, wrapped
    pipes.client.respond_error("r6", "STEP_FAILED", "m" * 5000, "s" * 5000)
    sleep 0.01
    by_id = pipes.sent.to_h { |f| [f["id"], f] }
    assert_equal "LIMIT_EXCEEDED", by_id["r1"]["error"]["code"]
    assert_equal "STEP_FAILED", by_id["r2"]["error"]["code"]
    assert_match(/result\.when: a Time is not JSON/, by_id["r2"]["error"]["message"])
    assert_equal "LIMIT_EXCEEDED", by_id["r3"]["error"]["code"]
    assert_match(/result\.n: NaN/, by_id["r4"]["error"]["message"])
    assert_equal({ "ok" => [1, 2] }, by_id["r5"]["result"])
    assert_equal({ "steps" => [{ "result" => nested(256) }] }, by_id["r7"]["result"])
    assert_equal "STEP_FAILED", by_id["r6"]["error"]["code"]
  end
end
