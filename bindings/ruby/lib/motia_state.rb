# frozen_string_literal: true

# motia-state for Ruby steps: the state client, its errors, the runner.
require_relative "motia_state/version"
require_relative "motia_state/errors"
require_relative "motia_state/rpc"
require_relative "motia_state/state"
require_relative "motia_state/runner"
