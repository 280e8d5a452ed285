# frozen_string_literal: true

require_relative "lib/motia_state/version"

Gem::Specification.new do |spec|
  spec.name = "motia_state"
  spec.version = MotiaState::VERSION
  spec.summary = "Ruby steps for motia-state: one shared, atomic state for polyglot workflow steps"
  spec.description = "The state client, errors and step runner that motia-state's parent process " \
                     "starts for Ruby step files. Standard library only."
  spec.authors = ["motia-state"]
  spec.license = "MIT"
  spec.required_ruby_version = ">= 3.0"
  spec.files = Dir["lib/**/*.rb"] + ["run_step.rb"]
  spec.require_paths = ["lib"]
  spec.executables = []
  spec.metadata["rubygems_mfa_required"] = "true"
end
