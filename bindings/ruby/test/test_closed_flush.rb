# frozen_string_literal: true

# A thread writing frames that the parent no longer reads, once the channel
# is closed (shutdown): it must still end when killed, or the worker's exit
# (which kills every thread) waits for a parent that will never read.

require "minitest/autorun"
require "json"
require "timeout"
require_relative "../lib/motia_state"

class ClosedFlushTest < Minitest::Test
  def setup
    @to_child_r, @to_child_w = IO.pipe
    @from_child_r, @from_child_w = IO.pipe
    @client = MotiaState::RpcClient.new(@to_child_r, @from_child_w)
  end

  def teardown
    [@to_child_r, @to_child_w, @from_child_r, @from_child_w].each { |io| io.close unless io.closed? }
  end

  # A request bigger than the pipe holds: its writer blocks until the parent reads.
  def blocked_writer
    big = "x" * (1 << 20)
    t = Thread.new { @client.request("state.set", { "traceId" => "t", "key" => "k", "value" => big }) }
    t.report_on_exception = false
    Timeout.timeout(5) { sleep 0.005 until t.status == "sleep" && @client.instance_variable_get(:@writing) }
    t
  end

  def test_a_writer_blocked_on_a_closed_channel_ends_when_killed
    t = blocked_writer
    @client.close("shutdown")
    t.kill
    assert t.join(3), "a thread writing to a parent that no longer reads outlived Thread#kill after shutdown"
  end

  def test_an_interrupt_while_the_channel_is_open_waits_for_the_frame_to_be_written
    t = blocked_writer
    t.raise(Interrupt)
    refute t.join(0.3), "the frame is written whole before the interrupt lands"
    drained = Thread.new { @from_child_r.read(100) while true } # rubocop:disable Style/InfiniteLoop
    assert_raises(Interrupt) { Timeout.timeout(5) { t.value } }
    drained.kill
  end
end
