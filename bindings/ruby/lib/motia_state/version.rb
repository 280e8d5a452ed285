# frozen_string_literal: true

module MotiaState
  # The release, the same string as the Python package's (motia_state/_version.py);
  # the gemspec reads it from here.
  VERSION = "0.1.0"
end
