# frozen_string_literal: true

require "json"
require "socket"

# A small scripted HTTP server on 127.0.0.1 for the unit tests: each request is recorded (method,
# path, headers, raw body, parsed multipart form, arrival time) and answered by the next scripted
# reply, or by the last one when the script runs out. A reply is a Hash (status, headers, body),
# :reset (the connection is closed without an answer) or a lambda taking the request.
class FakeServer
  PNG_1X1 = ["89504e470d0a1a0a0000000d4948445200000001000000010806000000" \
             "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a0e3" \
             "d5f20000000049454e44ae426082"].pack("H*")

  SUCCESS_HEADERS = {
    "Content-Type" => "image/png", "X-Width" => "321", "X-Height" => "481", "X-Type" => "person",
    "X-Credits-Charged" => "1", "X-Credits-Remaining" => "49.5", "X-Foreground-Top" => "10",
    "X-Foreground-Left" => "20", "X-Foreground-Width" => "200", "X-Foreground-Height" => "400",
    "X-RateLimit-Limit" => "500", "X-RateLimit-Remaining" => "499", "X-RateLimit-Reset" => "1790000000",
    "X-Request-Id" => "req-ok-1"
  }.freeze

  Request = Struct.new(:method, :path, :headers, :body, :at, keyword_init: true) do
    # {name => value} of a multipart body's text fields, {name => [filename, bytes]} of its files.
    def form
      boundary = headers["content-type"][/boundary=("?)([^";]+)\1/, 2]
      fields = {}
      body.split("--#{boundary}")[1..-2].each do |part|
        head, content = part.sub(/\A\r\n/, "").split("\r\n\r\n", 2)
        name = head[/name="([^"]*)"/, 1]
        filename = head[/filename="([^"]*)"/, 1]
        value = content.chomp("\r\n")
        fields[name] = filename ? [filename, value] : value.force_encoding(Encoding::UTF_8)
      end
      fields
    end
  end

  attr_reader :requests

  def self.ok(extra = {})
    { status: 200, headers: SUCCESS_HEADERS.merge(extra), body: PNG_1X1 }
  end

  ACCOUNT_BODY = '{"data":{"attributes":{"credits":{"total":50,"subscription":45,"payg":5,"enterprise":0},' \
                 '"api":{"free_calls":50,"sizes":"all"}}}}'

  def self.account
    { status: 200, headers: { "Content-Type" => "application/json", "X-Request-Id" => "req-account" }, body: ACCOUNT_BODY }
  end

  def self.error(status, code, title: "Title", detail: "Detail", headers: {})
    { status: status, headers: { "Content-Type" => "application/json", "X-Request-Id" => "req-#{status}" }.merge(headers),
      body: JSON.generate(errors: [{ title: title, code: code, detail: detail }]) }
  end

  def initialize(script = [FakeServer.ok])
    @replies = script.dup
    @requests = []
    @lock = Mutex.new
    @server = TCPServer.new("127.0.0.1", 0)
    @thread = Thread.new { serve }
  end

  def url
    "http://127.0.0.1:#{@server.addr[1]}"
  end

  # Replaces what the next requests get.
  def script(replies)
    @lock.synchronize { @replies = replies.dup }
  end

  def close
    @thread.kill
    @server.close
  end

  private

  def serve
    loop do
      socket = @server.accept
      Thread.new(socket) { |client| handle(client) }
    end
  end

  def handle(socket)
    line = socket.gets or return
    method, path = line.split(" ")
    headers = {}
    while (header = socket.gets) && header != "\r\n"
      name, value = header.split(":", 2)
      headers[name.downcase] = value.strip
    end
    body = read_body(socket, headers)
    request = Request.new(method: method, path: path, headers: headers, body: body, at: Process.clock_gettime(Process::CLOCK_MONOTONIC))
    reply = @lock.synchronize do
      @requests << request
      @replies.length > 1 ? @replies.shift : @replies.first
    end
    reply = reply.call(request) if reply.respond_to?(:call)
    return if reply == :reset

    sleep(reply[:delay]) if reply[:delay]
    payload = reply[:body].to_s.b
    head = "HTTP/1.1 #{reply[:status]} #{reply[:reason] || 'Reason'}\r\n"
    reply[:headers].each { |name, value| head += "#{name}: #{value}\r\n" }
    head += "Content-Length: #{payload.bytesize}\r\nConnection: close\r\n\r\n"
    socket.write(head.b + payload)
  rescue IOError, SystemCallError
    nil
  ensure
    socket.close unless socket.closed?
  end

  def read_body(socket, headers)
    if headers["transfer-encoding"].to_s.include?("chunked")
      body = +""
      loop do
        size = socket.gets.to_i(16)
        body << socket.read(size) if size.positive?
        socket.gets
        return body.b if size.zero?
      end
    end
    socket.read(headers.fetch("content-length", "0").to_i).to_s.b
  end
end
