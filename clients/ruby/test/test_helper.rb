# frozen_string_literal: true

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
$LOAD_PATH.unshift(__dir__)

require "minitest/autorun"
require "stringio"
require "tmpdir"
require "clearbg"
require "fake_server"

# Each test starts its own fake server; a developer's own CLEARBG_* settings never leak in.
class ClearBGTest < Minitest::Test

  def setup
    @saved_env = ENV.to_h.select { |name, _| name.start_with?("CLEARBG_") }
    @saved_env.each_key { |name| ENV.delete(name) }
    @servers = []
  end

  def teardown
    @servers.each(&:close)
    @saved_env.each { |name, value| ENV[name] = value }
  end

  def fake_server(script = [FakeServer.ok])
    server = FakeServer.new(script)
    @servers << server
    server
  end

  def client(server, **options)
    ClearBG::Client.new(api_key: "test-key", base_url: server.url, **options)
  end
end
