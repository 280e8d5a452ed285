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

  CODES = %w[
    INVALID_ARGUMENT TYPE_MISMATCH CONFLICT LIMIT_EXCEEDED UNAVAILABLE
    NOT_FOUND TIMEOUT STEP_FAILED INTERNAL
  ].freeze

  ERRORS_BY_CODE = {}
  CODES.each do |code|
    # INVALID_ARGUMENT -> InvalidArgumentError
    name = code.split("_").map(&:capitalize).join + "Error"
    klass = Class.new(Error)
    klass.const_set(:CODE, code)
    const_set(name, klass)
    ERRORS_BY_CODE[code] = klass
  end
  ERRORS_BY_CODE.freeze

  # The channel to the parent is gone.
  class PeerClosedError < UnavailableError; end

  # The exception for a wire error {code, message} (unknown codes become INTERNAL).
  def self.error_for_code(code, message, details = nil)
    klass = ERRORS_BY_CODE.fetch(code, InternalError)
    klass.new(message, code: ERRORS_BY_CODE.key?(code) ? code : "INTERNAL", details: details)
  end
end
