<?php

declare(strict_types=1);

namespace ClearBG\Tests;

use ClearBG\Client;

/** Each test starts its own fake server; a developer's own CLEARBG_* settings never leak in. */
abstract class TestCase extends \PHPUnit\Framework\TestCase
{
    /** @var list<FakeServer> */
    private array $servers = [];
    /** @var array<string, string> */
    private array $savedEnv = [];
    /** @var list<string> */
    private array $tempFiles = [];

    protected function setUp(): void
    {
        foreach (['CLEARBG_API_KEY', 'CLEARBG_BASE_URL'] as $name) {
            if (getenv($name) !== false) {
                $this->savedEnv[$name] = (string) getenv($name);
                putenv($name);
            }
        }
    }

    protected function tearDown(): void
    {
        foreach ($this->servers as $server) {
            $server->close();
        }
        foreach (['CLEARBG_API_KEY', 'CLEARBG_BASE_URL'] as $name) {
            putenv(isset($this->savedEnv[$name]) ? "{$name}={$this->savedEnv[$name]}" : $name);
        }
        array_map('unlink', array_filter($this->tempFiles, 'is_file'));
    }

    protected function fakeServer(?array $script = null): FakeServer
    {
        $server = new FakeServer($script ?? [FakeServer::ok()]);
        $this->servers[] = $server;
        return $server;
    }

    protected function client(FakeServer $server, ?float $timeout = null, ?int $maxRetries = null, ?callable $logger = null): Client
    {
        return new Client(apiKey: 'test-key', baseUrl: $server->url, timeout: $timeout, maxRetries: $maxRetries, logger: $logger);
    }

    protected function tempFile(string $name, string $contents): string
    {
        $dir = sys_get_temp_dir() . '/clearbg-php-' . bin2hex(random_bytes(4));
        mkdir($dir);
        $path = "{$dir}/{$name}";
        file_put_contents($path, $contents);
        $this->tempFiles[] = $path;
        return $path;
    }
}
