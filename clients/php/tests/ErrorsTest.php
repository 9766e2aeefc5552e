<?php

declare(strict_types=1);

namespace ClearBG\Tests;

use ClearBG\Client;
use ClearBG\Exception;

/** The server's error answers as one class per status, with what the body and headers said. */
final class ErrorsTest extends TestCase
{
    public function testEachStatusIsItsClassWithCodeTitleDetailAndRequestIdAndIsNotRetried(): void
    {
        $cases = [
            400 => [Exception\BadRequestException::class, 'invalid_size'],
            401 => [Exception\AuthenticationException::class, 'invalid_api_key'],
            402 => [Exception\InsufficientCreditsException::class, 'insufficient_credits'],
            403 => [Exception\PermissionDeniedException::class, 'ip_rate_limit_exceeded'],
            404 => [Exception\ApiException::class, 'not_found'],
            409 => [Exception\ConflictException::class, 'idempotency_result_evicted'],
            422 => [Exception\UnprocessableEntityException::class, 'idempotency_key_reused'],
        ];
        foreach ($cases as $status => [$class, $code]) {
            $server = $this->fakeServer([FakeServer::error($status, $code, [], 'A title', 'What went wrong')]);
            try {
                $this->client($server)->removeBackground(['image_url' => 'https://example.com/a.jpg']);
                $this->fail("{$status} did not throw");
            } catch (Exception\ApiException $e) {
                $this->assertSame($class, get_class($e), (string) $status);
                $this->assertInstanceOf(Exception\ClearBGException::class, $e);
                $this->assertSame([$status, $code, $code, 'A title', 'What went wrong', "req-{$status}"],
                    [$e->status, $e->code, $e->getCode(), $e->title, $e->detail, $e->requestId]);
                $this->assertSame("{$status} {$code}: What went wrong (request id req-{$status})", $e->getMessage());
                $this->assertSame(['errors' => [['title' => 'A title', 'code' => $code, 'detail' => 'What went wrong']]], $e->body);
                $this->assertSame("req-{$status}", $e->headers['x-request-id']);
                $this->assertCount(1, $server->requests(), "{$status} is not retried");
            }
        }
    }

    public function testServerErrorsAreInternalServerExceptionsAnd503ServiceUnavailable(): void
    {
        $cases = [500 => Exception\InternalServerException::class, 502 => Exception\InternalServerException::class,
            504 => Exception\InternalServerException::class, 507 => Exception\InternalServerException::class,
            503 => Exception\ServiceUnavailableException::class];
        foreach ($cases as $status => $class) {
            $server = $this->fakeServer([FakeServer::error($status, 'boom', ['Retry-After' => '0'])]);
            try {
                $this->client($server, maxRetries: 0)->account();
                $this->fail("{$status} did not throw");
            } catch (Exception\ApiException $e) {
                $this->assertSame([$class, $status, 0.0], [get_class($e), $e->status, $e->retryAfter]);
            }
        }
    }

    public function testAProxyPageStillGivesTheStatusAndAReadableDetail(): void
    {
        $page = '<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>';
        $server = $this->fakeServer([FakeServer::reply(502, ['Content-Type' => 'text/html'], $page)]);
        try {
            $this->client($server, maxRetries: 0)->account();
            $this->fail('no exception');
        } catch (Exception\InternalServerException $e) {
            $this->assertNull($e->code);
            $this->assertSame('Bad Gateway', $e->title);
            $this->assertSame('HTTP 502 Bad Gateway without a ClearBG error body: 502 Bad Gateway nginx', $e->detail);
            $this->assertSame($page, $e->body);
        }
    }

    public function testNoAnswerIsAConnectionException(): void
    {
        $probe = stream_socket_server('tcp://127.0.0.1:0');
        $address = (string) stream_socket_get_name($probe, false);
        fclose($probe);
        $client = new Client(apiKey: 'k', baseUrl: "http://{$address}", maxRetries: 0);
        try {
            $client->account();
            $this->fail('no exception');
        } catch (Exception\ApiConnectionException $e) {
            $this->assertStringContainsString($address, $e->getMessage());
            $this->assertNotInstanceOf(Exception\ApiTimeoutException::class, $e);
        }
    }

    public function testNoAnswerWithinTheTimeoutIsATimeoutException(): void
    {
        $server = $this->fakeServer([FakeServer::reply(200, ['Content-Type' => 'image/png'], 'late', 3.0)]);
        $this->expectException(Exception\ApiTimeoutException::class);
        $this->client($server, timeout: 0.5, maxRetries: 0)->account();
    }
}
