# frozen_string_literal: true

# The RPC client and the state manager on scripted pipes (no parent).

require "minitest/autorun"
require "json"
require "timeout"
require_relative "../lib/motia_state"

class FakeParent
  attr_reader :client, :requests

  def initialize(max_frame_bytes: MotiaState::RpcClient::DEFAULT_MAX_FRAME)
    @to_child_r, @to_child_w = IO.pipe
    @from_child_r, @from_child_w = IO.pipe
    @requests = Queue.new
    @client = MotiaState::RpcClient.new(@to_child_r, @from_child_w, max_frame_bytes: max_frame_bytes) do |frame|
      @requests << frame
    end
    @client.start
  end

  # The next frame the child sent.
  def next_frame
    Timeout.timeout(5) { JSON.parse(@from_child_r.gets) }
  end

  def write(bytes)
    @to_child_w.write(bytes)
    @to_child_w.flush
  end

  def reply(id, result: nil, error: nil)
    frame = { "type" => "rpc_response", "id" => id }
    error ? frame["error"] = error : frame["result"] = result
    write(JSON.generate(frame) + "\n")
  end

  def close_input
    @to_child_w.close
  end
end

class RpcClientTest < Minitest::Test
  def setup
    @parent = FakeParent.new
    @state = MotiaState::StateManager.new(@parent.client)
  end

  def in_thread(&block)
    t = Thread.new(&block)
    t.report_on_exception = false
    t
  end

  ODD_FRAMES = [
    '{"type":"rpc_response","id":[1]}', '{"type":"rpc_response","id":{"a":1},"result":2}',
    '{"type":"rpc_response","id":1.5,"error":"x"}', '{"type":"rpc_response","error":[1,2]}',
    '{"type":"rpc_request","id":[],"method":{"m":1},"args":7}', '{"type":7}', "[1,2]", "null", "42",
    "\xFF\xFE not utf-8", '{"type":"rpc_request"'
  ].freeze

  def test_odd_frames_from_the_parent_are_survived_and_lose_no_reply
    t = in_thread { @state.get("t", "k") }
    @parent.next_frame
    @parent.write(ODD_FRAMES.join("\n").b + "\n")
    @parent.reply(1, result: "mine")
    assert_equal "mine", Timeout.timeout(5) { t.value }
  end

  def test_a_request_resolves_with_its_reply
    t = in_thread { @state.get("t", "k") }
    frame = @parent.next_frame
    assert_equal({ "type" => "rpc_request", "id" => 1, "method" => "state.get", "args" => { "traceId" => "t", "key" => "k" } }, frame)
    @parent.reply(1, result: { "a" => [1, 2] })
    assert_equal({ "a" => [1, 2] }, t.value)
  end

  def test_an_error_reply_raises_the_error_class_of_its_code
    t = in_thread { @state.increment("t", "k", 1) }
    @parent.next_frame
    @parent.reply(1, error: { "code" => "TYPE_MISMATCH", "message" => "not a number" })
    err = assert_raises(MotiaState::TypeMismatchError) { t.value }
    assert_equal "TYPE_MISMATCH", err.code
    assert_equal "not a number", err.message
    assert_kind_of MotiaState::Error, err
  end

  def test_threads_pipeline_and_replies_may_come_in_any_order
    threads = (1..3).map { |i| in_thread { @state.increment("t", "k#{i}") } }
    ids = 3.times.map { @parent.next_frame }.to_h { |f| [f["args"]["key"], f["id"]] }
    @parent.reply(ids["k3"], result: 30)
    @parent.reply(ids["k1"], result: 10)
    @parent.reply(ids["k2"], result: 20)
    assert_equal [10, 20, 30], threads.map(&:value)
  end

  def test_a_multibyte_character_split_across_writes_keeps_its_frame
    t = in_thread { @state.get("t", "k") }
    @parent.next_frame
    bytes = (JSON.generate({ "type" => "rpc_response", "id" => 1, "result" => "héllo ✓ 😀" }) + "\n").b
    cut = bytes.index("😀".b) + 2
    @parent.write(bytes[0, cut])
    sleep 0.01
    @parent.write(bytes[cut..])
    assert_equal "héllo ✓ 😀", t.value
  end

  def test_garbage_oversized_lines_and_stray_replies_are_dropped
    parent = FakeParent.new(max_frame_bytes: 128)
    state = MotiaState::StateManager.new(parent.client)
    t = in_thread { state.get("t", "k") }
    parent.next_frame
    _, err = capture_subprocess_io do
      parent.write("not json\n")
      parent.write("#{JSON.generate({ 'type' => 'rpc_response', 'id' => 99, 'result' => 1 })}\n")
      parent.write("#{'x' * 200}\n")
      parent.reply(1, result: "ok")
      assert_equal "ok", t.value
    end
    assert_match(/not JSON/, err) unless err.empty?
  end

  def test_requests_from_the_parent_reach_the_callback
    @parent.write("#{JSON.generate({ 'type' => 'rpc_request', 'id' => 'i1', 'method' => 'invoke', 'args' => { 'data' => 1 } })}\n")
    frame = Timeout.timeout(5) { @parent.requests.pop }
    assert_equal "invoke", frame["method"]
    assert_equal({ "data" => 1 }, frame["args"])
  end

  def test_the_end_of_input_fails_pending_calls_with_unavailable
    t = in_thread { @state.get("t", "k") }
    @parent.next_frame
    @parent.close_input
    err = assert_raises(MotiaState::PeerClosedError) { t.value }
    assert_equal "UNAVAILABLE", err.code
    assert_raises(MotiaState::UnavailableError) { @state.get("t", "k") }
  end

  def test_args_that_are_not_json_raise_invalid_argument
    err = assert_raises(MotiaState::InvalidArgumentError) { @state.set("t", "k", Float::NAN) }
    assert_equal "INVALID_ARGUMENT", err.code
  end

  def test_every_state_method_sends_the_protocol_method_and_args
    s = @state
    calls = [
      [-> { s.get("t", "k") }, "state.get", { "traceId" => "t", "key" => "k" }],
      [-> { s.set("t", "k", 0) }, "state.set", { "traceId" => "t", "key" => "k", "value" => 0 }],
      [-> { s.delete("t", "k") }, "state.delete", { "traceId" => "t", "key" => "k" }],
      [-> { s.exists("t", "k") }, "state.exists", { "traceId" => "t", "key" => "k" }],
      [-> { s.increment("t", "k") }, "state.increment", { "traceId" => "t", "key" => "k" }],
      [-> { s.decrement("t", "k", 2) }, "state.decrement", { "traceId" => "t", "key" => "k", "delta" => 2 }],
      [-> { s.compare_and_swap("t", "k", nil, 1) }, "state.compareAndSwap", { "traceId" => "t", "key" => "k", "expected" => nil, "newValue" => 1 }],
      [-> { s.push("t", "k", 1, 2) }, "state.push", { "traceId" => "t", "key" => "k", "items" => [1, 2] }],
      [-> { s.unshift("t", "k", 0) }, "state.unshift", { "traceId" => "t", "key" => "k", "items" => [0] }],
      [-> { s.pop("t", "k") }, "state.pop", { "traceId" => "t", "key" => "k" }],
      [-> { s.shift("t", "k") }, "state.shift", { "traceId" => "t", "key" => "k" }],
      [-> { s.set_field("t", "k", "f", 1) }, "state.setField", { "traceId" => "t", "key" => "k", "field" => "f", "value" => 1 }],
      [-> { s.delete_field("t", "k", "f") }, "state.deleteField", { "traceId" => "t", "key" => "k", "field" => "f" }],
      [-> { s.get_group("t") }, "state.getGroup", { "groupId" => "t" }],
      [-> { s.keys("t") }, "state.keys", { "traceId" => "t" }],
      [-> { s.groups }, "state.groups", {}],
      [-> { s.clear("t") }, "state.clear", { "traceId" => "t" }],
      [-> { s.transaction("t", []) }, "state.transaction", { "traceId" => "t", "operations" => [] }],
      [-> { s.batch("t", []) }, "state.batch", { "traceId" => "t", "operations" => [] }],
      [-> { s[:increment].call("t", "k", 1) }, "state.increment", { "traceId" => "t", "key" => "k", "delta" => 1 }],
      [-> { s[:getGroup].call("t") }, "state.getGroup", { "groupId" => "t" }],
      [-> { s.compareAndSwap("t", "k", 1, 2) }, "state.compareAndSwap", { "traceId" => "t", "key" => "k", "expected" => 1, "newValue" => 2 }],
    ]
    calls.each do |fn, method, args|
      t = in_thread { fn.call }
      frame = @parent.next_frame
      assert_equal [method, args], [frame["method"], frame["args"]]
      @parent.reply(frame["id"], result: nil)
      t.value
    end
  end


  def test_update_retries_until_its_compare_and_swap_wins
    seen = []
    t = in_thread { @state.update("t", "k") { |v| seen << v; (v || 0) + 1 } }
    replies = [1, false, 5, true]
    swaps = []
    replies.each do |result|
      frame = @parent.next_frame
      swaps << frame["args"]["newValue"] if frame["method"] == "state.compareAndSwap"
      @parent.reply(frame["id"], result: result)
    end
    assert_equal 6, t.value
    assert_equal [1, 5], seen
    assert_equal [2, 6], swaps
  end

  def test_update_accepts_a_lambda_and_gives_up_with_conflict
    t = in_thread { @state.update("t", "k", ->(v) { v }) }
    swaps = 0
    loop do
      frame = begin
        @parent.next_frame
      rescue Timeout::Error
        break
      end
      swaps += 1 if frame["method"] == "state.compareAndSwap"
      @parent.reply(frame["id"], result: frame["method"] == "state.get" ? 1 : false)
      break if swaps == MotiaState::StateManager::UPDATE_RETRIES
    end
    err = assert_raises(MotiaState::ConflictError) { t.value }
    assert_equal "CONFLICT", err.code
    assert_equal 64, swaps
  end

  def test_atomic_update_is_deprecated
    previous = Warning[:deprecated]
    Warning[:deprecated] = true
    t = nil
    _, err = capture_io do
      t = in_thread { @state.atomic_update("t", "k") { "x" } }
      frame = @parent.next_frame
      @parent.reply(frame["id"], result: nil)
      frame = @parent.next_frame
      @parent.reply(frame["id"], result: true)
      assert_equal "x", t.value
    end
    assert_match(/atomic_update is deprecated/, err)
  ensure
    Warning[:deprecated] = previous
  end

  def test_errors_cover_every_code
    assert_equal 12, MotiaState::CODES.size
    assert_equal "CORRUPT", MotiaState::CorruptStoreError::CODE
    %w[UPDATE_FAILED CURSOR_EXPIRED CORRUPT].each do |code|
      assert_equal MotiaState.const_get(MotiaState::ERROR_CLASSES[code]), MotiaState.error_for_code(code, "m").class
    end
    MotiaState::CODES.each do |code|
      err = MotiaState.error_for_code(code, "m")
      assert_equal code, err.code
      assert_kind_of MotiaState::Error, err
    end
    assert_equal "INTERNAL", MotiaState.error_for_code("WHAT", "m").code
  end
end
