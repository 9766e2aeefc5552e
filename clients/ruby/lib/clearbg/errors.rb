# frozen_string_literal: true

require "json"

module ClearBG
  # Every failure the SDK raises (also: no API key configured).
  class ClearBGError < StandardError; end
  # Ruby's usual name for a library's base error.
  Error = ClearBGError

  # The server answered with an error status.
  #
  # status: the HTTP status (402); code: the machine-readable reason from the body
  # (`insufficient_credits`; nil when the body had none, e.g. a proxy's page); title, detail: the
  # body's texts; request_id: the gateway's X-Request-Id (quote it when asking for help);
  # retry_after: seconds the server asked to wait (Retry-After), when it said; headers
  # (lower-case names); body: the parsed JSON body, or the text when it was not JSON.
  class APIError < ClearBGError
    attr_reader :status, :code, :title, :detail, :request_id, :retry_after, :headers, :body

    def initialize(status, code:, title:, detail:, request_id: nil, retry_after: nil, headers: {}, body: nil)
      @status = status
      @code = code
      @title = title
      @detail = detail
      @request_id = request_id
      @retry_after = retry_after
      @headers = headers
      @body = body
      suffix = request_id ? " (request id #{request_id})" : ""
      super("#{status} #{code || title}: #{detail}#{suffix}")
    end

    # The error for an answer: the class for its status, the fields from the body
    # {"errors":[{"title","code","detail"}]} when it has that shape.
    def self.from_response(status, reason, headers, raw, retry_after)
      text = raw.to_s.dup.force_encoding(Encoding::UTF_8)
      text = text.scrub unless text.valid_encoding?
      body = begin
        JSON.parse(text)
      rescue JSON::ParserError
        text # not JSON: a proxy's or load balancer's page, reported with its status
      end
      entries = body.is_a?(Hash) ? body["errors"] : nil
      entry = entries.is_a?(Array) && entries.first.is_a?(Hash) ? entries.first : nil
      title = reason.to_s.empty? ? "HTTP #{status}" : reason.to_s
      if entry && entry["code"].is_a?(String)
        code = entry["code"]
        title = entry["title"].to_s unless entry["title"].to_s.empty?
        detail = entry["detail"].to_s.empty? ? title : entry["detail"].to_s
      else
        code = nil
        detail = readable(status, title, text)
      end
      ClearBG.error_class(status).new(
        status, code: code, title: title, detail: detail, request_id: headers["x-request-id"],
                retry_after: retry_after, headers: headers, body: body
      )
    end

    def self.readable(status, title, text)
      snippet = text.gsub(/<[^>]*>/, " ").gsub(/\s+/, " ").strip[0, 200]
      "HTTP #{status} #{title} without a ClearBG error body#{snippet.empty? ? '' : ": #{snippet}"}"
    end
    private_class_method :readable
  end

  # 400: a parameter or the image; `code` names which (invalid_size, invalid_file_type, ...).
  class BadRequestError < APIError; end
  # 401: missing or invalid API key.
  class AuthenticationError < APIError; end
  # 402: no credits (insufficient_credits) or no free previews left (insufficient_free_calls).
  class InsufficientCreditsError < APIError; end
  # 403: e.g. too many free previews from this IP address (ip_rate_limit_exceeded).
  class PermissionDeniedError < APIError; end
  # 409: idempotency_in_flight (retried), idempotency_result_evicted.
  class ConflictError < APIError; end
  # 422: idempotency_key_reused (the key was sent before with other parameters).
  class UnprocessableEntityError < APIError; end
  # 429: the key's megapixel-images per minute; `retry_after` says when to try again.
  class RateLimitError < APIError; end
  # 500 and other 5xx answers (503 aside): nothing was charged.
  class InternalServerError < APIError; end
  # 503: overloaded or shutting down; `retry_after` says when to try again.
  class ServiceUnavailableError < APIError; end

  # No answer came: the connection failed, was reset or closed early.
  class APIConnectionError < ClearBGError; end
  # No answer within the client's timeout.
  class APITimeoutError < APIConnectionError; end

  ERROR_CLASSES = {
    400 => BadRequestError,
    401 => AuthenticationError,
    402 => InsufficientCreditsError,
    403 => PermissionDeniedError,
    409 => ConflictError,
    422 => UnprocessableEntityError,
    429 => RateLimitError,
    503 => ServiceUnavailableError,
  }.freeze

  def self.error_class(status)
    ERROR_CLASSES.fetch(status) { status >= 500 ? InternalServerError : APIError }
  end
end
