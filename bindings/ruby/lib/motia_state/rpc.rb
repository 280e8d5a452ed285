# frozen_string_literal: true

require "etc"
require "io/wait"
require "json"
require_relative "errors"

module MotiaState
  # The frame limit when the parent names none (MOTIA_STEP_MAX_FRAME_BYTES).
  DEFAULT_MAX_FRAME = 16 * 1024 * 1024
  # How deep a value may nest (arrays and objects inside each other); the parent's limit.
  MAX_DEPTH = 256
  # Integers are at most this many characters of decimal text, a minus sign
  # included: what the parent stores and every language reads back.
  MAX_INT_DIGITS = 4300
  INT_HIGH = 10**MAX_INT_DIGITS
  INT_LOW = -(10**(MAX_INT_DIGITS - 1))
  private_constant :INT_HIGH, :INT_LOW

  # Levels that a handler's result, an emit's data or ctx.call args may add
  # around values (a list of records holding stored values, say).
  WRAP_DEPTH = 64
  # Levels a frame adds around what it carries (reply, args, records, batch items).
  FRAME_ENVELOPE = 8
  # The deepest frame parsed: anything deeper is answered with LIMIT_EXCEEDED.
  MAX_FRAME_NESTING = MAX_DEPTH + WRAP_DEPTH + FRAME_ENVELOPE

  # Microseconds a caller waiting for its reply polls the input before it
  # sleeps: MOTIA_STEP_SPIN_US (default 50, at most 10,000); 0 turns it off,
  # and it is off on a single CPU, where spinning would only delay the parent.
  def self.spin_micros(env = ENV, cpus = Etc.nprocessors)
    raw = env.fetch("MOTIA_STEP_SPIN_US", "").to_s.strip
    micros = raw.empty? ? 50.0 : Float(raw, exception: false) || 50.0
    micros = 50.0 if micros.nan?
    return 0.0 if micros <= 0 || cpus < 2

    [micros, 10_000.0].min
  end

  # The frame limit in bytes: MOTIA_STEP_MAX_FRAME_BYTES (decimal), which the
  # parent sets for every worker; absent, malformed or not positive: 16 MiB.
  def self.frame_limit(env = ENV)
    raw = env.fetch("MOTIA_STEP_MAX_FRAME_BYTES", "").to_s.strip
    raw.match?(/\A[0-9]+\z/) && raw.to_i.positive? ? raw.to_i : DEFAULT_MAX_FRAME
  end

  # Refuse what JSON cannot carry, naming where it is (value[2].when), with
  # InvalidArgumentError: a Symbol, Time, Object or anything that is not a
  # Hash with String keys, an Array, a String of valid UTF-8 (binary data
  # only when ASCII), an Integer, a finite Float, true, false or nil; a
  # cycle too. Nothing is converted (not even Symbol keys). Containers
  # nested more than MAX_DEPTH (+ extra_depth for an envelope such as
  # items) deep, and integers over MAX_INT_DIGITS characters, are
  # LimitExceededError. Iterative: no value exhausts the stack.
  #
  # With exact: false (records of a transaction or batch, whose limits the
  # parent reports per record) integers are left to the parent.
  def self.check_json(value, name, extra_depth = 0, exact: true)
    # The common arguments (a group, a key, a delta) need no walk.
    return if value.is_a?(String) && value.encoding == Encoding::UTF_8 && value.valid_encoding?
    return if value.is_a?(Integer) && value.bit_length <= 14_000

    limit = MAX_DEPTH + extra_depth
    # [value, parent node, key in parent, depth]; a node is [container, parent node, key]
    stack = [[value, nil, name, 0]]
    until stack.empty?
      v, parent, key, depth = stack.pop
      case v
      when String
        json_text!(v, parent, key)
      when Integer
        if exact && v.bit_length > 14_000 && !(v > INT_LOW && v < INT_HIGH)
          raise LimitExceededError,
                "#{json_path(parent, key)}: an integer over #{MAX_INT_DIGITS} characters (sign included) is over the limit"
        end
      when true, false, nil
        nil
      when Float
        raise InvalidArgumentError, "#{json_path(parent, key)}: #{v} is not JSON (only finite numbers are)" unless v.finite?
      when Hash, Array
        too_deep!(v, parent, key, limit) if depth >= limit
        node = [v, parent, key]
        if v.is_a?(Array)
          (v.size - 1).downto(0) { |i| stack.push([v[i], node, i, depth + 1]) }
        else
          v.each do |k, item|
            unless k.is_a?(String)
              raise k.is_a?(Symbol) ? SymbolKeyError : InvalidArgumentError,
                    "#{json_path(parent, key)}: key #{k.inspect} is a #{k.class}; JSON object keys are Strings"
            end
            json_text!(k, parent, key)
            stack.push([item, node, k, depth + 1])
          end
        end
      else
        hint = v.is_a?(Symbol) ? " (use a String)" : ""
        raise InvalidArgumentError, "#{json_path(parent, key)}: a #{v.class} is not JSON#{hint}"
      end
    end
    nil
  end

  # +value+ with every Symbol hash key, at any depth, made a String: what a
  # step returns or emits may be written in Ruby's own style
  # ({ status: 201, body: { id: 1 } }) and goes exactly as the same Hash
  # with String keys. Only keys are converted (a Symbol value is still not
  # JSON). A value without a Symbol key comes back as it is; otherwise its
  # containers are copied with their shape kept (a cycle stays a cycle, and
  # past the depth limit nothing is copied), so that check_json still names
  # what else is wrong with it.
  def self.string_keys(value, limit = MAX_DEPTH + WRAP_DEPTH)
    return value unless (value.is_a?(Hash) || value.is_a?(Array)) && symbol_keys?(value, limit)

    string_keys_in(value, limit, {}.compare_by_identity)
  end

  # Whether a Hash within +limit+ levels of +value+ has a Symbol key.
  def self.symbol_keys?(value, limit)
    seen = {}.compare_by_identity
    stack = [[value, 0]]
    until stack.empty?
      v, depth = stack.pop
      next if depth > limit || seen.key?(v)

      seen[v] = true
      if v.is_a?(Hash)
        v.each do |k, item|
          return true if k.is_a?(Symbol)

          stack.push([item, depth + 1]) if item.is_a?(Hash) || item.is_a?(Array)
        end
      else
        v.each { |item| stack.push([item, depth + 1]) if item.is_a?(Hash) || item.is_a?(Array) }
      end
    end
    false
  end

  def self.string_keys_in(value, depth_left, copies)
    return value unless value.is_a?(Hash) || value.is_a?(Array)
    return copies[value] if copies.key?(value)
    return value if depth_left.negative?

    if value.is_a?(Array)
      copy = copies[value] = []
      value.each { |v| copy << string_keys_in(v, depth_left - 1, copies) }
    else
      copy = copies[value] = {}
      value.each { |k, v| copy[k.is_a?(Symbol) ? k.to_s : k] = string_keys_in(v, depth_left - 1, copies) }
    end
    copy
  end
  private_class_method :symbol_keys?, :string_keys_in

  # Characters of a value of the parent's that a report shows, at most.
  SHOWN = 100

  # +value+ as JSON text for a report, cut at SHOWN characters.
  def self.shown(value)
    text = begin
      JSON.generate(value, max_nesting: false)
    rescue StandardError
      value.class.to_s
    end
    text.length > SHOWN ? "#{text[0, SHOWN]}..." : text
  end

  # What a JSON value is, in a report: "null", "a JSON array", ...
  def self.json_kind(value)
    case value
    when nil then "null"
    when Array then "a JSON array"
    when String then "a JSON string"
    when Numeric then "a JSON number"
    when true, false then "a JSON boolean"
    else "a JSON value"
    end
  end

  def self.json_text!(text, parent, key)
    ok = if text.encoding == Encoding::BINARY
           text.ascii_only?
         else
           text.valid_encoding?
         end
    return if ok

    raise InvalidArgumentError, "#{json_path(parent, key)}: text that is not valid UTF-8 is not JSON"
  end

  def self.json_path(parent, key)
    parts = []
    until parent.nil?
      parts << (key.is_a?(Integer) ? "[#{key}]" : ".#{key}")
      key = parent[2]
      parent = parent[1]
    end
    parts << key.to_s
    parts.reverse.join
  end

  def self.too_deep!(value, parent, key, limit)
    node = parent
    root = key
    first = nil
    until node.nil?
      first = node if node[0].equal?(value) # the occurrence nearest the root names the cycle best
      root = node[2]
      node = node[1]
    end
    raise InvalidArgumentError, "#{root}: a cyclic value is not JSON (#{json_path(first[1], first[2])} contains itself)" if first

    raise LimitExceededError, "#{root}: nested more than #{limit} levels deep"
  end
  private_class_method :json_text!, :json_path, :too_deep!

  # One call in flight: #value waits for its reply (and raises its error).
  # Returned by RpcClient#request_async and by ctx.state.async; many calls
  # may be in flight from one thread, and their replies arrive in any order.
  class Call
    attr_reader :id

    def initialize(client, id)
      @client = client
      @id = id
      @state = nil # nil while in flight, then :ok or :error
      @value = nil
      @cv = nil # created by the first thread that has to wait
      @parked = 0 # threads waiting (under the client's lock)
    end

    # True once the reply (or the failure) is in.
    def done?
      !@state.nil?
    end

    # Wait for the reply; returns the result or raises the call's error.
    def value
      @client.await(self) if @state.nil?
      raise @value if @state == :error

      @value
    end

    # Wait for the reply without raising; returns self.
    def wait
      @client.await(self) if @state.nil?
      self
    end

    # -- for RpcClient, under its lock --------------------------------------

    # Settle once; returns how many threads wait for it (RpcClient wakes them).
    def settle(state, value) # :nodoc:
      return 0 unless @state.nil?

      @state = state
      @value = value
      @parked
    end

    # Wake every thread waiting for this call.
    def wake # :nodoc:
      @cv&.broadcast
    end

    # True while a thread waits for this call.
    def parked? # :nodoc:
      @parked.positive?
    end

    # Wake one thread waiting for this call, to take the reader's turn.
    def nudge # :nodoc:
      @cv&.signal
    end

    # Wait once (until woken, nudged or interrupted: the caller looks
    # again). A thread that was waiting when #settle counted it runs the
    # block on its way out (under the lock), even when an exception
    # (Thread#raise, Timeout) ends its wait.
    def park(lock) # :nodoc:
      return unless @state.nil?

      @cv ||= ConditionVariable.new
      @parked += 1
      begin
        Thread.handle_interrupt(Object => :immediate) { @cv.wait(lock) }
      ensure
        @parked -= 1
        yield unless @state.nil?
      end
    end
  end

  # NDJSON RPC over a pair of IOs, safe to use from several threads.
  #
  # Leader and followers: a thread waiting for a reply that finds nobody
  # reading the input reads it itself (the leader), settles the Call each
  # reply answers, and stops as soon as its own reply is in, passing the
  # turn to a thread still waiting. So a lone thread's call is a write and
  # a read in that thread, with no other thread in between. Threads whose
  # replies one read brought are woken one after another (a relay), each
  # by the one before as that one blocks again, so that each finds the
  # interpreter lock free instead of all of them queueing for it. The
  # background thread (#start) reads only while no call is waiting and
  # calls have paused (between invocations, say), and serves the parent's
  # requests (+on_request+), also those a leader read. Input is split on raw "\n" bytes, so a
  # multibyte character or a frame cut by a read never breaks a frame.
  # Calls block the calling thread only; other threads keep their requests
  # in flight, and #request_async keeps many in flight from one thread.
  #
  # Frames are written by whichever thread finds the writer free: it writes
  # every frame queued so far in one write, and frames other threads queue
  # meanwhile go out in its next write (no write, and no lock held, per frame).
  #
  # Frames both ways are bounded by +max_frame_bytes+ (MOTIA_STEP_MAX_FRAME_BYTES):
  # a request over it raises LimitExceededError in the caller before anything
  # is sent, a reply over it becomes an error reply, and an incoming frame
  # over it is answered at once (a request with a LIMIT_EXCEEDED error reply,
  # a reply by failing the call waiting for it), never buffered whole.
  class RpcClient
    DEFAULT_MAX_FRAME = MotiaState::DEFAULT_MAX_FRAME
    # Bytes kept of an oversized incoming frame, to read its type and id.
    HEAD_BYTES = 512
    TYPE_RE = /"type"\s*:\s*"(rpc_request|rpc_response)"/n
    # An id is a string or an integer; "1.5" or "1e3" must not be read as 1.
    ID_RE = /"id"\s*:\s*("(?:[^"\\]|\\.){0,256}"|-?\d{1,20})\s*[,}]/n

    # Frames queued by #request_async before they are written without waiting
    # for a flush: a long burst leaves in slices, so the parent starts on the
    # first requests while the rest are still being encoded.
    FLUSH_EVERY = 256

    # Bytes asked of one read.
    CHUNK = 65_536
    # How long a reader blocks before it looks again (at a call settled by
    # #close, a closed channel): a bound on waking up, not a poll of the input.
    RECHECK = 0.05
    # Calls must pause this long (s) before the background thread takes the
    # reader's turn: while they go on, their leaders read the input anyway,
    # and a turn held by the background thread costs the next caller a
    # hand-off.
    PAUSE = 0.02
    # A woken thread that does not block again within this long (it sleeps,
    # say, or works) has the relay passed on for it.
    RELAY_WAIT = 0.002
    # Waits a spin that found nothing makes skip the spin, at most.
    MAX_SKIP = 256
    NL = "\n".b
    private_constant :CHUNK, :RECHECK, :PAUSE, :RELAY_WAIT, :MAX_SKIP, :NL

    # Spins that ran, and those that found input (for tests).
    attr_reader :spins, :spin_hits

    attr_reader :max_frame_bytes

    def initialize(input, output, max_frame_bytes: MotiaState.frame_limit, spin_micros: MotiaState.spin_micros, &on_request)
      @input = input
      @output = output
      @input.binmode
      @output.binmode
      @output.sync = true
      @max_frame_bytes = max_frame_bytes
      @on_request = on_request || ->(_frame) {}
      @lock = Mutex.new
      @out = [] # frames queued, not yet written (under @lock)
      @writing = false # a thread is writing @out (under @lock)
      @waking = 0 # threads woken by a reply that have not yet resumed (under @lock)
      @pending = {}
      @method_heads = {}
      @next_id = 0
      @closed = false
      @close_reason = nil
      @failed = false # closed because the reader failed, not by the parent or a shutdown
      @done = Queue.new
      # The read side (under @lock, except the buffer, which only the thread
      # holding the turn touches).
      @leader = nil # the thread reading @input
      @parked = {} # Calls that a thread waits for, oldest first
      @rbuf = String.new # bytes read that do not yet end a line
      @skipping = false # dropping the rest of a line over the frame limit
      @inbox = [] # the parent's requests read by a caller, for the background thread
      @background = nil
      @background_cv = ConditionVariable.new
      @background_seen = -1 # @next_id when the background thread last saw calls go on
      @background_since = 0.0 # and when
      @background_now = true # take the turn without waiting for a pause
      @pause = PAUSE
      @recheck = RECHECK
      @relay_wait = RELAY_WAIT
      @spin = spin_micros / 1e6 # seconds
      @spin_skip = 0
      @spin_misses = 0
      @spins = 0
      @spin_hits = 0
      @woke = false # a reply woke a waiting thread since the background thread took the turn
      @relay = [] # settled Calls whose waiting threads are yet to be woken, in order
      @relay_holder = nil # the Call last woken, then the thread it woke, until it passes on
      @relay_seq = 0 # relay passes so far
      @thread_end = nil
    end

    # Start the background thread (the parent's requests, and reading while
    # no call waits); returns it. If it ends before the channel closes (an
    # exception, Thread#kill), the channel is closed as failed: every call
    # waiting fails with PeerClosedError and #wait_closed returns, so the
    # worker exits instead of waiting for requests nobody reads.
    def start
      # A woken thread that ends without calling again passes the relay on.
      @thread_end = TracePoint.new(:thread_end) { relay_on if @relay_holder.equal?(Thread.current) }
      @thread_end.enable
      @background = Thread.new do
        background_loop
      rescue Exception => e # rubocop:disable Lint/RescueException -- any end of this thread ends the channel
        reader_failed(e) unless @closed
      ensure
        close("the background reader stopped", failed: true) unless @closed
      end
      @background.report_on_exception = false
      @background
    end

    # Block until the channel closes.
    def wait_closed
      @done.pop
    end

    def closed?
      @closed
    end

    # True when the channel closed because reading it failed (a bug, or the
    # background thread killed), not because the parent closed it or asked
    # for a shutdown: the worker then exits with a failure status.
    def failed?
      @failed
    end

    # Call +method+ on the parent and wait for its result (raises its error).
    # Args that are not JSON raise InvalidArgumentError, a frame over the
    # limit LimitExceededError, before anything is sent (+checked+: the
    # caller has already checked the args).
    def request(method, args = nil, checked: false)
      call = start_call(method, args, checked)
      flush
      await_settled(call) unless call.done?
      call.value
    end

    # Like #request, without waiting: returns the Call (see Call#value).
    # Its frame is written with the next flush: when 256 frames are queued,
    # when any Call is waited for, or at the next #request or #flush.
    def request_async(method, args = nil, checked: false)
      call = start_call(method, args, checked)
      flush if @out.size >= FLUSH_EVERY
      call
    end

    # Write every queued frame now (in one write, unless another thread is
    # already writing: it then writes them next, before it returns).
    def flush
      failed = nil
      # Interrupts (Thread#raise, Timeout) wait until the frames taken are
      # written and the writer is free again: other threads' frames are in
      # the same write, and a frame cut short would break the stream.
      Thread.handle_interrupt(Object => :never) do
        loop do
          data = @lock.synchronize do
            return if @writing || @out.empty? || @waking.positive?

            @writing = true
            d = @out.join
            @out.clear
            d
          end
          begin
            write_out(data)
          rescue IOError, SystemCallError => e
            failed = e
            break
          ensure
            @lock.synchronize { @writing = false }
          end
        end
      end
      return unless failed

      close("write failed: #{failed.message}")
      raise PeerClosedError, "the channel to the parent is closed (#{failed.message})"
    end

    # Write all of +data+ (in #flush, where interrupts wait). Once the
    # channel is closed (shutdown), a wait for room in the pipe can be
    # interrupted: the parent may never read again, and the worker's exit,
    # which kills every thread, would wait for it.
    def write_out(data)
      until data.empty?
        n = @output.write_nonblock(data, exception: false)
        if n == :wait_writable
          if @closed
            Thread.handle_interrupt(Object => :immediate) { @output.wait_writable(@recheck) }
          else
            @output.wait_writable(@recheck) # looks again at a channel closed meanwhile
          end
          next
        end
        data = data.byteslice(n, data.bytesize - n)
      end
    end
    private :write_out

    # Wait until +call+ is settled (its frame is written first). For Call.
    def await(call) # :nodoc:
      flush
      await_settled(call)
    end

    # A request without a reply; raises as #request does.
    def notify(method, args = nil)
      MotiaState.check_json(args, "args", WRAP_DEPTH)
      line = encode({ "type" => "rpc_request", "method" => method, "args" => args })
      check_size!(line, "#{method} notification")
      write_line(line)
    end

    # Reply with a result, or with an error when it cannot go: STEP_FAILED
    # naming where it is not JSON (result.when), LIMIT_EXCEEDED when it is
    # nested past MAX_DEPTH + WRAP_DEPTH or over the frame limit.
    # With symbol_keys, a result holding Symbol keys goes with them as
    # Strings (see MotiaState.string_keys); only such a result is walked twice.
    def respond(id, result, symbol_keys: false)
      begin
        MotiaState.check_json(result, "result", WRAP_DEPTH)
      rescue SymbolKeyError
        raise unless symbol_keys

        result = MotiaState.string_keys(result)
        MotiaState.check_json(result, "result", WRAP_DEPTH)
      end
      line = encode({ "type" => "rpc_response", "id" => id, "result" => result })
      check_size!(line, "handler's result")
      write_line(line)
    rescue LimitExceededError => e
      respond_error(id, "LIMIT_EXCEEDED", e.message)
    rescue InvalidArgumentError => e
      respond_error(id, "STEP_FAILED", "the handler returned a value that is not JSON: #{e.message}")
    end

    # Reply with an error (a message or stack too big for a frame is cut).
    def respond_error(id, code, message, stack = nil)
      error = { "code" => code, "message" => text(message) }
      error["stack"] = text(stack) if stack
      line = encode({ "type" => "rpc_response", "id" => id, "error" => error })
      if line.bytesize > @max_frame_bytes
        room = [@max_frame_bytes / 8, 64].max
        error = { "code" => code, "message" => "#{error['message'][0, room]} [cut: over the frame limit]" }
        line = encode({ "type" => "rpc_response", "id" => id, "error" => error })
      end
      write_line(line)
    end

    def close(reason = "closed", failed: false)
      @lock.synchronize do
        return if @closed

        @closed = true
        @close_reason = reason
        @failed = failed
        @pending.each_value { |call| settle_locked(call, :error, PeerClosedError.new("the channel to the parent closed: #{reason}")) }
        @pending.clear
        @relay.each(&:wake)
        @relay.clear
        @relay_holder = nil
        @background_cv.signal
      end
      @thread_end&.disable
      @done.push(true)
    end

    # Feed one raw line (without its newline); public for tests.
    def handle_line(line)
      return if line.empty?

      unless line.force_encoding(Encoding::UTF_8).valid_encoding?
        # The parser would take it as it is: a request would run on text the parent never sent.
        unreadable(line.byteslice(0, HEAD_BYTES), "INVALID_ARGUMENT", "a frame that is not UTF-8 text")
        return
      end
      frame = begin
        JSON.parse(line, max_nesting: MAX_FRAME_NESTING)
      rescue JSON::NestingError
        oversized(line.byteslice(0, HEAD_BYTES), "a frame nested more than #{MAX_FRAME_NESTING} levels deep")
        return
      rescue JSON::ParserError, EncodingError => e
        unreadable(line.byteslice(0, HEAD_BYTES), "INVALID_ARGUMENT", "a frame that is not JSON (#{e.class})")
        return
      end
      unless frame.is_a?(Hash)
        refuse(nil, "INVALID_ARGUMENT", "a frame that is not a JSON object (#{MotiaState.json_kind(frame)})")
        return
      end

      if frame["type"] == "rpc_response"
        if (err = frame["error"])
          err = { "code" => "INTERNAL", "message" => err.to_s } unless err.is_a?(Hash)
          kind = :error
          value = MotiaState.error_for_code(err["code"], err["message"] || err["code"].to_s, err["details"])
        else
          kind = :ok
          value = frame["result"]
        end
        settled = @lock.synchronize { settle_locked(@pending.delete(frame["id"]), kind, value) }
        warn("motia-state: a reply to no request (id #{MotiaState.shown(frame['id'])})") unless settled
      elsif frame["type"] == "rpc_request"
        id = frame["id"]
        unless id.nil? || id.is_a?(String) || id.is_a?(Integer)
          # 1.5 or 1e400 is no id: answering it would need an id we cannot
          # write back, and serving it without an answer would leave the
          # parent waiting (as the parent does for a worker's frame).
          refuse(nil, "INVALID_ARGUMENT", "a request whose id is neither a string nor an integer (#{MotiaState.shown(id)})")
          return
        end
        unless frame["method"].is_a?(String)
          refuse(id, "INVALID_ARGUMENT", "a request whose method is not a string (#{MotiaState.shown(frame['method'])})")
          return
        end
        request_in(frame)
      else
        what = frame.key?("type") ? MotiaState.shown(frame["type"]) : "none"
        refuse(nil, "INVALID_ARGUMENT", "a frame whose type is neither rpc_request nor rpc_response (#{what})")
      end
    end

    # A frame of the parent's that is not served: one line on stderr saying
    # why, and an error reply when it is a request whose id can be read.
    # Only a frame that says it is a request is ever answered: the id of
    # anything else may be that of one of the parent's own requests.
    def refuse(id, code, message)
      answered = !id.nil? && !@closed
      warn("motia-state: #{message}: #{answered ? "answered #{code}" : 'dropped (no id to answer)'}")
      respond_error(id, code, message) if answered
    end

    # Serve one request of the parent (in the background thread). A failure
    # here is a bug of ours, not the parent's: it answers the request with
    # INTERNAL (when it has an id) and the reader carries on.
    def serve(frame) # :nodoc:
      @on_request.call(frame)
    rescue StandardError => e
      raise if @closed # a reply that can no longer be written: the channel is gone

      warn("motia-state: serving #{frame['method'].inspect} failed: #{e.class}: #{e.message}")
      id = frame["id"]
      respond_error(id, "INTERNAL", "the runner failed to serve #{frame['method'].inspect}: #{e.class}") unless id.nil?
    end

    # A frame over a limit: a request gets LIMIT_EXCEEDED, a reply fails its call.
    def oversized(head, what, frame_limit: false)
      limit = frame_limit ? "the #{@max_frame_bytes}-byte frame limit" : "the limit"
      unreadable(head, "LIMIT_EXCEEDED", "#{what} is over #{limit}")
    end

    # A frame we will not decode still gets its answer when its id can be
    # read: a request an error reply, a reply the failure of its call.
    def unreadable(head, code, message)
      head = head.b
      kind = TYPE_RE.match(head)&.[](1)
      raw_id = ID_RE.match(head)&.[](1)
      id = begin
        raw_id && JSON.parse("[#{raw_id.force_encoding(Encoding::UTF_8)}]")[0]
      rescue JSON::ParserError, EncodingError
        nil
      end
      unless kind == "rpc_response" &&
             @lock.synchronize { settle_locked(@pending.delete(id), :error, MotiaState.error_for_code(code, "the reply: #{message}")) }
        refuse(kind == "rpc_request" ? id : nil, code, message)
      end
    end

    private

    # Threads woken by replies write nothing until the last of them has
    # resumed: by then each has queued its next request (a thread loop
    # calls again at once), and they all go out in one write, so the parent
    # reads them, and answers them, together. The last one to resume writes
    # what is queued, so a woken thread that makes no further call holds
    # nothing up.
    def settle_locked(call, kind, value)
      return nil if call.nil?

      woken = call.settle(kind, value)
      if woken.positive?
        @waking += woken
        @woke = true
        @parked.delete(call)
        @relay << call
      end
      true
    end

    # Under @lock: wake the threads of the next call in the relay.
    def relay_locked
      while (call = @relay.shift)
        next unless call.parked? # its thread left (interrupted) or woke already

        call.wake
        @relay_holder = call
        @relay_seq += 1
        return
      end
      @relay_holder = nil
    end

    # Under @lock, where this thread is about to block or leave: start the
    # relay, or pass it on when this thread holds it.
    def relay_on_locked
      holder = @relay_holder
      return unless holder.nil? ? !@relay.empty? : holder.equal?(Thread.current)

      relay_locked
    end

    def relay_on
      @lock.synchronize { relay_on_locked }
    end

    # Wait for +call+'s reply: read the input while nobody else does, park
    # while another thread does. Interrupts (Thread#raise, Timeout, kill)
    # land only while parked or while waiting for input, never between a
    # read and the handling of what it read, so no reply is lost and the
    # turn is always passed on.
    def await_settled(call)
      last = false
      Thread.handle_interrupt(Object => :never) do
        until call.done?
          lead = @lock.synchronize { take_turn_or_park(call) { last = (@waking -= 1).zero? } }
          lead_until(call) if lead
        end
      end
    ensure
      flush if last
    end

    # Under @lock: true when this thread takes the reader's turn, else
    # false after one wait (the block runs as Call#park runs it).
    def take_turn_or_park(call, &on_woken)
      return false if call.done?

      if @closed # #close settles every call; this one was not in @pending
        call.settle(:error, PeerClosedError.new("the channel to the parent is closed (#{@close_reason})"))
        return false
      end
      if @leader.nil?
        @leader = Thread.current
        return true
      end

      @parked[call] = true
      relay_on_locked # about to block: the next woken thread may run
      parked = false
      begin
        call.park(@lock, &on_woken)
        parked = true
      ensure
        @parked.delete(call) unless call.parked?
        if @relay_holder.equal?(call)
          @relay_holder = Thread.current
          # No leader waits for input (its wait would notice a stalled
          # relay): the background thread watches this one pass it on.
          @background_cv.signal if @leader.nil?
        end
        unless parked
          # An interrupted thread may have been handed the turn, or the
          # relay: it passes both on.
          relay_on_locked
          hand_off_locked
        end
      end
      false
    end

    # Read until +call+ is settled (by its reply, or by the channel closing).
    def lead_until(call)
      nil while !call.done? && read_some(spin: true)
    ensure
      release_turn
    end

    def release_turn
      @lock.synchronize do
        relay_on_locked
        @leader = nil if @leader.equal?(Thread.current)
        hand_off_locked
      end
    end

    # Under @lock: a free turn goes to a thread waiting for a reply.
    def hand_off_locked
      return unless @leader.nil?

      @parked.each_key do |call|
        next if call.done?

        call.nudge
        return
      end
    end

    # One wait for input (up to RECHECK; interruptible) and one read,
    # whose whole lines are handled before anything else can interrupt.
    # False once the channel is closed.
    def read_some(spin: false)
      return false if @closed

      seq = nil
      unless @relay.empty? && @relay_holder.nil?
        @lock.synchronize do
          relay_on_locked
          seq = @relay_seq unless @relay_holder.nil?
        end
      end
      # A spin holds the interpreter lock: only while no woken thread waits to run.
      if spin && seq.nil? && @spin.positive? && @waking.zero?
        if @spin_skip.positive?
          @spin_skip -= 1
        elsif spin_for_input
          feed_read
          return true
        end
      end
      unless Thread.handle_interrupt(Object => :immediate) { @input.wait_readable(seq ? @relay_wait : @recheck) }
        # A relay that stalled (its thread blocks elsewhere) goes on without it.
        @lock.synchronize { relay_locked if @relay_seq == seq && !@relay_holder.nil? } if seq
        return true
      end

      feed_read
      true
    rescue EOFError
      feed_end
      close("the parent closed the channel")
      false
    rescue IOError, SystemCallError => e
      close("read failed: #{e.message}")
      false
    end

    # Read once and handle what came. A line that fails to be handled closes
    # the channel as failed (#line_in); anything else escaping here (out of
    # memory, say) leaves the buffer in an unknown state, so it does the
    # same: every waiting call fails instead of waiting for a reply lost
    # with it.
    def feed_read
      chunk = @input.readpartial(CHUNK)
      begin
        feed(chunk)
      rescue Exception => e # rubocop:disable Lint/RescueException -- re-raised
        reader_failed(e) unless @closed
        raise
      end
    end

    # Poll the input without sleeping for up to the spin budget: a reply that
    # comes back that fast is read without the wake-up that a sleep costs
    # (as the Python and Node runners do). A spin that finds nothing makes
    # the next 2, 4, ... up to MAX_SKIP waits sleep at once, until a spin
    # pays off again.
    def spin_for_input
      @spins += 1
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + @spin
      until @input.wait_readable(0)
        next if Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline

        @spin_misses = [@spin_misses + 1, 8].min
        @spin_skip = [1 << @spin_misses, MAX_SKIP].min
        return false
      end
      @spin_hits += 1
      @spin_misses = 0
      true
    end

    # Split bytes read into lines and handle each whole one; what follows
    # the last newline waits for the next read. A line over the frame limit
    # is answered from its head and the rest of it dropped as it arrives,
    # never buffered whole.
    def feed(chunk)
      if @skipping
        nl = chunk.index(NL)
        return if nl.nil?

        @skipping = false
        chunk = chunk.byteslice(nl + 1, chunk.bytesize - nl - 1)
      end
      from = @rbuf.bytesize # the bytes kept from earlier reads hold no newline
      buf = from.zero? ? chunk : @rbuf << chunk
      start = 0
      while (nl = buf.index(NL, from))
        line_in(buf.byteslice(start, nl - start))
        return if @closed # a shutdown, or a failure: nothing after it is served

        start = from = nl + 1
      end
      @rbuf = start.zero? ? buf : buf.byteslice(start, buf.bytesize - start)
      return if @rbuf.bytesize <= @max_frame_bytes

      oversized(@rbuf.byteslice(0, HEAD_BYTES), "a frame of more than #{@max_frame_bytes} bytes", frame_limit: true)
      @rbuf = String.new
      @skipping = true
    end

    # One line. Handling it raises only through a bug of ours (the parent's
    # bad frames are answered, not raised): the reply it held, and whatever
    # else was read with it, may be lost, so nothing waiting can be trusted
    # to be answered. The channel closes as failed: every waiting call
    # fails at once, and the worker exits with a failure status.
    def line_in(line)
      if line.bytesize > @max_frame_bytes
        oversized(line.byteslice(0, HEAD_BYTES), "a frame of more than #{@max_frame_bytes} bytes", frame_limit: true)
      else
        handle_line(line)
      end
    rescue StandardError => e
      raise if @closed

      reader_failed(e)
    end

    def reader_failed(error)
      warn("motia-state: the reader failed: #{error.class}: #{error.message}\n" \
           "#{(error.backtrace || []).first(20).join("\n")}")
      close("the reader failed (#{error.class}: #{error.message})", failed: true)
    end

    # The input ended: a last line without its newline is still a frame.
    def feed_end
      line = @rbuf
      @rbuf = String.new
      line_in(line) unless @skipping || line.empty?
    end

    # A request from the parent read by a caller goes to the background
    # thread, which serves requests (a caller only waits for its reply).
    def request_in(frame)
      if @background.nil? || Thread.current.equal?(@background)
        serve(frame)
      else
        @lock.synchronize do
          @inbox << frame
          @background_cv.signal
        end
      end
    end

    # The background thread: serves the requests callers read, and reads
    # the input itself while no call waits and calls have paused (or the
    # last request was answered), so that requests arriving between calls
    # are read.
    def background_loop
      loop do
        frames = nil
        lead = false
        @lock.synchronize do
          loop do
            return if @closed

            unless @inbox.empty?
              frames = @inbox
              @inbox = []
              break
            end
            now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
            unless @background_seen == @next_id # calls went on: the pause starts again
              @background_seen = @next_id
              @background_since = now
            end
            paused = @background_now || now - @background_since >= @pause
            if paused && @leader.nil? && @parked.each_key.none? { |c| !c.done? }
              @leader = Thread.current
              @background_now = false
              @woke = false
              lead = true
              break
            end
            hand_off_locked # a waiter that missed its turn
            relay_on_locked
            seq = @relay_seq
            relaying = !@relay_holder.nil? && @leader.nil? # a leader's wait covers a stall
            wait = if relaying then @relay_wait
                   elsif paused then @pause # a caller leads: it passes the turn on when done
                   else @pause - (now - @background_since)
                   end
            @background_cv.wait(@lock, wait)
            relay_locked if relaying && @relay_seq == seq && !@relay_holder.nil? # stalled
          end
        end
        frames&.each { |frame| serve(frame) }
        lead_background if lead
      end
    end

    # Read until a reply wakes a waiting thread: its next call reads for itself.
    def lead_background
      nil while read_some && !@woke
    ensure
      release_turn
    end

    # Register a call and queue its frame (not yet written); one lock for both.
    def start_call(method, args, checked)
      MotiaState.check_json(args, "args", WRAP_DEPTH) unless checked
      head = @method_heads[method] || (@method_heads[method] = %(,"method":#{encode(method)},"args":))
      body = encode(args)
      # The rest of the frame, with an id of up to 20 digits, is under 48
      # bytes: only a frame that may be over the limit is measured exactly.
      if body.bytesize + head.bytesize + 48 > @max_frame_bytes
        frame = { "type" => "rpc_request", "id" => @next_id + 1, "method" => method, "args" => args }
        check_size!(encode(frame), "#{method} request")
      end
      @lock.synchronize do
        raise PeerClosedError, "the channel to the parent is closed (#{@close_reason})" if @closed

        id = (@next_id += 1)
        call = Call.new(self, id)
        @pending[id] = call
        @out << %({"type":"rpc_request","id":#{id}#{head}#{body}}\n)
        call
      end
    end

    # Frames are checked by check_json first, so the generator's own nesting
    # limit (100 by default) is lifted: values nest up to MAX_DEPTH.
    def encode(frame)
      JSON.generate(frame, max_nesting: false)
    rescue JSON::GeneratorError, Encoding::UndefinedConversionError, EncodingError => e
      raise InvalidArgumentError, "args: not JSON (#{e.message})"
    end

    def check_size!(line, what)
      return if line.bytesize <= @max_frame_bytes

      raise LimitExceededError, "the #{what} encodes to #{line.bytesize} bytes, over the #{@max_frame_bytes}-byte frame limit"
    end

    def text(value)
      value = value.to_s
      value = value.dup.force_encoding(Encoding::UTF_8) if value.encoding == Encoding::BINARY
      value.valid_encoding? ? value : value.scrub("?")
    end

    # A response ends the parent's request: the background thread may read
    # at once (the parent's next request, say) instead of after a pause.
    def write_line(line)
      @lock.synchronize do
        raise PeerClosedError, "the channel to the parent is closed" if @closed && line.start_with?('{"type":"rpc_request","id"')
        # After a failed read nothing goes out: the parent learns of it from
        # the exit, not from answers that look like a handler's own failure.
        return if @failed

        @out << line << "\n"
        relay_on_locked if @relay_holder.equal?(Thread.current)
        if line.start_with?('{"type":"rpc_response"')
          @background_now = true
          @background_cv.signal
        end
      end
      flush
    end
  end
end
