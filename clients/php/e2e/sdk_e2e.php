<?php

// End to end: the package as Composer installs it, against the real service (Envoy + gRPC server +
// model), started by tests/clients/rest_sdks/ (pytest), which runs this file in a project where
// `composer install` put clearbg/sdk, and sets:
//   CLEARBG_BASE_URL, CLEARBG_API_KEY  the stack (through a recording proxy) and an account with credits
//   CLEARBG_E2E_POOR_KEY               an account with nothing to pay with
//   CLEARBG_E2E_LIMITED_KEY            an account limited to a few images a minute
//   CLEARBG_E2E_PHOTO                  a real photo (read in place)
//   CLEARBG_E2E_IMAGE_URL              the same photo on a local HTTP server the stack may fetch from
//   CLEARBG_E2E_OUT                    where each answer is saved, with the fields the SDK read from it
// pytest then decodes the pictures and compares every field with the headers the proxy saw.

declare(strict_types=1);

require __DIR__ . '/vendor/autoload.php';

use ClearBG\Client;
use ClearBG\Exception\ApiException;
use ClearBG\RemoveBackgroundResult;

foreach (['CLEARBG_BASE_URL', 'CLEARBG_API_KEY', 'CLEARBG_E2E_POOR_KEY', 'CLEARBG_E2E_LIMITED_KEY', 'CLEARBG_E2E_PHOTO',
    'CLEARBG_E2E_IMAGE_URL', 'CLEARBG_E2E_OUT'] as $name) {
    if ((string) getenv($name) === '') {
        fwrite(STDERR, "{$name} is not set\n");
        exit(1);
    }
}
$out = (string) getenv('CLEARBG_E2E_OUT');
$photo = (string) getenv('CLEARBG_E2E_PHOTO');

function write(string $name, array $record): void
{
    file_put_contents((string) getenv('CLEARBG_E2E_OUT') . "/{$name}.json", json_encode($record));
}

function saved(string $name, RemoveBackgroundResult $result): void
{
    $result->save((string) getenv('CLEARBG_E2E_OUT') . "/{$name}.bin");
    write($name, [
        'width' => $result->width, 'height' => $result->height, 'type' => $result->type, 'content_type' => $result->contentType,
        'credits_charged' => (string) $result->creditsCharged, 'credits_remaining' => (string) $result->creditsRemaining,
        'foreground' => (array) $result->foreground, 'rate_limit' => (array) $result->rateLimit, 'request_id' => $result->requestId,
        'replayed' => $result->replayed, 'idempotency_key' => $result->idempotencyKey,
    ]);
    echo "{$name}: {$result->width}x{$result->height} {$result->contentType}, charged {$result->creditsCharged}\n";
}

function failed(string $name, callable $call): ApiException
{
    try {
        $call();
    } catch (ApiException $e) {
        write($name, ['class' => (new \ReflectionClass($e))->getShortName(), 'status' => $e->status, 'code' => $e->code,
            'title' => $e->title, 'detail' => $e->detail, 'request_id' => $e->requestId]);
        echo "{$name}: " . get_class($e) . ": {$e->getMessage()}\n";
        return $e;
    }
    fwrite(STDERR, "{$name}: no exception was thrown\n");
    exit(1);
}

$client = new Client(); // CLEARBG_API_KEY and CLEARBG_BASE_URL
saved('file', $client->removeBackground(['image_file' => $photo, 'size' => 'small']));
saved('base64', $client->removeBackground(['image_file_b64' => base64_encode((string) file_get_contents($photo)), 'size' => 'small']));
saved('url', $client->removeBackground(['image_url' => getenv('CLEARBG_E2E_IMAGE_URL'), 'size' => 'small']));
saved('jpg', $client->removeBackground(['image_file' => $photo, 'size' => 'small', 'format' => 'jpg', 'bg_color' => '#81d4fa']));
saved('zip', $client->removeBackground(['image_file' => $photo, 'size' => 'small', 'format' => 'zip']));
$account = $client->account();
write('account', [
    'credits' => array_map('strval', (array) $account->credits), 'free_calls' => $account->freeCalls,
    'sizes' => $account->sizes, 'request_id' => $account->requestId,
]);

failed('401', fn () => (new Client(apiKey: 'not-a-key'))->removeBackground(['image_file' => $photo, 'size' => 'small']));
failed('402', fn () => (new Client(apiKey: (string) getenv('CLEARBG_E2E_POOR_KEY')))->removeBackground(['image_file' => $photo, 'size' => 'small']));

// 429: spend the limited key's allowance with calls the server refuses (each costs one), then a real
// call: refused with 429 and Retry-After, retried by the SDK after that wait, and done.
$limited = new Client(apiKey: (string) getenv('CLEARBG_E2E_LIMITED_KEY'), maxRetries: 3);
$refused = 0;
do {
    $error = failed('400', fn () => $limited->removeBackground(['image_file' => $photo, 'size' => 'huge']));
    $refused++;
} while (($error->headers['x-ratelimit-remaining'] ?? null) !== '0' && $refused < 100);
write('429-spent', ['refused' => $refused]);
saved('429', $limited->removeBackground(['image_file' => $photo, 'size' => 'small']));
