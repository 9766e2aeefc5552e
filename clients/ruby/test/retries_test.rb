# frozen_string_literal: true

require "test_helper"

# Which answers are retried, how long the client waits, and that every attempt of one call
# carries the same Idempotency-Key.
class RetriesTest < ClearBGTest
  def test_a_429_is_retried_after_its_retry_after_with_the_same_idempotency_key
    server = fake_server([FakeServer.error(429, "rate_limit_exceeded", headers: { "Retry-After" => "1" }), FakeServer.ok])
    result = client(server).remove_background(image_file: StringIO.new("the photo"), size: "small")
    first, second = server.requests
    assert_operator second.at - first.at, :>=, 1.0
    assert_equal first.headers["idempotency-key"], second.headers["idempotency-key"]
    assert_equal result.idempotency_key, second.headers["idempotency-key"]
    assert_equal ["image_file", "the photo"], second.form["image_file"], "the file is sent whole again"
    assert_equal "small", second.form["size"]
  end

  def test_retry_after_as_an_http_date_and_a_503
    later = (Time.now + 2).httpdate
    server = fake_server([FakeServer.error(503, "overloaded", headers: { "Retry-After" => later }), FakeServer.ok])
    client(server).remove_background(image_url: "https://example.com/a.jpg")
    assert_equal 2, server.requests.length
    assert_operator server.requests[1].at - server.requests[0].at, :>=, 0.9
    assert_in_delta 30, ClearBG::Client.parse_retry_after((Time.now + 30).httpdate), 1.1
    assert_equal 0.0, ClearBG::Client.parse_retry_after((Time.now - 30).httpdate)
    assert_equal 2.5, ClearBG::Client.parse_retry_after(" 2.5 ")
    assert_nil ClearBG::Client.parse_retry_after("soon")
    assert_nil ClearBG::Client.parse_retry_after(nil)
  end

  def test_retried_statuses_and_the_409_that_is
    [408, 500, 502, 504].each do |status|
      server = fake_server([FakeServer.error(status, "x", headers: { "Retry-After" => "0" }), FakeServer.account])
      client(server).account
      assert_equal 2, server.requests.length, status
    end
    server = fake_server([FakeServer.error(409, "idempotency_in_flight", headers: { "Retry-After" => "0" }), FakeServer.ok])
    client(server).remove_background(image_url: "https://example.com/a.jpg")
    assert_equal 2, server.requests.length
    server = fake_server([FakeServer.error(409, "idempotency_result_evicted")])
    assert_raises(ClearBG::ConflictError) { client(server).remove_background(image_url: "https://example.com/a.jpg") }
    assert_equal 1, server.requests.length
  end

  def test_without_retry_after_the_wait_is_an_exponential_backoff
    server = fake_server([FakeServer.error(500, "internal"), FakeServer.error(500, "internal"), FakeServer.account])
    client(server).account
    times = server.requests.map(&:at)
    assert_operator times[1] - times[0], :>=, 0.375 # 0.5 s less up to a quarter
    assert_operator times[2] - times[1], :>=, 0.75 # 1 s less up to a quarter
    20.times do
      assert_operator ClearBG::Client.backoff(0), :<=, 0.5
      assert_operator ClearBG::Client.backoff(10), :<=, 8.0
      assert_operator ClearBG::Client.backoff(10), :>=, 6.0
    end
  end

  def test_retries_stop_after_max_retries_and_raise_the_last_answer
    server = fake_server([FakeServer.error(429, "rate_limit_exceeded", headers: { "Retry-After" => "0" })])
    error = assert_raises(ClearBG::RateLimitError) { client(server, max_retries: 3).account }
    assert_equal 4, server.requests.length
    assert_equal 0.0, error.retry_after
    server = fake_server([FakeServer.error(429, "rate_limit_exceeded", headers: { "Retry-After" => "0" })])
    assert_raises(ClearBG::RateLimitError) { client(server).remove_background(image_url: "u", max_retries: 0) }
    assert_equal 1, server.requests.length
  end

  def test_a_connection_reset_is_retried_with_the_same_key
    server = fake_server([:reset, FakeServer.ok])
    client(server).remove_background(image_file: StringIO.new("bytes"))
    assert_equal 2, server.requests.length
    assert_equal server.requests[0].headers["idempotency-key"], server.requests[1].headers["idempotency-key"]
    server = fake_server([:reset])
    assert_raises(ClearBG::APIConnectionError) { client(server, max_retries: 1).account }
    assert_equal 2, server.requests.length
  end

  def test_your_own_idempotency_key_is_sent_on_every_attempt
    server = fake_server([FakeServer.error(503, "overloaded", headers: { "Retry-After" => "0" }), FakeServer.ok])
    result = client(server).remove_background(image_url: "u", idempotency_key: "order-1042-photo-3")
    assert_equal ["order-1042-photo-3"] * 2, server.requests.map { |r| r.headers["idempotency-key"] }
    assert_equal "order-1042-photo-3", result.idempotency_key
  end

  def test_a_stream_that_cannot_be_rewound_is_sent_once
    server = fake_server([FakeServer.error(503, "overloaded", headers: { "Retry-After" => "0" }), FakeServer.ok])
    reader, writer = IO.pipe
    writer.write("piped photo")
    writer.close
    assert_raises(ClearBG::ServiceUnavailableError) { client(server).remove_background(image_file: reader) }
    assert_equal 1, server.requests.length
    assert_equal "piped photo", server.requests.first.form["image_file"][1]
  end

  def test_a_retry_after_pauses_every_call_of_the_client
    server = fake_server([FakeServer.error(429, "rate_limit_exceeded", headers: { "Retry-After" => "1" }), FakeServer.account])
    api = client(server)
    first = Thread.new { api.account }
    sleep 0.05 until server.requests.length == 1 || !first.alive?
    sleep 0.2 # the 429 has been answered and the pause set
    api.account
    first.join
    assert_equal 3, server.requests.length
    refused_at = server.requests[0].at
    assert(server.requests[1..].all? { |r| r.at - refused_at >= 0.95 }, "nothing was sent during the Retry-After")
  end

  def test_retries_are_logged
    lines = []
    logger = Object.new
    logger.define_singleton_method(:info) { |line| lines << line }
    server = fake_server([FakeServer.error(503, "overloaded", headers: { "Retry-After" => "0" }), FakeServer.ok])
    client(server, logger: logger).remove_background(image_url: "u", idempotency_key: "k-1")
    assert_equal ["clearbg: POST /v1.0/removebg [k-1]: retrying in 0.000 s after ServiceUnavailableError"], lines
  end
end
