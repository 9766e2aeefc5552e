# frozen_string_literal: true

# End to end: the installed gem against the real service (Envoy + gRPC server + model), started by
# tests/clients/rest_sdks/ (pytest), which runs this file where the gem is installed and sets:
#   CLEARBG_BASE_URL, CLEARBG_API_KEY  the stack (through a recording proxy) and an account with credits
#   CLEARBG_E2E_POOR_KEY               an account with nothing to pay with
#   CLEARBG_E2E_LIMITED_KEY            an account limited to a few images a minute
#   CLEARBG_E2E_PHOTO                  a real photo (read in place)
#   CLEARBG_E2E_IMAGE_URL              the same photo on a local HTTP server the stack may fetch from
#   CLEARBG_E2E_OUT                    where each answer is saved, with the fields the SDK read from it
# pytest then decodes the pictures and compares every field with the headers the proxy saw.
require "base64"
require "json"
require "clearbg"

%w[CLEARBG_BASE_URL CLEARBG_API_KEY CLEARBG_E2E_POOR_KEY CLEARBG_E2E_LIMITED_KEY CLEARBG_E2E_PHOTO
   CLEARBG_E2E_IMAGE_URL CLEARBG_E2E_OUT].each { |name| abort("#{name} is not set") if ENV[name].to_s.empty? }
OUT = ENV["CLEARBG_E2E_OUT"]
PHOTO = ENV["CLEARBG_E2E_PHOTO"]

def write(name, record)
  File.write(File.join(OUT, "#{name}.json"), JSON.generate(record))
end

def saved(name, result)
  result.save(File.join(OUT, "#{name}.bin"))
  write(name, {
          width: result.width, height: result.height, type: result.type, content_type: result.content_type,
          credits_charged: result.credits_charged.to_s("F"), credits_remaining: result.credits_remaining.to_s("F"),
          foreground: result.foreground.to_h, rate_limit: result.rate_limit.to_h, request_id: result.request_id,
          replayed: result.replayed?, idempotency_key: result.idempotency_key
        })
  puts "#{name}: #{result.inspect}"
end

def failed(name)
  yield
  abort("#{name}: no error was raised")
rescue ClearBG::APIError => e
  write(name, { class: e.class.name.split("::").last, status: e.status, code: e.code, title: e.title,
                detail: e.detail, request_id: e.request_id })
  puts "#{name}: #{e.class}: #{e.message}"
  e
end

client = ClearBG::Client.new # CLEARBG_API_KEY and CLEARBG_BASE_URL
saved("file", client.remove_background(image_file: PHOTO, size: "small"))
saved("base64", client.remove_background(image_file_b64: Base64.strict_encode64(File.binread(PHOTO)), size: "small"))
saved("url", client.remove_background(image_url: ENV["CLEARBG_E2E_IMAGE_URL"], size: "small"))
saved("jpg", client.remove_background(image_file: PHOTO, size: "small", format: "jpg", bg_color: "#81d4fa"))
saved("zip", client.remove_background(image_file: PHOTO, size: "small", format: "zip"))
account = client.account
write("account", {
        credits: account.credits.to_h.transform_values { |value| value.to_s("F") }, free_calls: account.free_calls,
        sizes: account.sizes, request_id: account.request_id
      })

failed("401") { ClearBG::Client.new(api_key: "not-a-key").remove_background(image_file: PHOTO, size: "small") }
failed("402") { ClearBG::Client.new(api_key: ENV["CLEARBG_E2E_POOR_KEY"]).remove_background(image_file: PHOTO, size: "small") }

# 429: spend the limited key's allowance with calls the server refuses (each costs one), then a real
# call: refused with 429 and Retry-After, retried by the SDK after that wait, and done.
limited = ClearBG::Client.new(api_key: ENV["CLEARBG_E2E_LIMITED_KEY"], max_retries: 3)
refused = 0
loop do
  error = failed("400") { limited.remove_background(image_file: PHOTO, size: "huge") }
  refused += 1
  break if error.headers["x-ratelimit-remaining"] == "0" || refused >= 100
end
write("429-spent", { refused: refused })
saved("429", limited.remove_background(image_file: PHOTO, size: "small"))
