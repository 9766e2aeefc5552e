# frozen_string_literal: true

require "bigdecimal"

module ClearBG
  # Where the subject is in the result, in output pixels (X-Foreground-*).
  Foreground = Struct.new(:top, :left, :width, :height, keyword_init: true)

  # The key's megapixel-images per minute (X-RateLimit-*); reset in Unix seconds.
  RateLimit = Struct.new(:limit, :remaining, :reset, keyword_init: true)

  # The account's balances, BigDecimals (GET /v1.0/account).
  Credits = Struct.new(:total, :subscription, :payg, :enterprise, keyword_init: true)

  # GET /v1.0/account: the credits, this month's free preview calls left, the sizes allowed.
  Account = Struct.new(:credits, :free_calls, :sizes, :request_id, keyword_init: true)

  # The cut-out: `data` is the file the server sent (PNG, JPG, WebP or ZIP, as `content_type`
  # says), and every figure the answer's headers gave.
  class Result
    # data: the picture's bytes (binary String); width, height: X-Width, X-Height;
    # type: X-Type (nil with type_level "none"); credits_charged, credits_remaining: BigDecimals;
    # foreground: a Foreground (nil when the server sent no X-Foreground-*); rate_limit: a
    # RateLimit; content_type; request_id: X-Request-Id; replayed: true when the server answered
    # from an earlier call with the same Idempotency-Key (charged once, then); idempotency_key:
    # the key this call was sent with; headers: every answer header, lower-case names.
    attr_reader :data, :content_type, :width, :height, :type, :credits_charged, :credits_remaining,
                :foreground, :rate_limit, :request_id, :replayed, :idempotency_key, :headers
    alias replayed? replayed

    def initialize(data, headers, idempotency_key)
      @data = data
      @headers = headers
      @idempotency_key = idempotency_key
      @content_type = headers.fetch("content-type", "application/octet-stream")
      @width = Result.int(headers["x-width"])
      @height = Result.int(headers["x-height"])
      @type = headers["x-type"]
      @credits_charged = Result.decimal(headers["x-credits-charged"])
      @credits_remaining = Result.decimal(headers["x-credits-remaining"])
      @foreground = if headers.key?("x-foreground-top")
                      Foreground.new(**%w[top left width height].to_h { |side| [side.to_sym, Result.int(headers["x-foreground-#{side}"])] })
                    end
      @rate_limit = if headers.key?("x-ratelimit-limit")
                      RateLimit.new(limit: Result.int(headers["x-ratelimit-limit"]),
                                    remaining: Result.int(headers["x-ratelimit-remaining"]),
                                    reset: Result.int(headers["x-ratelimit-reset"]))
                    end
      @request_id = headers["x-request-id"]
      @replayed = headers.fetch("idempotent-replayed", "").casecmp("true").zero?
    end

    # Writes the picture to `path` (its folder must exist) and returns the path.
    def save(path)
      File.binwrite(path, @data)
      path
    end

    def inspect
      "#<ClearBG::Result #{@content_type}, #{@data.bytesize} bytes, #{@width}x#{@height}, type=#{@type.inspect}, " \
        "credits_charged=#{@credits_charged.to_s('F')}, credits_remaining=#{@credits_remaining.to_s('F')}, " \
        "replayed=#{@replayed}, request_id=#{@request_id.inspect}>"
    end

    # A header's whole number; nil when absent or not a number.
    def self.int(value)
      Integer(value, 10)
    rescue ArgumentError, TypeError
      nil
    end

    # A header's decimal; 0 when absent or not a number (as the Python SDK reads it).
    def self.decimal(value)
      BigDecimal(value.to_s)
    rescue ArgumentError, TypeError
      BigDecimal(0)
    end
  end
end
