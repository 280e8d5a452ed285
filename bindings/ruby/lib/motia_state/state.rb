# frozen_string_literal: true

require "json"
require_relative "errors"

module MotiaState
  # ctx.state inside a Ruby step: every operation is one blocking RPC call to
  # the parent, which owns the state. snake_case names; +state[:increment]+
  # returns the method, as in Motia's API.
  class StateManager
    # Optimistic +update+: attempts before CONFLICT (the core's count), and the backoff base (s).
    UPDATE_RETRIES = 64
    UPDATE_BACKOFF = 0.0005

    # Omitted delta (the parent's default of 1) vs an explicit nil (an error).
    DEFAULT_DELTA = Object.new.freeze

    CAMEL = {
      getGroup: :get_group, compareAndSwap: :compare_and_swap, setField: :set_field,
      deleteField: :delete_field, atomicUpdate: :atomic_update
    }.freeze

    def initialize(client)
      @client = client
    end

    # The same operations without waiting: each returns a MotiaState::Call
    # whose #value waits for the result (or raises the operation's error),
    # so one thread keeps many operations in flight; they are applied in the
    # order they were made. +update+ is not offered (it needs each result).
    #
    #   calls = items.map { |item| ctx.state.async.push(trace_id, "seen", item) }
    #   calls.map(&:value)
    def async
      @async ||= AsyncStateManager.new(@client)
    end

    def get(trace_id, key) = call("state.get", "traceId" => trace_id, "key" => key)
    def set(trace_id, key, value) = call("state.set", "traceId" => trace_id, "key" => key, "value" => value)
    def delete(trace_id, key) = call("state.delete", "traceId" => trace_id, "key" => key)
    def exists(trace_id, key) = call("state.exists", "traceId" => trace_id, "key" => key)
    alias exists? exists

    def increment(trace_id, key, delta = DEFAULT_DELTA)
      args = { "traceId" => trace_id, "key" => key }
      args["delta"] = delta unless DEFAULT_DELTA.equal?(delta)
      call("state.increment", args)
    end

    def decrement(trace_id, key, delta = DEFAULT_DELTA)
      args = { "traceId" => trace_id, "key" => key }
      args["delta"] = delta unless DEFAULT_DELTA.equal?(delta)
      call("state.decrement", args)
    end

    def compare_and_swap(trace_id, key, expected, new_value)
      call("state.compareAndSwap", "traceId" => trace_id, "key" => key, "expected" => expected, "newValue" => new_value)
    end

    def push(trace_id, key, *items) = call("state.push", "traceId" => trace_id, "key" => key, "items" => items)
    def unshift(trace_id, key, *items) = call("state.unshift", "traceId" => trace_id, "key" => key, "items" => items)
    def pop(trace_id, key) = call("state.pop", "traceId" => trace_id, "key" => key)
    def shift(trace_id, key) = call("state.shift", "traceId" => trace_id, "key" => key)

    def set_field(trace_id, key, field, value)
      call("state.setField", "traceId" => trace_id, "key" => key, "field" => field, "value" => value)
    end

    def delete_field(trace_id, key, field)
      call("state.deleteField", "traceId" => trace_id, "key" => key, "field" => field)
    end

    def get_group(group_id) = call("state.getGroup", "groupId" => group_id)
    def keys(trace_id) = call("state.keys", "traceId" => trace_id)
    def groups = call("state.groups", {})

    def clear(trace_id)
      call("state.clear", "traceId" => trace_id)
      nil
    end

    def transaction(trace_id, operations) = call("state.transaction", "traceId" => trace_id, "operations" => operations)
    def batch(trace_id, operations) = call("state.batch", "traceId" => trace_id, "operations" => operations)

    # Store the block's (or +fn+'s) value for the current one: an optimistic
    # get + compare_and_swap loop; no code travels to the parent. The block
    # gets a private copy. Raises ConflictError after UPDATE_RETRIES lost races.
    def update(trace_id, key, fn = nil, &block)
      fn ||= block
      raise ArgumentError, "update needs a block or a callable" unless fn.respond_to?(:call)

      UPDATE_RETRIES.times do |attempt|
        current = get(trace_id, key)
        new_value = fn.call(deep_copy(current))
        MotiaState.check_json(new_value, "the update fn's result")
        return new_value if compare_and_swap(trace_id, key, current, new_value)

        sleep(rand * UPDATE_BACKOFF * (2**[attempt, 6].min))
      end
      raise ConflictError, "update of #{key.inspect} lost #{UPDATE_RETRIES} races in a row"
    end

    # Deprecated alias of #update.
    def atomic_update(trace_id, key, fn = nil, &block)
      warn("MotiaState::StateManager#atomic_update is deprecated; use #update", uplevel: 1, category: :deprecated)
      update(trace_id, key, fn, &block)
    end

    # Hash-like access, as in Motia: +state[:increment].call(trace_id, key, 1)+.
    def [](name)
      name = name.to_sym
      method(CAMEL.fetch(name, name))
    end

    CAMEL.each { |camel, snake| alias_method camel, snake }

    private

    # Each argument is checked under its own name ("value", "items[2]") before
    # anything is sent: what is not JSON raises InvalidArgumentError. Records
    # are checked for JSON only: a record's value past a limit is the
    # parent's to report, as that record's failure in the result.
    def call(method, args)
      check_args(args)
      @client.request(method, args, checked: true)
    end

    def check_args(args)
      args.each do |name, value|
        if name == "operations"
          MotiaState.check_json(value, name, WRAP_DEPTH, exact: false)
        else
          MotiaState.check_json(value, name, name == "items" ? 1 : 0)
        end
      end
    end

    def deep_copy(value)
      value.nil? ? nil : JSON.parse(JSON.generate(value, max_nesting: false), max_nesting: false)
    end
  end

  # ctx.state.async: StateManager's operations, each returning a Call at once.
  class AsyncStateManager < StateManager
    undef_method :update, :atomic_update, :atomicUpdate, :async

    def clear(trace_id) = call("state.clear", "traceId" => trace_id)

    private

    def call(method, args)
      check_args(args)
      @client.request_async(method, args, checked: true)
    end
  end
end
