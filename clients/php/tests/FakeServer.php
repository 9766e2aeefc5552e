<?php

declare(strict_types=1);

namespace ClearBG\Tests;

/**
 * A small scripted HTTP server on 127.0.0.1 for the unit tests: PHP's built-in server with a
 * router (fake_router.php) that records every request (method, path, headers, raw body, arrival
 * time) and answers with the next scripted reply, or the last one when the script runs out.
 */
final class FakeServer
{
    public const PNG_1X1 = '89504e470d0a1a0a0000000d4948445200000001000000010806000000'
        . '1f15c4890000000d49444154789c63f8cfc0f01f0005000201a0e3'
        . 'd5f20000000049454e44ae426082';

    public const SUCCESS_HEADERS = [
        'Content-Type' => 'image/png', 'X-Width' => '321', 'X-Height' => '481', 'X-Type' => 'person',
        'X-Credits-Charged' => '1', 'X-Credits-Remaining' => '49.5', 'X-Foreground-Top' => '10',
        'X-Foreground-Left' => '20', 'X-Foreground-Width' => '200', 'X-Foreground-Height' => '400',
        'X-RateLimit-Limit' => '500', 'X-RateLimit-Remaining' => '499', 'X-RateLimit-Reset' => '1790000000',
        'X-Request-Id' => 'req-ok-1',
    ];

    public string $url;
    private string $dir;
    /** @var resource */
    private $process;

    /** @param list<array<string, mixed>> $script */
    public function __construct(array $script)
    {
        $this->dir = sys_get_temp_dir() . '/clearbg-fake-' . bin2hex(random_bytes(6));
        mkdir("{$this->dir}/requests", 0777, true);
        $this->script($script);
        $probe = stream_socket_server('tcp://127.0.0.1:0');
        $port = (int) substr((string) strrchr((string) stream_socket_get_name($probe, false), ':'), 1);
        fclose($probe);
        $this->url = "http://127.0.0.1:{$port}";
        $command = [PHP_BINARY, '-d', 'enable_post_data_reading=0', '-S', "127.0.0.1:{$port}", __DIR__ . '/fake_router.php'];
        $log = "{$this->dir}/server.log";
        $this->process = proc_open($command, [0 => ['file', '/dev/null', 'r'], 1 => ['file', $log, 'a'], 2 => ['file', $log, 'a']],
            $pipes, null, ['FAKE_DIR' => $this->dir] + getenv());
        $deadline = microtime(true) + 30;
        while (!($socket = @fsockopen('127.0.0.1', $port, $errno, $error, 0.2))) {
            if (microtime(true) > $deadline) {
                throw new \RuntimeException("the fake server did not start: " . file_get_contents($log));
            }
            usleep(20000);
        }
        fclose($socket);
    }

    public static function ok(array $extra = []): array
    {
        return ['status' => 200, 'headers' => $extra + self::SUCCESS_HEADERS, 'body' => base64_encode((string) hex2bin(self::PNG_1X1))];
    }

    public static function account(): array
    {
        $body = '{"data":{"attributes":{"credits":{"total":50,"subscription":45,"payg":5,"enterprise":0},'
            . '"api":{"free_calls":50,"sizes":"all"}}}}';
        return self::reply(200, ['Content-Type' => 'application/json', 'X-Request-Id' => 'req-account'], $body);
    }

    public static function error(int $status, string $code, array $headers = [], string $title = 'Title', string $detail = 'Detail'): array
    {
        $body = json_encode(['errors' => [['title' => $title, 'code' => $code, 'detail' => $detail]]]);
        return self::reply($status, $headers + ['Content-Type' => 'application/json', 'X-Request-Id' => "req-{$status}"], (string) $body);
    }

    public static function reply(int $status, array $headers, string $body, float $delay = 0.0): array
    {
        return ['status' => $status, 'headers' => $headers, 'body' => base64_encode($body), 'delay' => $delay];
    }

    /** Replaces what the next requests get. */
    public function script(array $replies): void
    {
        file_put_contents("{$this->dir}/script.json", json_encode($replies));
    }

    /** @return list<array{method: string, path: string, headers: array<string, string>, body: string, at: float}> */
    public function requests(): array
    {
        $found = [];
        foreach (glob("{$this->dir}/requests/*.json") as $path) {
            $record = json_decode((string) file_get_contents($path), true);
            $record['body'] = base64_decode($record['body']);
            $found[] = $record;
        }
        return $found;
    }

    /**
     * A multipart body's text fields as name => value, its files as name => [filename, bytes].
     *
     * @param array{headers: array<string, string>, body: string} $request
     * @return array<string, string|array{0: string, 1: string}>
     */
    public static function form(array $request): array
    {
        preg_match('/boundary="?([^";]+)"?/', $request['headers']['content-type'], $match);
        $parts = explode("--{$match[1]}", $request['body']);
        $fields = [];
        foreach (array_slice($parts, 1, -1) as $part) {
            [$head, $content] = explode("\r\n\r\n", substr($part, 2), 2);
            preg_match('/name="([^"]*)"/', $head, $name);
            $value = substr($content, 0, -2);
            $fields[$name[1]] = preg_match('/filename="([^"]*)"/', $head, $file) ? [$file[1], $value] : $value;
        }
        return $fields;
    }

    public function close(): void
    {
        proc_terminate($this->process);
        proc_close($this->process);
        array_map('unlink', glob("{$this->dir}/requests/*.json"));
        rmdir("{$this->dir}/requests");
        array_map('unlink', glob("{$this->dir}/*"));
        rmdir($this->dir);
    }
}
