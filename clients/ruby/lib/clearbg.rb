# frozen_string_literal: true

# ClearBG: background removal through the ClearBG REST API (or any service with remove.bg's API).
#
#   require "clearbg"
#   client = ClearBG::Client.new(api_key: "...", base_url: "http://127.0.0.1:8080")
#   result = client.remove_background(image_file: "photo.jpg", size: "auto")
#   result.save("photo-no-bg.png")
require "clearbg/version"
require "clearbg/errors"
require "clearbg/types"
require "clearbg/client"
