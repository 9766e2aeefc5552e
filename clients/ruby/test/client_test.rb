# frozen_string_literal: true

require "test_helper"

# The request a call sends and the result it makes of the answer.
class ClientTest < ClearBGTest
  JPEGISH = ([0xFF, 0xD8, 0xFF] + " jpeg bytes ".bytes + [0, 1]).pack("C*")
  UUID4 = /\A\h{8}-\h{4}-4\h{3}-[89ab]\h{3}-\h{12}\z/.freeze

  def test_the_result_is_every_figure_of_the_answer
    server = fake_server([FakeServer.ok("Idempotent-Replayed" => "true")])
    result = client(server).remove_background(image_file: StringIO.new("photo-bytes"), size: "small")
    assert_equal FakeServer::PNG_1X1, result.data
    assert_equal Encoding::BINARY, result.data.encoding
    assert_equal [321, 481, "person", "image/png"], [result.width, result.height, result.type, result.content_type]
    assert_equal BigDecimal("1"), result.credits_charged
    assert_equal BigDecimal("49.5"), result.credits_remaining
    assert_equal ClearBG::Foreground.new(top: 10, left: 20, width: 200, height: 400), result.foreground
    assert_equal ClearBG::RateLimit.new(limit: 500, remaining: 499, reset: 1_790_000_000), result.rate_limit
    assert_equal "req-ok-1", result.request_id
    assert result.replayed?
    assert_equal "321", result.headers["x-width"]
    assert_equal server.requests.first.headers["idempotency-key"], result.idempotency_key
  end

  def test_absent_headers_are_nil_and_a_type_level_none_answer_has_no_type
    server = fake_server([{ status: 200, headers: { "Content-Type" => "image/png" }, body: "x" }])
    result = client(server).remove_background(image_url: "https://example.com/a.jpg")
    assert_nil result.type
    assert_nil result.width
    assert_nil result.foreground
    assert_nil result.rate_limit
    assert_equal BigDecimal(0), result.credits_charged
    refute result.replayed?
  end

  def test_the_request_carries_the_key_the_user_agent_and_a_fresh_uuid_per_call
    server = fake_server
    api = client(server)
    2.times { api.remove_background(image_url: "https://example.com/a.jpg") }
    first, second = server.requests
    assert_equal ["POST", "/v1.0/removebg"], [first.method, first.path]
    assert_equal "test-key", first.headers["x-api-key"]
    assert_equal "clearbg-ruby/#{ClearBG::VERSION}", first.headers["user-agent"]
    assert_match UUID4, first.headers["idempotency-key"]
    refute_equal first.headers["idempotency-key"], second.headers["idempotency-key"]
    assert_match %r{\Amultipart/form-data; boundary=}, first.headers["content-type"]
  end

  def test_every_option_is_sent_under_its_rest_name
    server = fake_server
    Dir.mktmpdir do |dir|
      background = File.join(dir, "bg.png")
      File.binwrite(background, "background-bytes")
      client(server).remove_background(
        image_file_b64: "aGVsbG8=", size: "hd", type: "product", type_level: "2", format: "zip", bg_color: "#81d4fa",
        bg_image_url: "https://example.com/bg.jpg", bg_image_file: background, channels: "alpha", crop: true,
        crop_margin: "10px 5%", scale: "80%", position: "30% 70%", roi: "0% 0% 50% 100%", add_shadow: false,
        shadow_type: "drop", shadow_opacity: 40, semitransparency: true, image_url: "https://example.com/a.jpg",
        extra_fields: { "future_field" => "x", "skipped" => nil }
      )
    end
    form = server.requests.first.form
    assert_equal({
                   "image_url" => "https://example.com/a.jpg", "image_file_b64" => "aGVsbG8=", "size" => "hd",
                   "type" => "product", "type_level" => "2", "format" => "zip", "bg_color" => "#81d4fa",
                   "bg_image_url" => "https://example.com/bg.jpg", "channels" => "alpha", "crop" => "true",
                   "crop_margin" => "10px 5%", "scale" => "80%", "position" => "30% 70%", "roi" => "0% 0% 50% 100%",
                   "add_shadow" => "false", "shadow_type" => "drop", "shadow_opacity" => "40",
                   "semitransparency" => "true", "future_field" => "x", "bg_image_file" => ["bg.png", "background-bytes"]
                 }, form)
  end

  def test_nil_leaves_a_field_out_and_an_unknown_keyword_is_refused_before_sending
    server = fake_server
    client(server).remove_background(image_url: "https://example.com/a.jpg", size: nil, crop: nil)
    assert_equal({ "image_url" => "https://example.com/a.jpg" }, server.requests.first.form)
    assert_raises(ArgumentError) { client(server).remove_background(image_url: "u", bg_colour: "red") }
    assert_equal 1, server.requests.length
  end

  def test_a_path_is_uploaded_under_its_name_and_an_io_from_where_it_stands
    server = fake_server
    Dir.mktmpdir do |dir|
      path = File.join(dir, "holiday photo.jpg")
      File.binwrite(path, JPEGISH)
      client(server).remove_background(image_file: path)
      client(server).remove_background(image_file: Pathname.new(path)) if defined?(Pathname)
      File.open(path, "rb") { |file| client(server).remove_background(image_file: file) }
    end
    io = StringIO.new("skip-this|the photo")
    io.read(10)
    client(server).remove_background(image_file: io)
    forms = server.requests.map(&:form)
    assert_equal ["holiday photo.jpg", JPEGISH], forms.first["image_file"]
    assert_equal forms.first["image_file"], forms.last(2).first["image_file"]
    assert_equal ["image_file", "the photo"], forms.last["image_file"]
  end

  def test_a_missing_file_or_a_wrong_kind_of_value_fails_before_sending
    server = fake_server
    error = assert_raises(ArgumentError) { client(server).remove_background(image_file: "/no/such/photo.jpg") }
    assert_includes error.message, "/no/such/photo.jpg"
    assert_raises(TypeError) { client(server).remove_background(image_file: 42) }
    error = assert_raises(ArgumentError) { client(server).remove_background(image_file: JPEGISH) }
    assert_includes error.message, "StringIO.new(bytes)"
    assert_empty server.requests
  end

  def test_the_key_and_address_come_from_the_environment_and_no_key_is_an_error_before_any_request
    server = fake_server([FakeServer.account])
    ENV["CLEARBG_API_KEY"] = "env-key"
    ENV["CLEARBG_BASE_URL"] = "#{server.url}/"
    api = ClearBG::Client.new
    assert_equal server.url, api.base_url
    api.account
    assert_equal "env-key", server.requests.first.headers["x-api-key"]
    ENV.delete("CLEARBG_API_KEY")
    error = assert_raises(ClearBG::ClearBGError) { ClearBG::Client.new(base_url: server.url) }
    assert_includes error.message, "CLEARBG_API_KEY"
    assert_raises(ClearBG::Error) { ClearBG::Client.new(api_key: "  ") }
    assert_raises(ClearBG::ClearBGError) { ClearBG::Client.new(api_key: "k", base_url: "ftp://x") }
    assert_raises(ArgumentError) { ClearBG::Client.new(api_key: "k", max_retries: -1) }
    assert_equal 1, server.requests.length
  end

  def test_account_reads_the_documented_body
    body = '{"data":{"attributes":{"credits":{"total":50.5,"subscription":45.5,"payg":5,"enterprise":0},' \
           '"api":{"free_calls":7,"sizes":"all"}}}}'
    server = fake_server([{ status: 200, headers: { "Content-Type" => "application/json", "X-Request-Id" => "acc-1" }, body: body }])
    account = client(server).account
    assert_equal ["GET", "/v1.0/account"], [server.requests.first.method, server.requests.first.path]
    assert_nil server.requests.first.headers["idempotency-key"]
    assert_equal BigDecimal("50.5"), account.credits.total
    assert_equal [BigDecimal("45.5"), BigDecimal(5), BigDecimal(0)],
                 [account.credits.subscription, account.credits.payg, account.credits.enterprise]
    assert_equal [7, "all", "acc-1"], [account.free_calls, account.sizes, account.request_id]
  end

  def test_an_account_body_of_another_shape_is_a_clearbg_error
    server = fake_server([{ status: 200, headers: { "Content-Type" => "text/html" }, body: "<html>hi</html>" }])
    error = assert_raises(ClearBG::ClearBGError) { client(server).account }
    assert_includes error.message, "unexpected shape"
  end

  def test_save_writes_the_picture_and_returns_the_path
    server = fake_server
    result = client(server).remove_background(image_url: "https://example.com/a.jpg")
    Dir.mktmpdir do |dir|
      path = File.join(dir, "out.png")
      assert_equal path, result.save(path)
      assert_equal FakeServer::PNG_1X1, File.binread(path)
    end
  end
end
