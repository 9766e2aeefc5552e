# frozen_string_literal: true

require_relative "lib/clearbg/version"

Gem::Specification.new do |spec|
  spec.name = "clearbg"
  spec.version = ClearBG::VERSION
  spec.summary = "Ruby SDK for ClearBG: background removal with remove.bg's REST API"
  spec.description = "One client object, typed results with every figure the server sends, one exception " \
                     "class per failure, retries that honour Retry-After and never charge twice (Idempotency-Key). " \
                     "No dependencies beyond Ruby's standard library (net/http)."
  spec.authors = ["ClearBG"]
  spec.license = "MIT"
  spec.homepage = "https://clearbg.ai"
  spec.required_ruby_version = ">= 2.7"
  spec.files = Dir["lib/**/*.rb"] + ["README.md", "clearbg.gemspec"]
  spec.require_paths = ["lib"]
  spec.metadata = { "rubygems_mfa_required" => "true" }
end
