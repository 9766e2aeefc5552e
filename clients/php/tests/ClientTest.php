<?php

declare(strict_types=1);

namespace ClearBG\Tests;

use ClearBG\Client;
use ClearBG\Exception\ClearBGException;
use ClearBG\Foreground;
use ClearBG\RateLimit;
use ClearBG\Version;
use GuzzleHttp\Psr7\Utils;

/** The request a call sends and the result it makes of the answer. */
final class ClientTest extends TestCase
{
    private const UUID4 = '/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/';

    public function testTheResultIsEveryFigureOfTheAnswer(): void
    {
        $server = $this->fakeServer([FakeServer::ok(['Idempotent-Replayed' => 'true'])]);
        $result = $this->client($server)->removeBackground(['image_file' => Utils::streamFor('photo-bytes'), 'size' => 'small']);
        $this->assertSame(hex2bin(FakeServer::PNG_1X1), $result->data);
        $this->assertSame([321, 481, 'person', 'image/png'], [$result->width, $result->height, $result->type, $result->contentType]);
        $this->assertSame(1.0, $result->creditsCharged);
        $this->assertSame(49.5, $result->creditsRemaining);
        $this->assertEquals(new Foreground(10, 20, 200, 400), $result->foreground);
        $this->assertEquals(new RateLimit(500, 499, 1790000000), $result->rateLimit);
        $this->assertSame('req-ok-1', $result->requestId);
        $this->assertTrue($result->replayed);
        $this->assertSame('321', $result->headers['x-width']);
        $this->assertSame($server->requests()[0]['headers']['idempotency-key'], $result->idempotencyKey);
    }

    public function testAbsentHeadersAreNullAndTypeLevelNoneHasNoType(): void
    {
        $server = $this->fakeServer([FakeServer::reply(200, ['Content-Type' => 'image/png'], 'x')]);
        $result = $this->client($server)->removeBackground(['image_url' => 'https://example.com/a.jpg']);
        $this->assertNull($result->type);
        $this->assertNull($result->width);
        $this->assertNull($result->foreground);
        $this->assertNull($result->rateLimit);
        $this->assertSame(0.0, $result->creditsCharged);
        $this->assertFalse($result->replayed);
    }

    public function testTheRequestCarriesTheKeyTheUserAgentAndAFreshUuidPerCall(): void
    {
        $server = $this->fakeServer();
        $client = $this->client($server);
        $client->removeBackground(['image_url' => 'https://example.com/a.jpg']);
        $client->removeBackground(['image_url' => 'https://example.com/a.jpg']);
        [$first, $second] = $server->requests();
        $this->assertSame(['POST', '/v1.0/removebg'], [$first['method'], $first['path']]);
        $this->assertSame('test-key', $first['headers']['x-api-key']);
        $this->assertSame('clearbg-php/' . Version::VERSION, $first['headers']['user-agent']);
        $this->assertMatchesRegularExpression(self::UUID4, $first['headers']['idempotency-key']);
        $this->assertNotSame($first['headers']['idempotency-key'], $second['headers']['idempotency-key']);
        $this->assertStringStartsWith('multipart/form-data; boundary=', $first['headers']['content-type']);
    }

    public function testEveryParameterIsSentUnderItsRestName(): void
    {
        $server = $this->fakeServer();
        $background = $this->tempFile('bg.png', 'background-bytes');
        $this->client($server)->removeBackground([
            'image_file_b64' => 'aGVsbG8=', 'size' => 'hd', 'type' => 'product', 'type_level' => '2', 'format' => 'zip',
            'bg_color' => '#81d4fa', 'bg_image_url' => 'https://example.com/bg.jpg', 'bg_image_file' => $background,
            'channels' => 'alpha', 'crop' => true, 'crop_margin' => '10px 5%', 'scale' => '80%', 'position' => '30% 70%',
            'roi' => '0% 0% 50% 100%', 'add_shadow' => false, 'shadow_type' => 'drop', 'shadow_opacity' => 40,
            'semitransparency' => true, 'image_url' => 'https://example.com/a.jpg',
            'extra_fields' => ['future_field' => 'x', 'skipped' => null],
        ]);
        $this->assertSame([
            'image_url' => 'https://example.com/a.jpg', 'image_file_b64' => 'aGVsbG8=', 'size' => 'hd', 'type' => 'product',
            'type_level' => '2', 'format' => 'zip', 'bg_color' => '#81d4fa', 'bg_image_url' => 'https://example.com/bg.jpg',
            'channels' => 'alpha', 'crop' => 'true', 'crop_margin' => '10px 5%', 'scale' => '80%', 'position' => '30% 70%',
            'roi' => '0% 0% 50% 100%', 'add_shadow' => 'false', 'shadow_type' => 'drop', 'shadow_opacity' => '40',
            'semitransparency' => 'true', 'future_field' => 'x', 'bg_image_file' => ['bg.png', 'background-bytes'],
        ], FakeServer::form($server->requests()[0]));
    }

    public function testNullLeavesAFieldOutAndAnUnknownNameIsRefusedBeforeSending(): void
    {
        $server = $this->fakeServer();
        $this->client($server)->removeBackground(['image_url' => 'https://example.com/a.jpg', 'size' => null]);
        $this->assertSame(['image_url' => 'https://example.com/a.jpg'], FakeServer::form($server->requests()[0]));
        try {
            $this->client($server)->removeBackground(['imageUrl' => 'https://example.com/a.jpg']);
            $this->fail('an unknown parameter was sent');
        } catch (\InvalidArgumentException $e) {
            $this->assertStringContainsString("unknown parameter 'imageUrl' (the API's name is 'image_url')", $e->getMessage());
        }
        $this->expectException(\InvalidArgumentException::class);
        try {
            $this->client($server)->removeBackground(['image_url' => 'u'], ['idempotencyKey' => 'k']);
        } finally {
            $this->assertCount(1, $server->requests());
        }
    }

    public function testAPathAnSplFileInfoAResourceAndAStreamAreUploaded(): void
    {
        $server = $this->fakeServer();
        $bytes = "\xFF\xD8\xFF jpeg bytes \x00\x01";
        $path = $this->tempFile('holiday photo.jpg', $bytes);
        $client = $this->client($server);
        $client->removeBackground(['image_file' => $path]);
        $client->removeBackground(['image_file' => new \SplFileInfo($path)]);
        $handle = fopen($path, 'rb');
        fread($handle, 3);
        $client->removeBackground(['image_file' => $handle]);
        $this->assertTrue(is_resource($handle), "the caller's handle is left open");
        fclose($handle);
        $client->removeBackground(['image_file' => Utils::streamFor('in memory')]);
        $forms = array_map([FakeServer::class, 'form'], $server->requests());
        $this->assertSame(['holiday photo.jpg', $bytes], $forms[0]['image_file']);
        $this->assertSame($forms[0]['image_file'], $forms[1]['image_file']);
        $this->assertSame(['holiday photo.jpg', substr($bytes, 3)], $forms[2]['image_file'], 'read from where it stood');
        $this->assertSame(['image_file', 'in memory'], $forms[3]['image_file']);
    }

    public function testAMissingFileOrAWrongKindOfValueFailsBeforeSending(): void
    {
        $server = $this->fakeServer();
        $cases = [['/no/such/photo.jpg', 'no such file: /no/such/photo.jpg'], [42, 'must be a path'],
            ["\xFF\xD8\xFF\x00 jpeg bytes", 'to send bytes, pass GuzzleHttp\\Psr7\\Utils::streamFor($bytes)']];
        foreach ($cases as [$value, $message]) {
            try {
                $this->client($server)->removeBackground(['image_file' => $value]);
                $this->fail('sent');
            } catch (\InvalidArgumentException $e) {
                $this->assertStringContainsString($message, $e->getMessage());
            }
        }
        $this->assertSame([], $server->requests());
    }

    public function testTheKeyAndAddressComeFromTheEnvironmentAndNoKeyIsAnErrorBeforeAnyRequest(): void
    {
        $server = $this->fakeServer([FakeServer::account()]);
        putenv('CLEARBG_API_KEY=env-key');
        putenv("CLEARBG_BASE_URL={$server->url}/");
        $client = new Client();
        $this->assertSame($server->url, $client->getBaseUrl());
        $client->account();
        $this->assertSame('env-key', $server->requests()[0]['headers']['x-api-key']);
        putenv('CLEARBG_API_KEY');
        foreach ([fn () => new Client(baseUrl: $server->url), fn () => new Client(apiKey: '  '), fn () => new Client(apiKey: 'k', baseUrl: 'ftp://x')] as $make) {
            try {
                $make();
                $this->fail('made a client');
            } catch (ClearBGException $e) {
                $this->assertNotSame('', $e->getMessage());
            }
        }
        $this->expectException(\InvalidArgumentException::class);
        new Client(apiKey: 'k', maxRetries: -1);
    }

    public function testAccountReadsTheDocumentedBody(): void
    {
        $body = '{"data":{"attributes":{"credits":{"total":50.5,"subscription":45.5,"payg":5,"enterprise":0},'
            . '"api":{"free_calls":7,"sizes":"all"}}}}';
        $server = $this->fakeServer([FakeServer::reply(200, ['Content-Type' => 'application/json', 'X-Request-Id' => 'acc-1'], $body)]);
        $account = $this->client($server)->account();
        $request = $server->requests()[0];
        $this->assertSame(['GET', '/v1.0/account'], [$request['method'], $request['path']]);
        $this->assertArrayNotHasKey('idempotency-key', $request['headers']);
        $this->assertSame([50.5, 45.5, 5.0, 0.0], [$account->credits->total, $account->credits->subscription, $account->credits->payg, $account->credits->enterprise]);
        $this->assertSame([7, 'all', 'acc-1'], [$account->freeCalls, $account->sizes, $account->requestId]);
    }

    public function testAnAccountBodyOfAnotherShapeIsAClearBGException(): void
    {
        $server = $this->fakeServer([FakeServer::reply(200, ['Content-Type' => 'text/html'], '<html>hi</html>')]);
        $this->expectException(ClearBGException::class);
        $this->expectExceptionMessage('unexpected shape');
        $this->client($server)->account();
    }

    public function testSaveWritesThePictureAndReturnsThePath(): void
    {
        $server = $this->fakeServer();
        $result = $this->client($server)->removeBackground(['image_url' => 'https://example.com/a.jpg']);
        $path = $this->tempFile('out.png', '');
        $this->assertSame($path, $result->save($path));
        $this->assertSame(hex2bin(FakeServer::PNG_1X1), file_get_contents($path));
    }
}
