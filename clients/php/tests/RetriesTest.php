<?php

declare(strict_types=1);

namespace ClearBG\Tests;

use ClearBG\Client;
use ClearBG\Exception;
use GuzzleHttp\Psr7\Utils;

/**
 * Which answers are retried, how long the client waits, and that every attempt of one call
 * carries the same Idempotency-Key.
 */
final class RetriesTest extends TestCase
{
    public function testA429IsRetriedAfterItsRetryAfterWithTheSameIdempotencyKey(): void
    {
        $server = $this->fakeServer([FakeServer::error(429, 'rate_limit_exceeded', ['Retry-After' => '1']), FakeServer::ok()]);
        $path = $this->tempFile('photo.jpg', 'the photo');
        $result = $this->client($server)->removeBackground(['image_file' => $path, 'size' => 'small']);
        [$first, $second] = $server->requests();
        $this->assertGreaterThanOrEqual(1.0, $second['at'] - $first['at']);
        $this->assertSame($first['headers']['idempotency-key'], $second['headers']['idempotency-key']);
        $this->assertSame($result->idempotencyKey, $second['headers']['idempotency-key']);
        $this->assertSame(['photo.jpg', 'the photo'], FakeServer::form($second)['image_file'], 'the file is sent whole again');
        $this->assertSame('small', FakeServer::form($second)['size']);
    }

    public function testRetryAfterAsAnHttpDateAndA503(): void
    {
        $later = gmdate('D, d M Y H:i:s \G\M\T', time() + 2);
        $server = $this->fakeServer([FakeServer::error(503, 'overloaded', ['Retry-After' => $later]), FakeServer::ok()]);
        $this->client($server)->removeBackground(['image_url' => 'https://example.com/a.jpg']);
        $requests = $server->requests();
        $this->assertCount(2, $requests);
        $this->assertGreaterThanOrEqual(0.9, $requests[1]['at'] - $requests[0]['at']);
        $this->assertEqualsWithDelta(30, Client::parseRetryAfter(gmdate('D, d M Y H:i:s \G\M\T', time() + 30)), 1.1);
        $this->assertSame(0.0, Client::parseRetryAfter(gmdate('D, d M Y H:i:s \G\M\T', time() - 30)));
        $this->assertSame(2.5, Client::parseRetryAfter(' 2.5 '));
        $this->assertNull(Client::parseRetryAfter('soon'));
        $this->assertNull(Client::parseRetryAfter(null));
    }

    public function testRetriedStatusesAndThe409ThatIs(): void
    {
        foreach ([408, 500, 502, 504] as $status) {
            $server = $this->fakeServer([FakeServer::error($status, 'x', ['Retry-After' => '0']), FakeServer::account()]);
            $this->client($server)->account();
            $this->assertCount(2, $server->requests(), (string) $status);
        }
        $server = $this->fakeServer([FakeServer::error(409, 'idempotency_in_flight', ['Retry-After' => '0']), FakeServer::ok()]);
        $this->client($server)->removeBackground(['image_url' => 'https://example.com/a.jpg']);
        $this->assertCount(2, $server->requests());
        $server = $this->fakeServer([FakeServer::error(409, 'idempotency_result_evicted')]);
        try {
            $this->client($server)->removeBackground(['image_url' => 'https://example.com/a.jpg']);
            $this->fail('no exception');
        } catch (Exception\ConflictException $e) {
            $this->assertCount(1, $server->requests());
        }
    }

    public function testWithoutRetryAfterTheWaitIsAnExponentialBackoff(): void
    {
        $server = $this->fakeServer([FakeServer::error(500, 'internal'), FakeServer::error(500, 'internal'), FakeServer::account()]);
        $this->client($server)->account();
        $times = array_column($server->requests(), 'at');
        $this->assertGreaterThanOrEqual(0.375, $times[1] - $times[0]); // 0.5 s less up to a quarter
        $this->assertGreaterThanOrEqual(0.75, $times[2] - $times[1]); // 1 s less up to a quarter
        for ($i = 0; $i < 20; $i++) {
            $this->assertLessThanOrEqual(0.5, Client::backoff(0));
            $this->assertLessThanOrEqual(8.0, Client::backoff(10));
            $this->assertGreaterThanOrEqual(6.0, Client::backoff(10));
        }
    }

    public function testRetriesStopAfterMaxRetriesAndThrowTheLastAnswer(): void
    {
        $server = $this->fakeServer([FakeServer::error(429, 'rate_limit_exceeded', ['Retry-After' => '0'])]);
        try {
            $this->client($server, maxRetries: 3)->account();
            $this->fail('no exception');
        } catch (Exception\RateLimitException $e) {
            $this->assertSame(0.0, $e->retryAfter);
            $this->assertCount(4, $server->requests());
        }
        $server = $this->fakeServer([FakeServer::error(429, 'rate_limit_exceeded', ['Retry-After' => '0'])]);
        $this->expectException(Exception\RateLimitException::class);
        try {
            $this->client($server)->removeBackground(['image_url' => 'u'], ['max_retries' => 0]);
        } finally {
            $this->assertCount(1, $server->requests());
        }
    }

    public function testAConnectionFailureIsRetried(): void
    {
        $probe = stream_socket_server('tcp://127.0.0.1:0');
        $address = (string) stream_socket_get_name($probe, false);
        fclose($probe);
        $lines = [];
        $client = new Client(apiKey: 'k', baseUrl: "http://{$address}", maxRetries: 2, logger: function (string $line) use (&$lines): void {
            $lines[] = $line;
        });
        $this->expectException(Exception\ApiConnectionException::class);
        try {
            $client->removeBackground(['image_url' => 'u'], ['idempotency_key' => 'k-1']);
        } finally {
            $this->assertCount(2, $lines);
            $this->assertMatchesRegularExpression('/^clearbg: POST \/v1\.0\/removebg \[k-1\]: retrying in 0\.\d{3} s after ApiConnectionException$/', $lines[0]);
        }
    }

    public function testYourOwnIdempotencyKeyIsSentOnEveryAttempt(): void
    {
        $server = $this->fakeServer([FakeServer::error(503, 'overloaded', ['Retry-After' => '0']), FakeServer::ok()]);
        $result = $this->client($server)->removeBackground(['image_url' => 'u'], ['idempotency_key' => 'order-1042-photo-3']);
        $this->assertSame(['order-1042-photo-3', 'order-1042-photo-3'], array_map(fn ($r) => $r['headers']['idempotency-key'], $server->requests()));
        $this->assertSame('order-1042-photo-3', $result->idempotencyKey);
    }

    public function testAStreamThatCannotBeRewoundIsSentOnce(): void
    {
        $server = $this->fakeServer([FakeServer::error(503, 'overloaded', ['Retry-After' => '0']), FakeServer::ok()]);
        $pipe = popen('printf "piped photo"', 'r');
        $this->expectException(Exception\ServiceUnavailableException::class);
        try {
            $this->client($server)->removeBackground(['image_file' => $pipe]);
        } finally {
            pclose($pipe);
            $this->assertCount(1, $server->requests());
            $this->assertSame(['image_file', 'piped photo'], FakeServer::form($server->requests()[0])['image_file']);
        }
    }

    public function testARetryAfterHoldsTheClientsNextCallToo(): void
    {
        $server = $this->fakeServer([FakeServer::error(429, 'rate_limit_exceeded', ['Retry-After' => '1'])]);
        $client = $this->client($server, maxRetries: 0);
        try {
            $client->account();
            $this->fail('no exception');
        } catch (Exception\RateLimitException $e) {
        }
        $server->script([FakeServer::ok()]);
        $client->removeBackground(['image_file' => Utils::streamFor('x')], ['max_retries' => 0]);
        [$refused, $next] = $server->requests();
        $this->assertGreaterThanOrEqual(0.95, $next['at'] - $refused['at'], 'the next call waited out the Retry-After');
    }

    public function testRetriesAreLogged(): void
    {
        $lines = [];
        $server = $this->fakeServer([FakeServer::error(503, 'overloaded', ['Retry-After' => '0']), FakeServer::ok()]);
        $logger = function (string $line) use (&$lines): void {
            $lines[] = $line;
        };
        $this->client($server, logger: $logger)->removeBackground(['image_url' => 'u'], ['idempotency_key' => 'k-1']);
        $this->assertSame(['clearbg: POST /v1.0/removebg [k-1]: retrying in 0.000 s after ServiceUnavailableException'], $lines);
    }
}
