# frozen_string_literal: true

require "json"
require "net/http"
require "openssl"
require "securerandom"
require "time"
require "uri"

module ClearBG
  # The ClearBG REST API (POST /v1.0/removebg, GET /v1.0/account).
  #
  # One client may serve many threads; make one and share it.
  class Client
    DEFAULT_BASE_URL = "https://api.clearbg.ai"
    # A 22 MB upload over a slow link, plus a wait in the server's queue; the gateway allows 300 s.
    DEFAULT_TIMEOUT = 300
    DEFAULT_MAX_RETRIES = 2
    REMOVEBG_PATH = "/v1.0/removebg"
    ACCOUNT_PATH = "/v1.0/account"
    USER_AGENT = "clearbg-ruby/#{VERSION}"
    RETRY_STATUSES = [408, 429, 500, 502, 503, 504].freeze
    BACKOFF_BASE = 0.5
    BACKOFF_MAX = 8.0

    # The remove_background keywords sent as form fields, in this order (files apart).
    TEXT_OPTIONS = %i[
      image_url image_file_b64 size type type_level format bg_color bg_image_url channels crop
      crop_margin scale position roi add_shadow shadow_type shadow_opacity semitransparency
    ].freeze
    FILE_OPTIONS = %i[image_file bg_image_file].freeze

    # Errors of the socket, the TLS layer and Net::HTTP that mean "no answer came".
    CONNECTION_ERRORS = [
      SocketError, SystemCallError, IOError, EOFError, OpenSSL::SSL::SSLError, Net::HTTPBadResponse,
      Net::HTTPHeaderSyntaxError
    ].freeze
    TIMEOUT_ERRORS = [Net::OpenTimeout, Net::ReadTimeout, Net::WriteTimeout].freeze

    attr_reader :base_url, :timeout, :max_retries

    # api_key: else ENV["CLEARBG_API_KEY"] (none at all: a ClearBGError at once);
    # base_url: else ENV["CLEARBG_BASE_URL"], else https://api.clearbg.ai;
    # timeout: seconds for each step of one attempt (connect, send, each read; default 300);
    # max_retries: retries of a failed call (default 2, see #remove_background);
    # logger: anything with #info (a Logger), told about every retry.
    def initialize(api_key: nil, base_url: nil, timeout: nil, max_retries: nil, logger: nil)
      key = api_key.nil? ? ENV["CLEARBG_API_KEY"] : api_key
      if key.nil? || key.strip.empty?
        raise ClearBGError, "No API key: pass ClearBG::Client.new(api_key: ...) or set CLEARBG_API_KEY " \
                            "(keys come from your ClearBG dashboard, or `clearbg-admin create-key` on your own server)."
      end
      @api_key = key.strip
      url = base_url.to_s.empty? ? (ENV["CLEARBG_BASE_URL"].to_s.empty? ? DEFAULT_BASE_URL : ENV["CLEARBG_BASE_URL"]) : base_url
      @base_url = url.strip.sub(%r{/+\z}, "")
      raise ClearBGError, "base_url must start with http:// or https://, got #{@base_url.inspect}" unless @base_url =~ %r{\Ahttps?://}i

      @timeout = timeout.nil? ? DEFAULT_TIMEOUT : Float(timeout)
      raise ArgumentError, "timeout must be a positive number of seconds, got #{timeout.inspect}" unless @timeout.positive?

      @max_retries = max_retries.nil? ? DEFAULT_MAX_RETRIES : Integer(max_retries)
      raise ArgumentError, "max_retries must be 0 or more, got #{max_retries.inspect}" if @max_retries.negative?

      @logger = logger
      # One pause shared by every call of this client: a 429 or 503 with Retry-After holds them all.
      @gate_lock = Mutex.new
      @gate_open_at = 0.0
    end

    # POST /v1.0/removebg: the photo with its background removed, and what the server said.
    #
    # One source: image_file (a path, or an IO such as File or StringIO, read again from its
    # start position on a retry), image_url, or image_file_b64. The other keywords are the API's
    # fields with its values; nil (the default) leaves a field out. extra_fields: further form
    # fields, sent as given. idempotency_key: your own key for this call (default: a random
    # UUID, the same on its retries). timeout, max_retries: for this call only.
    #
    # Returns a ClearBG::Result. Raises an APIError subclass for an error answer,
    # APIConnectionError / APITimeoutError when none came.
    def remove_background(image_file: nil, image_url: nil, image_file_b64: nil, size: nil, type: nil,
                          type_level: nil, format: nil, bg_color: nil, bg_image_url: nil, bg_image_file: nil,
                          channels: nil, crop: nil, crop_margin: nil, scale: nil, position: nil, roi: nil,
                          add_shadow: nil, shadow_type: nil, shadow_opacity: nil, semitransparency: nil,
                          extra_fields: nil, idempotency_key: nil, timeout: nil, max_retries: nil)
      options = {
        image_url: image_url, image_file_b64: image_file_b64, size: size, type: type, type_level: type_level,
        format: format, bg_color: bg_color, bg_image_url: bg_image_url, channels: channels, crop: crop,
        crop_margin: crop_margin, scale: scale, position: position, roi: roi, add_shadow: add_shadow,
        shadow_type: shadow_type, shadow_opacity: shadow_opacity, semitransparency: semitransparency
      }
      fields = TEXT_OPTIONS.reject { |name| options[name].nil? }.map { |name| [name.to_s, form_value(options[name])] }
      (extra_fields || {}).each { |name, value| fields << [name.to_s, form_value(value)] unless value.nil? }
      files = { "image_file" => image_file, "bg_image_file" => bg_image_file }.reject { |_, v| v.nil? }
                                                                          .map { |field, value| Upload.new(field, value) }
      key = idempotency_key || SecureRandom.uuid
      rewindable = files.all?(&:rewindable?)
      response = with_retries("POST #{REMOVEBG_PATH} [#{key}]", max_retries, rewindable) do
        request = Net::HTTP::Post.new(uri(REMOVEBG_PATH), headers.merge("Idempotency-Key" => key))
        opened = files.map(&:open)
        request.set_form(fields + files.zip(opened).map { |upload, io| upload.part(io) }, "multipart/form-data")
        begin
          send_request(request, timeout)
        ensure
          files.zip(opened).each { |upload, io| upload.close(io) }
        end
      end
      Result.new(response.body.to_s.b, lower_headers(response), key)
    end

    # GET /v1.0/account: credits (total, subscription, payg, enterprise) and free calls.
    def account(timeout: nil, max_retries: nil)
      response = with_retries("GET #{ACCOUNT_PATH}", max_retries, true) do
        send_request(Net::HTTP::Get.new(uri(ACCOUNT_PATH), headers), timeout)
      end
      account_of(response)
    end

    # Seconds from a Retry-After value (seconds, or an HTTP date); nil when absent or unreadable.
    def self.parse_retry_after(value, now = Time.now)
      return nil if value.nil? || value.strip.empty?

      text = value.strip
      return [Float(text), 0.0].max if text =~ /\A\d+(\.\d+)?\z/

      [Time.httpdate(text) - now, 0.0].max
    rescue ArgumentError
      nil
    end

    # The wait before retry number attempt + 1 when the server named none: 0.5 s * 2^n, at most
    # 8 s, less up to a quarter at random so clients that failed together spread out.
    def self.backoff(attempt)
      [BACKOFF_MAX, BACKOFF_BASE * (2**attempt)].min * (1 - (rand * 0.25))
    end

    def self.retryable?(error)
      return true if error.is_a?(APIConnectionError)
      return false unless error.is_a?(APIError)

      RETRY_STATUSES.include?(error.status) || (error.status == 409 && error.code == "idempotency_in_flight")
    end

    private

    def headers
      { "X-Api-Key" => @api_key, "User-Agent" => USER_AGENT }
    end

    def uri(path)
      URI(@base_url + path)
    end

    # A keyword's value as the form field carries it (true/false, numbers as written).
    def form_value(value)
      value.to_s
    end

    def send_request(request, timeout)
      seconds = timeout.nil? ? @timeout : Float(timeout)
      target = request.uri
      http = Net::HTTP.new(target.host, target.port)
      http.use_ssl = target.scheme == "https"
      http.open_timeout = http.read_timeout = http.write_timeout = seconds
      http.max_retries = 0 # Net::HTTP's own silent retry of a GET: the client's rules decide alone
      http.start { http.request(request) }
    rescue *TIMEOUT_ERRORS => e
      raise APITimeoutError, "No answer within the timeout (#{seconds} s, #{e.class}): #{target}"
    rescue *CONNECTION_ERRORS => e
      raise APIConnectionError, "Connection error (#{e.class}: #{e.message}): #{target}"
    end

    def with_retries(label, max_retries, rewindable)
      retries = max_retries.nil? ? @max_retries : Integer(max_retries)
      attempt = 0
      loop do
        wait_for_gate
        begin
          response = yield
          return response if response.is_a?(Net::HTTPSuccess)

          error = api_error(response)
        rescue APIConnectionError => e
          error = e
        end
        raise error if attempt >= retries || !Client.retryable?(error)

        unless rewindable
          log("#{label}: not retrying (#{error.message}): the upload was a stream that cannot be rewound")
          raise error
        end
        retry_after = error.respond_to?(:retry_after) ? error.retry_after : nil
        delay = retry_after.nil? ? Client.backoff(attempt) : retry_after
        log(format("%s: retrying in %.3f s after %s", label, delay, error.class.name.split("::").last))
        if retry_after && [429, 503].include?(error.status)
          hold_gate(delay) # every call of this client waits: the limit is the key's, not the call's
        else
          sleep(delay)
        end
        attempt += 1
      end
    end

    def wait_for_gate
      loop do
        left = @gate_lock.synchronize { @gate_open_at - monotonic }
        return if left <= 0

        sleep(left)
      end
    end

    def hold_gate(seconds)
      @gate_lock.synchronize { @gate_open_at = [@gate_open_at, monotonic + seconds].max }
    end

    def monotonic
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def log(line)
      @logger&.info("clearbg: #{line}")
    end

    def lower_headers(response)
      response.each_header.to_h { |name, value| [name.downcase, value] }
    end

    def api_error(response)
      found = lower_headers(response)
      APIError.from_response(response.code.to_i, response.message, found, response.body,
                             Client.parse_retry_after(found["retry-after"]))
    end

    def account_of(response)
      attributes = JSON.parse(response.body.to_s).fetch("data").fetch("attributes")
      credits = attributes.fetch("credits")
      api = attributes.fetch("api", {})
      Account.new(
        credits: Credits.new(**%w[total subscription payg enterprise].to_h { |name| [name.to_sym, BigDecimal(credits.fetch(name, 0).to_s)] }),
        free_calls: Integer(api.fetch("free_calls", 0)),
        sizes: api.fetch("sizes", "").to_s,
        request_id: response["x-request-id"]
      )
    rescue JSON::ParserError, KeyError, TypeError, ArgumentError, NoMethodError
      raise ClearBGError, "GET #{ACCOUNT_PATH} answered a body of an unexpected shape: #{response.body.to_s[0, 200].inspect}"
    end

    # One file to upload: a path (opened for each attempt) or an IO (read again from the
    # position it had when the call began, when it can seek).
    class Upload
      attr_reader :field

      def initialize(field, value)
        @field = field
        if value.is_a?(String) || value.respond_to?(:to_path)
          @path = value.respond_to?(:to_path) ? value.to_path : value
          if @path.bytesize > 4096 || @path.include?("\0")
            raise ArgumentError, "#{field}: a String is a path, and this one is not (to send bytes, pass StringIO.new(bytes), " \
                                 "or image_file_b64: Base64.strict_encode64(bytes))"
          end
          raise ArgumentError, "#{field}: no such file: #{@path}" unless File.file?(@path)

          @filename = File.basename(@path)
        elsif value.respond_to?(:read)
          @io = value
          name = value.respond_to?(:path) ? value.path : nil
          @filename = name.is_a?(String) && !name.empty? ? File.basename(name) : field
          @start = begin
            value.pos
          rescue StandardError
            nil
          end
        else
          raise TypeError, "#{field} must be a path or an IO opened for reading (File, StringIO), not #{value.class}"
        end
      end

      def rewindable?
        @io.nil? || !@start.nil?
      end

      def open
        return File.open(@path, "rb") if @path

        @io.seek(@start) unless @start.nil?
        @io
      end

      def close(io)
        io.close if @path && io
      end

      def part(io)
        [@field, io, { filename: @filename, content_type: "application/octet-stream" }]
      end
    end
    private_constant :Upload
  end
end
