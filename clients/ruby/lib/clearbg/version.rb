# frozen_string_literal: true

module ClearBG
  VERSION = "0.1.0"
end
