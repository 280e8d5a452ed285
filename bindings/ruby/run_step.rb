# frozen_string_literal: true

# motia-state's Ruby runner: `ruby run_step.rb <step file>`.
require_relative "lib/motia_state"

exit(MotiaState.main(ARGV))
