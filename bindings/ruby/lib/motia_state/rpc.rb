# frozen_string_literal: true

require "json"
require_relative "errors"

module MotiaState
  # NDJSON RPC over a pair of IOs, safe to use from several threads.
  #
  # One reader thread splits raw bytes on "\n" (so a multibyte character cut
  # by a read never breaks a frame), hands each reply to the thread waiting
  # for it, and each request from the parent to +on_request+. Calls block the
  # calling thread only; other threads keep their requests in flight.
  class RpcClient
    DEFAULT_MAX_FRAME = 16 * 1024 * 1024

    attr_reader :max_frame_bytes

    def initialize(input, output, max_frame_bytes: DEFAULT_MAX_FRAME, &on_request)
      @input = input
      @output = output
      @input.binmode
      @output.binmode
      @output.sync = true
      @max_frame_bytes = max_frame_bytes
      @on_request = on_request || ->(_frame) {}
      @lock = Mutex.new
      @write_lock = Mutex.new
      @pending = {}
      @next_id = 0
      @closed = false
      @close_reason = nil
      @done = Queue.new
    end

    # Start the reader thread; returns it.
    def start
      @reader = Thread.new { read_loop }
      @reader.report_on_exception = false
      @reader
    end

    # Block until the channel closes.
    def wait_closed
      @done.pop
    end

    def closed?
      @closed
    end

    # Call +method+ on the parent and wait for its result (raises its error).
    def request(method, args = nil)
      waiter = Queue.new
      id = nil
      @lock.synchronize do
        raise PeerClosedError, "the channel to the parent is closed (#{@close_reason})" if @closed

        id = (@next_id += 1)
        @pending[id] = waiter
      end
      begin
        send_frame({ "type" => "rpc_request", "id" => id, "method" => method, "args" => args })
      rescue StandardError
        @lock.synchronize { @pending.delete(id) }
        raise
      end
      kind, value = waiter.pop
      raise value if kind == :error

      value
    end

    # A request without a reply.
    def notify(method, args = nil)
      send_frame({ "type" => "rpc_request", "method" => method, "args" => args })
    end

    def respond(id, result)
      send_frame({ "type" => "rpc_response", "id" => id, "result" => result })
    end

    def respond_error(id, code, message, stack = nil)
      error = { "code" => code, "message" => message }
      error["stack"] = stack if stack
      send_frame({ "type" => "rpc_response", "id" => id, "error" => error })
    end

    def close(reason = "closed")
      waiters = @lock.synchronize do
        return if @closed

        @closed = true
        @close_reason = reason
        w = @pending.values
        @pending.clear
        w
      end
      waiters.each { |w| w.push([:error, PeerClosedError.new("the channel to the parent closed: #{reason}")]) }
      @done.push(true)
    end

    # Feed one raw line (without its newline); public for tests.
    def handle_line(line)
      return if line.empty?

      frame = begin
        JSON.parse(line.force_encoding(Encoding::UTF_8))
      rescue JSON::ParserError, EncodingError
        warn("motia-state: not a frame: #{line[0, 200].inspect}")
        return
      end
      return unless frame.is_a?(Hash)

      if frame["type"] == "rpc_response"
        waiter = @lock.synchronize { @pending.delete(frame["id"]) }
        if waiter.nil?
          warn("motia-state: a reply to no request (id #{frame['id'].inspect})")
        elsif frame["error"]
          err = frame["error"]
          err = { "code" => "INTERNAL", "message" => err.to_s } unless err.is_a?(Hash)
          waiter.push([:error, MotiaState.error_for_code(err["code"], err["message"] || err["code"].to_s, err["details"])])
        else
          waiter.push([:ok, frame["result"]])
        end
      elsif frame["type"] == "rpc_request"
        @on_request.call(frame)
      end
    end

    private

    def send_frame(frame)
      line = begin
        JSON.generate(frame)
      rescue JSON::GeneratorError, Encoding::UndefinedConversionError, EncodingError => e
        raise InvalidArgumentError, "args: not JSON (#{e.message})"
      end
      @write_lock.synchronize do
        raise PeerClosedError, "the channel to the parent is closed" if @closed && frame["type"] == "rpc_request" && frame["id"]

        @output.write(line, "\n")
      end
    rescue IOError, SystemCallError => e
      close("write failed: #{e.message}")
      raise PeerClosedError, "the channel to the parent is closed (#{e.message})"
    end

    def read_loop
      limit = @max_frame_bytes + 1
      loop do
        line = @input.gets("\n", limit)
        break if line.nil?

        if line.end_with?("\n")
          handle_line(line.chomp("\n"))
        elsif line.bytesize >= limit
          warn("motia-state: dropped a frame over #{@max_frame_bytes} bytes")
          # Skip the rest of the oversized line, never buffering it whole.
          loop do
            rest = @input.gets("\n", limit)
            break if rest.nil? || rest.end_with?("\n")
          end
        else
          handle_line(line) # the last line, without a newline
        end
      end
      close("the parent closed the channel")
    rescue IOError, SystemCallError => e
      close("read failed: #{e.message}")
    end
  end
end
