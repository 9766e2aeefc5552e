<?php

declare(strict_types=1);

namespace ClearBG\Tests;

use PhpParser\Node;
use PhpParser\NodeFinder;
use PhpParser\ParserFactory;

/**
 * The package promises PHP 8.0+, and only a newer PHP runs here: every file is parsed (nikic's
 * PHP-Parser: Debian's php-nikic-php-parser, or phpunit's own dependency) and searched for what
 * PHP 8.1 and 8.2 added: enums, readonly properties and classes, the never type, first-class
 * callables, `new` in initialisers, intersection and standalone true/false/null types, 0o octals,
 * and the functions those versions brought.
 */
final class Php80CompatibilityTest extends \PHPUnit\Framework\TestCase
{
    private const NEWER_FUNCTIONS = ['array_is_list', 'enum_exists', 'fsync', 'fdatasync', 'ini_parse_quantity',
        'memory_reset_peak_usage', 'mysqli_execute_query', 'curl_upkeep', 'libxml_get_external_entity_loader',
        'sodium_crypto_stream_xchacha20_xor_ic', 'openssl_cipher_key_length'];

    public static function setUpBeforeClass(): void
    {
        if (!class_exists(ParserFactory::class)) {
            require_once 'PhpParser/autoload.php';
        }
    }

    /** @return list<string> what in $code needs a PHP newer than 8.0 */
    private static function newerThan80(string $code): array
    {
        $parser = (new ParserFactory())->create(ParserFactory::PREFER_PHP7);
        $nodes = $parser->parse($code) ?? [];
        $found = [];
        $readonly = Node\Stmt\Class_::MODIFIER_READONLY;
        foreach ((new NodeFinder())->find($nodes, fn (Node $node): bool => true) as $node) {
            $line = $node->getStartLine();
            if ($node instanceof Node\Stmt\Enum_) {
                $found[] = "enum on line {$line}";
            } elseif (($node instanceof Node\Stmt\Property || $node instanceof Node\Param || $node instanceof Node\Stmt\Class_)
                && ($node->flags & $readonly)) {
                $found[] = "readonly on line {$line}";
            } elseif ($node instanceof Node\VariadicPlaceholder) {
                $found[] = "first-class callable on line {$line}";
            } elseif ($node instanceof Node\IntersectionType) {
                $found[] = "intersection type on line {$line}";
            } elseif ($node instanceof Node\FunctionLike && $node->getReturnType() instanceof Node\Identifier
                && in_array($node->getReturnType()->toLowerString(), ['never', 'true', 'false', 'null'], true)) {
                $found[] = "return type {$node->getReturnType()} on line {$line}";
            } elseif ($node instanceof Node\Param && $node->default !== null
                && (new NodeFinder())->findFirstInstanceOf([$node->default], Node\Expr\New_::class) !== null) {
                $found[] = "new in an initialiser on line {$line}";
            } elseif ($node instanceof Node\Scalar\LNumber && preg_match('/^0[oO]/', (string) $node->getAttribute('rawValue', ''))) {
                $found[] = "0o octal on line {$line}";
            } elseif ($node instanceof Node\Expr\FuncCall && $node->name instanceof Node\Name
                && in_array(strtolower($node->name->getLast()), self::NEWER_FUNCTIONS, true)) {
                $found[] = "{$node->name}() on line {$line}";
            }
        }
        return $found;
    }

    public function testEveryFileNeedsNoPhpNewerThan80(): void
    {
        $root = dirname(__DIR__);
        $files = array_merge(glob("{$root}/src/*.php"), glob("{$root}/src/*/*.php"), glob("{$root}/tests/*.php"), glob("{$root}/e2e/*.php"));
        $this->assertGreaterThanOrEqual(20, count($files));
        foreach ($files as $path) {
            $this->assertSame([], self::newerThan80((string) file_get_contents($path)), $path);
        }
    }

    public function testTheCheckFindsWhatPhp81And82Added(): void
    {
        $newer = <<<'PHP'
<?php
enum Suit { case Hearts; }
final class A { public readonly int $x; public function __construct(public readonly int $y, $z = new \stdClass()) {} }
readonly class B {}
function never_returns(): never { exit; }
function f(\Countable&\Traversable $x): false { return false; }
$len = strlen(...);
$mode = 0o755;
array_is_list([]);
PHP;
        $this->assertCount(11, self::newerThan80($newer), implode("\n", self::newerThan80($newer)));
    }
}
