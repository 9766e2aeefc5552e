# frozen_string_literal: true

require "test_helper"

# The server's error answers as one class per status, with what the body and headers said.
class ErrorsTest < ClearBGTest
  CASES = {
    400 => [ClearBG::BadRequestError, "invalid_size"],
    401 => [ClearBG::AuthenticationError, "invalid_api_key"],
    402 => [ClearBG::InsufficientCreditsError, "insufficient_credits"],
    403 => [ClearBG::PermissionDeniedError, "ip_rate_limit_exceeded"],
    404 => [ClearBG::APIError, "not_found"],
    409 => [ClearBG::ConflictError, "idempotency_result_evicted"],
    422 => [ClearBG::UnprocessableEntityError, "idempotency_key_reused"],
  }.freeze

  def test_each_status_is_its_class_with_code_title_detail_and_request_id_and_is_not_retried
    CASES.each do |status, (klass, code)|
      server = fake_server([FakeServer.error(status, code, title: "A title", detail: "What went wrong")])
      error = assert_raises(klass) { client(server).remove_background(image_url: "https://example.com/a.jpg") }
      assert_equal klass, error.class, status
      assert_kind_of ClearBG::APIError, error
      assert_kind_of ClearBG::ClearBGError, error
      assert_equal [status, code, "A title", "What went wrong", "req-#{status}"],
                   [error.status, error.code, error.title, error.detail, error.request_id]
      assert_equal "#{status} #{code}: What went wrong (request id req-#{status})", error.message
      assert_equal({ "errors" => [{ "title" => "A title", "code" => code, "detail" => "What went wrong" }] }, error.body)
      assert_equal "req-#{status}", error.headers["x-request-id"]
      assert_equal 1, server.requests.length, "#{status} is not retried"
    end
  end

  def test_server_errors_are_internal_server_errors_and_503_service_unavailable
    { 500 => ClearBG::InternalServerError, 502 => ClearBG::InternalServerError, 504 => ClearBG::InternalServerError,
      507 => ClearBG::InternalServerError, 503 => ClearBG::ServiceUnavailableError }.each do |status, klass|
      server = fake_server([FakeServer.error(status, "boom", headers: { "Retry-After" => "0" })])
      error = assert_raises(klass) { client(server, max_retries: 0).account }
      assert_equal [status, 0.0], [error.status, error.retry_after]
    end
  end

  def test_a_proxy_page_still_gives_the_status_and_a_readable_detail
    page = "<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
    server = fake_server([{ status: 502, reason: "Bad Gateway", headers: { "Content-Type" => "text/html" }, body: page }])
    error = assert_raises(ClearBG::InternalServerError) { client(server, max_retries: 0).account }
    assert_nil error.code
    assert_equal "Bad Gateway", error.title
    assert_equal "HTTP 502 Bad Gateway without a ClearBG error body: 502 Bad Gateway nginx", error.detail
    assert_equal page, error.body
  end

  def test_no_answer_is_a_connection_error
    port = TCPServer.open("127.0.0.1", 0) { |socket| socket.addr[1] }
    api = ClearBG::Client.new(api_key: "k", base_url: "http://127.0.0.1:#{port}", max_retries: 0)
    error = assert_raises(ClearBG::APIConnectionError) { api.account }
    assert_includes error.message, "127.0.0.1:#{port}"
    refute_kind_of ClearBG::APIError, error
  end

  def test_no_answer_within_the_timeout_is_a_timeout_error
    server = fake_server([FakeServer.ok.merge(delay: 3)])
    error = assert_raises(ClearBG::APITimeoutError) { client(server, timeout: 0.3, max_retries: 0).account }
    assert_kind_of ClearBG::APIConnectionError, error
  end
end
