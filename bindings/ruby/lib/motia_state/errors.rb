# frozen_string_literal: true

module MotiaState
  # Root of every error the binding raises on purpose; carries #code.
  class Error < StandardError
    attr_reader :code, :details

    def initialize(message = nil, code: nil, details: nil)
      super(message)
      @code = code || self.class::CODE
      @details = details
    end

    CODE = "INTERNAL"
  end

  # Every stable error code and the name of its class, in the contract's
  # order: declared once, here; the drift tests hold it to the core's.
  ERROR_CLASSES = {
    "INVALID_ARGUMENT" => "InvalidArgumentError",
    "TYPE_MISMATCH" => "TypeMismatchError",
    "CONFLICT" => "ConflictError",
    "LIMIT_EXCEEDED" => "LimitExceededError",
    "UNAVAILABLE" => "UnavailableError",
    "NOT_FOUND" => "NotFoundError",
    "TIMEOUT" => "TimeoutError",
    "STEP_FAILED" => "StepFailedError",
    "UPDATE_FAILED" => "UpdateFailedError",
    "CURSOR_EXPIRED" => "CursorExpiredError",
    "CORRUPT" => "CorruptStoreError",
    "INTERNAL" => "InternalError"
  }.freeze

  CODES = ERROR_CLASSES.keys.freeze

  ERRORS_BY_CODE = {}
  ERROR_CLASSES.each do |code, name|
    klass = Class.new(Error)
    klass.const_set(:CODE, code)
    const_set(name, klass)
    ERRORS_BY_CODE[code] = klass
  end
  ERRORS_BY_CODE.freeze

  # The channel to the parent is gone.
  class PeerClosedError < UnavailableError; end

  # A Hash key is a Symbol: check_json names it apart so that a caller that
  # takes Ruby's own style (a step's result, emitted data) converts the
  # keys only when there is one, and checks its values in one walk.
  class SymbolKeyError < InvalidArgumentError; end

  # The exception for a wire error {code, message} (unknown codes become INTERNAL).
  def self.error_for_code(code, message, details = nil)
    klass = ERRORS_BY_CODE.fetch(code, InternalError)
    klass.new(message, code: ERRORS_BY_CODE.key?(code) ? code : "INTERNAL", details: details)
  end
end
