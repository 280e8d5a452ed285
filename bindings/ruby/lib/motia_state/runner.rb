# frozen_string_literal: true

require_relative "rpc"
require_relative "state"

module MotiaState
  # ctx.logger: structured log lines sent to the parent's logger.
  class Logger
    def initialize(client, trace_id)
      @client = client
      @trace_id = trace_id
    end

    %w[debug info warn error].each do |level|
      define_method(level) do |msg, fields = {}|
        record = fields.to_h.transform_keys(&:to_s).merge("level" => level == "warn" ? "warning" : level,
                                                             "msg" => msg.to_s, "traceId" => @trace_id)
        @client.notify("log", record) # a field that is not JSON raises InvalidArgumentError naming it
      end
    end
    alias warning warn
  end

  # ctx: trace_id (and traceId), state, logger, emit, flows, call.
  class Context
    attr_reader :trace_id, :state, :logger, :flows

    def initialize(client, state, trace_id, flows)
      @client = client
      @state = state
      @trace_id = trace_id
      @flows = flows
      @logger = Logger.new(client, trace_id)
    end

    alias traceId trace_id # rubocop:disable Naming/MethodName

    # emit({topic:, data:}) or emit(topic, data).
    def emit(event, data = nil)
      args = if event.is_a?(Hash)
               { "topic" => event[:topic] || event["topic"], "data" => event.key?(:data) ? event[:data] : event["data"] }
             else
               { "topic" => event, "data" => data }
             end
      begin
        @client.request("emit", args)
      rescue SymbolKeyError # refused before anything was sent: { a: 1 } goes as { "a" => 1 }
        args["data"] = MotiaState.string_keys(args["data"])
        @client.request("emit", args)
      end
    end

    # Any method the orchestrator registered.
    def call(method, args = nil)
      @client.request(method, args)
    end

    # Hash-like access (ctx[:state]) as some seed steps use it.
    def [](name)
      public_send(name.to_sym)
    end
  end

  # An exception that ends a thread the step started (and that Ruby would
  # report on stderr, report_on_exception being true) goes to +handler+
  # instead, once: the worker logs it as the step's error and serves on.
  module ThreadErrors
    class << self
      attr_accessor :handler

      # Run a thread's block; an exception that ends it is reported first.
      def run(block, args)
        block.call(*args)
      rescue Exception => e # rubocop:disable Lint/RescueException -- re-raised: Thread#join and #value still see it
        report(e)
        raise
      end

      def report(error)
        thread = Thread.current
        return if error.is_a?(SystemExit) || !thread.report_on_exception || handler.nil?

        handler.call(error)
        thread.report_on_exception = false # reported once, in the log, not again on stderr
      rescue Exception # rubocop:disable Lint/RescueException -- the thread's own error is what matters
        nil
      end

      # Wrap Thread.new (and subclasses' super), Thread.start and Thread.fork.
      def install
        return if @installed

        @installed = true
        Thread.prepend(NewThread)
        Thread.singleton_class.prepend(StartThread)
      end
    end

    # Thread.new and a subclass's super { ... }.
    module NewThread
      def initialize(*args, &block)
        return super unless block # Ruby's own error: "must be called with a block"

        super(*args) { |*a| ThreadErrors.run(block, a) }
      end
    end

    # Thread.start and Thread.fork, which do not call #initialize.
    module StartThread
      def start(*args, &block)
        return super unless block

        super(*args) { |*a| ThreadErrors.run(block, a) }
      end

      def fork(*args, &block)
        return super unless block

        super(*args) { |*a| ThreadErrors.run(block, a) }
      end
    end
  end

  # Loads a step file and answers the parent's invoke requests, each in its
  # own thread so that the reader keeps serving replies.
  class Worker
    def initialize(step_path, input, output)
      @step_path = step_path
      @step_file = File.expand_path(step_path) # as the log names it
      @client = RpcClient.new(input, output) { |frame| on_request(frame) }
      @state = StateManager.new(@client)
      @host = Object.new
      @load_error = nil
    end

    def serve
      ThreadErrors.handler = ->(error) { unhandled(error) }
      ThreadErrors.install
      begin
        load_step
      rescue Exception => e # rubocop:disable Lint/RescueException -- reported as the invoke's failure
        @load_error = e
        warn(Worker.describe_failure(e).join("\n"))
      end
      @client.start
      @client.wait_closed
      @client.failed? ? 1 : 0
    end

    # Log an error the step left where nothing handles it (a thread's
    # exception) and serve on; never raises. An error record on the parent's
    # log channel, naming the step file, with the message and stack (as the
    # Node and Python runners log theirs); only when the channel is gone
    # does it go to stderr instead.
    def unhandled(error)
      message, stack = Worker.describe_failure(error)
      msg = "#{@step_file}: an error nothing handled: #{message}"
      begin
        unless @client.closed?
          @client.notify("log", { "level" => "error", "msg" => msg, "stepFile" => Worker.utf8_text(@step_file),
                                  "error" => message, "stack" => stack })
          return
        end
      rescue Exception # rubocop:disable Lint/RescueException -- stderr still has it
        nil
      end
      warn("motia-state: #{msg}\n#{stack}")
    rescue Exception # rubocop:disable Lint/RescueException -- never the worker's end
      nil
    end

    private

    def load_step
      source = File.read(@step_path)
      # The step's top-level methods (handler, config) land on a private
      # host object, not on every Object of the process.
      @host.instance_eval(source, File.expand_path(@step_path), 1)
    end

    # A request of the parent's (its id and method, a String, checked by the
    # client). What cannot be served is refused, as the parent refuses a
    # worker's: an unknown method NOT_FOUND, a request whose answer nothing
    # could carry (no id) or whose args do not fit INVALID_ARGUMENT, each
    # reported on stderr.
    def on_request(frame)
      method, id, args = frame.values_at("method", "id", "args")
      return @client.close("shutdown") if method == "shutdown"

      name = MotiaState.shown(method)
      unless %w[invoke config condition].include?(method)
        return @client.refuse(id, "NOT_FOUND", "a request for an unknown method #{name} " \
                                               "(the Ruby runner serves invoke, config, condition and shutdown)")
      end
      if id.nil?
        return @client.refuse(nil, "INVALID_ARGUMENT", "a request for #{name} without an id (nothing could carry its answer)")
      end
      if method != "config" && !args.is_a?(Hash)
        return @client.refuse(id, "INVALID_ARGUMENT",
                              "a request for #{name} whose args are not an object (#{MotiaState.shown(args)})")
      end

      case method
      when "invoke"
        Thread.new { invoke(id, args) }
      when "config"
        # Its own thread, as a condition's: a config method that calls the
        # parent would otherwise wait for a reply that only this thread reads.
        Thread.new { answer_config(id) }
      else
        Thread.new { answer_condition(id, args) }
      end
    end

    # Reply with the step's CONFIG constant or config method (null when
    # none), without running the handler.
    def answer_config(id)
      return if id.nil?
      raise @load_error if @load_error

      config = begin
        Worker.describe_config(step_config) # runs the step's code (a config method)
      rescue Exception => e # rubocop:disable Lint/RescueException -- its failure is the reply
        @client.respond_error(id, "STEP_FAILED", "the step's config is not JSON: #{Worker.describe_failure(e)[0]}")
        return
      end
      respond(id, config, "the step's config")
    rescue Exception => e # rubocop:disable Lint/RescueException -- reported to the parent
      @client.respond_error(id, "STEP_FAILED", *Worker.describe_failure(e))
    end

    def step_config
      holder = @host.singleton_class
      return holder.const_get(:CONFIG, false) if holder.const_defined?(:CONFIG, false)
      return @host.send(:config) if @host.respond_to?(:config, true)

      nil
    end

    # ["Class: message", backtrace] of anything a step raises, as UTF-8
    # text. Never raises (a message in an encoding that is not
    # ASCII-compatible, a #message or #backtrace that raises): the failure
    # must become the reply, or the parent would wait for it until its
    # timeout. A class the step file defines is named as the step wrote it,
    # without the host object's anonymous class in front.
    def self.describe_failure(error)
      name = begin
        error.class.to_s.sub(/\A.*>::/, "")
      rescue Exception # rubocop:disable Lint/RescueException -- the step's own code
        "Exception"
      end
      message = begin
        utf8_text(error.message)
      rescue Exception => e # rubocop:disable Lint/RescueException -- the step's own code
        "<#message raised #{e.class}>"
      end
      backtrace = begin
        (error.backtrace || []).join("\n")
      rescue Exception # rubocop:disable Lint/RescueException -- the step's own code
        ""
      end
      ["#{utf8_text(name)}: #{message}", utf8_text(backtrace)]
    end

    # value.to_s as valid UTF-8: other encodings converted, what is not
    # valid written as "?".
    def self.utf8_text(value)
      text = value.to_s
      if text.encoding == Encoding::BINARY || text.encoding == Encoding::US_ASCII
        text = text.dup.force_encoding(Encoding::UTF_8)
      elsif text.encoding != Encoding::UTF_8
        text = text.encode(Encoding::UTF_8, invalid: :replace, undef: :replace, replace: "?")
      end
      text.valid_encoding? ? text : text.scrub("?")
    end

    # The config as JSON: a Proc or Method inside it (a native condition),
    # or any other value JSON cannot carry, shows as {"native" => true};
    # symbols become strings.
    def self.describe_config(value)
      case value
      when Hash then value.to_h { |k, v| [k.to_s, describe_config(v)] }
      when Array then value.map { |v| describe_config(v) }
      when Symbol then value.to_s
      when Float then value.finite? ? value : { "native" => true }
      when String, Integer, true, false, nil then value
      else { "native" => true }
      end
    end

    # The condition of config.triggers[trigger] (a Proc or Method), or the
    # step's own condition(value, ctx) method when trigger is null.
    def find_condition(trigger)
      raise @load_error if @load_error
      return @host.method(:condition) if trigger.nil? && @host.respond_to?(:condition, true)
      raise NoMethodError, "step file #{@step_path} defines no condition(value, ctx)" if trigger.nil?

      triggers = (step_config || {}).then { |c| c[:triggers] || c["triggers"] } || []
      unless trigger.is_a?(Integer) && trigger >= 0 && trigger < triggers.length
        raise IndexError, "config.triggers has no trigger #{trigger.inspect}"
      end

      fn = triggers[trigger][:condition] || triggers[trigger]["condition"]
      return fn if fn.respond_to?(:call)

      raise NoMethodError, "step file #{@step_path} defines no function config.triggers[#{trigger}].condition"
    end

    # Reply with the condition's result as a boolean (Ruby's truthiness);
    # its ctx reads state.
    def answer_condition(id, args)
      fn = find_condition(args["trigger"])
      ctx = Context.new(@client, @state, args["traceId"], nil)
      ctx.define_singleton_method(:change) { args["change"] }
      result = fn.call(args["value"], ctx)
      @client.respond(id, result ? true : false) unless id.nil?
    rescue Exception => e # rubocop:disable Lint/RescueException -- the condition's failure is the reply
      @client.respond_error(id, "STEP_FAILED", *Worker.describe_failure(e)) unless id.nil?
    end

    def invoke(id, args)
      result = begin
        run_handler(args)
      rescue Exception => e # rubocop:disable Lint/RescueException -- the step's failure is the reply
        @client.respond_error(id, "STEP_FAILED", *Worker.describe_failure(e)) unless id.nil?
        return
      end
      respond(id, result, "the handler's return value") unless id.nil?
    end

    # Reply with value (a result that cannot go becomes an error reply); the
    # step's own code that raises while it is read (a Hash subclass whose
    # #each raises) is STEP_FAILED, named as the other runners name it.
    # Symbol keys go as Strings: { status: 201 } is { "status" => 201 }.
    def respond(id, value, what)
      @client.respond(id, value, symbol_keys: true)
    rescue Exception => e # rubocop:disable Lint/RescueException -- the step's own code
      @client.respond_error(id, "STEP_FAILED", "#{what} is not JSON: #{Worker.describe_failure(e)[0]}")
    end

    def run_handler(args)
      raise @load_error if @load_error
      raise NoMethodError, "step file #{@step_path} defines no handler(data, ctx)" unless @host.respond_to?(:handler, true)

      ctx = Context.new(@client, @state, args["traceId"], args["flows"])
      if args["contextInFirstArg"]
        @host.send(:handler, ctx)
      else
        @host.send(:handler, args["data"], ctx)
      end
    end
  end

  # The protocol's [input, output], private to this process: the descriptors
  # the parent names in MOTIA_STEP_PROTOCOL_FDS, or copies of fds 0 and 1
  # for a worker started by hand. Either way close-on-exec, so no process
  # the step starts inherits them; the variable is removed so that it
  # cannot mislead one.
  def self.protocol_ios(env = ENV)
    spec = env.delete("MOTIA_STEP_PROTOCOL_FDS").to_s
    match = /\A(\d+),(\d+)\z/.match(spec)
    return [$stdin.dup, $stdout.dup] unless match && match[1].to_i >= 3 && match[2].to_i >= 3

    [IO.for_fd(match[1].to_i, "rb"), IO.for_fd(match[2].to_i, "wb")].each { |io| io.close_on_exec = true }
  rescue SystemCallError, ArgumentError
    [$stdin.dup, $stdout.dup]
  end

  # run_step.rb <step file>: serve the step until shutdown or EOF.
  def self.main(argv)
    if argv.empty?
      warn("usage: run_step.rb <step file>")
      return 2
    end
    input, output = protocol_ios
    # fds 0 and 1 become harmless (the parent may have done so already).
    $stdout.reopen($stderr)
    $stdin.reopen(File::NULL)
    Worker.new(argv[0], input, output).serve
  end
end
