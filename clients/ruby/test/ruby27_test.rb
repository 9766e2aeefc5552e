# frozen_string_literal: true

require "test_helper"

# The gem promises Ruby 2.7+, and only a newer Ruby runs here: every file must parse as Ruby 2.7
# (the `parser` gem: Debian's ruby-whitequark-parser, or `gem install parser`). No endless
# methods, no hash shorthand, no other 3.x-only syntax.
class Ruby27Test < Minitest::Test
  ROOT = File.expand_path("..", __dir__)

  def test_every_file_parses_as_ruby_2_7
    begin
      require "parser/ruby27"
    rescue LoadError
      flunk "the parser gem is missing: apt-get install ruby-whitequark-parser (or gem install parser)"
    end
    files = Dir[File.join(ROOT, "{lib,test,e2e}/**/*.rb")] + [File.join(ROOT, "clearbg.gemspec")]
    assert_operator files.length, :>=, 8
    files.each do |path|
      parser = Parser::Ruby27.new
      parser.diagnostics.all_errors_are_fatal = true
      parser.diagnostics.consumer = ->(_diagnostic) {}
      buffer = Parser::Source::Buffer.new(path, source: File.read(path))
      begin
        parser.parse(buffer)
      rescue Parser::SyntaxError => e
        flunk "#{path} is not Ruby 2.7: #{e.diagnostic.render.join("\n")}"
      end
    end
  end

  def test_the_check_refuses_ruby_3_syntax
    require "parser/ruby27"
    ["def area = 1\n", "x = 1\n{x:}\n"].each do |source|
      parser = Parser::Ruby27.new
      parser.diagnostics.all_errors_are_fatal = true
      parser.diagnostics.consumer = ->(_diagnostic) {}
      assert_raises(Parser::SyntaxError) { parser.parse(Parser::Source::Buffer.new("(3.x)", source: source)) }
    end
  end
end
