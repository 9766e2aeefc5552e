<?php

declare(strict_types=1);

namespace ClearBG;

use ClearBG\Exception\ApiConnectionException;
use ClearBG\Exception\ApiException;
use ClearBG\Exception\ApiTimeoutException;
use ClearBG\Exception\ClearBGException;
use GuzzleHttp\ClientInterface;
use GuzzleHttp\Exception\GuzzleException;
use GuzzleHttp\Exception\TransferException;
use Psr\Http\Message\ResponseInterface;

/**
 * The ClearBG REST API: POST /v1.0/removebg and GET /v1.0/account, through Guzzle.
 *
 *     $client = new ClearBG\Client(apiKey: 'YOUR_API_KEY', baseUrl: 'http://127.0.0.1:8080');
 *     $result = $client->removeBackground(['image_file' => 'photo.jpg', 'size' => 'auto']);
 *     $result->save('photo-no-bg.png');
 */
final class Client
{
    public const DEFAULT_BASE_URL = 'https://api.clearbg.ai';
    /** Seconds for one attempt: a 22 MB upload over a slow link plus a wait in the server's queue (the gateway allows 300 s). */
    public const DEFAULT_TIMEOUT = 300.0;
    /** Retries after the first attempt (so up to 3 attempts). */
    public const DEFAULT_MAX_RETRIES = 2;
    public const REMOVEBG_PATH = '/v1.0/removebg';
    public const ACCOUNT_PATH = '/v1.0/account';

    /** The API's text fields, sent in this order. */
    public const TEXT_FIELDS = [
        'image_url', 'image_file_b64', 'size', 'type', 'type_level', 'format', 'bg_color', 'bg_image_url',
        'channels', 'crop', 'crop_margin', 'scale', 'position', 'roi', 'add_shadow', 'shadow_type',
        'shadow_opacity', 'semitransparency',
    ];
    /** The API's file fields: a path, an SplFileInfo, a stream resource or a PSR-7 stream. */
    public const FILE_FIELDS = ['image_file', 'bg_image_file'];

    private const RETRY_STATUSES = [408, 429, 500, 502, 503, 504];
    private const BACKOFF_BASE = 0.5;
    private const BACKOFF_MAX = 8.0;

    private string $baseUrl;
    private string $apiKey;
    private float $timeout;
    private int $maxRetries;
    private ClientInterface $http;
    /** @var callable|null */
    private $logger;
    /** microtime(true) until which a Retry-After holds every call of this client. */
    private float $pausedUntil = 0.0;

    /**
     * @param string|null $apiKey default: the CLEARBG_API_KEY environment variable (none: a ClearBGException at once)
     * @param string|null $baseUrl default: CLEARBG_BASE_URL, else https://api.clearbg.ai
     * @param float|null $timeout seconds for one attempt (default 300)
     * @param int|null $maxRetries retries of a failed call (default 2)
     * @param ClientInterface|null $httpClient your own Guzzle client (proxies, certificates, middleware)
     * @param callable(string):void|null $logger receives a line for every retry
     */
    public function __construct(
        ?string $apiKey = null,
        ?string $baseUrl = null,
        ?float $timeout = null,
        ?int $maxRetries = null,
        ?ClientInterface $httpClient = null,
        ?callable $logger = null,
    ) {
        $key = $apiKey ?? (getenv('CLEARBG_API_KEY') ?: null);
        if ($key === null || trim($key) === '') {
            throw new ClearBGException(
                'No API key: pass new ClearBG\Client(apiKey: ...) or set CLEARBG_API_KEY (keys come from your '
                . 'ClearBG dashboard, or `clearbg-admin create-key` on your own server).'
            );
        }
        $this->apiKey = trim($key);
        $url = $baseUrl !== null && $baseUrl !== '' ? $baseUrl : (getenv('CLEARBG_BASE_URL') ?: self::DEFAULT_BASE_URL);
        $this->baseUrl = rtrim(trim($url), '/');
        if (!preg_match('#^https?://#i', $this->baseUrl)) {
            throw new ClearBGException("baseUrl must start with http:// or https://, got '{$this->baseUrl}'");
        }
        $this->timeout = $timeout ?? self::DEFAULT_TIMEOUT;
        if ($this->timeout <= 0) {
            throw new \InvalidArgumentException("timeout must be a positive number of seconds, got {$this->timeout}");
        }
        $this->maxRetries = $maxRetries ?? self::DEFAULT_MAX_RETRIES;
        if ($this->maxRetries < 0) {
            throw new \InvalidArgumentException("maxRetries must be 0 or more, got {$this->maxRetries}");
        }
        $this->http = $httpClient ?? new \GuzzleHttp\Client();
        $this->logger = $logger;
    }

    /** The server's address, without a trailing slash. */
    public function getBaseUrl(): string
    {
        return $this->baseUrl;
    }

    /**
     * POST /v1.0/removebg: the photo with its background removed, and what the server said.
     *
     * @param array<string, mixed> $params the API's fields under their REST names: one source
     *     (image_file, image_url or image_file_b64) and any options (size, type, format, bg_color,
     *     ...); null leaves a field out, booleans are sent as true/false, and 'extra_fields' is
     *     an array of further fields sent as given
     * @param array{idempotency_key?: string, timeout?: float, max_retries?: int} $options for this call
     * @throws ApiException for an error answer (a subclass per status)
     * @throws ApiConnectionException when no answer came (ApiTimeoutException: not in time)
     */
    public function removeBackground(array $params, array $options = []): RemoveBackgroundResult
    {
        self::checkOptions($options, ['idempotency_key', 'timeout', 'max_retries']);
        $fields = [];
        $files = [];
        foreach ($params as $name => $value) {
            if ($value === null) {
                continue;
            }
            if (in_array($name, self::FILE_FIELDS, true)) {
                $files[$name] = Upload::of($name, $value);
            } elseif (in_array($name, self::TEXT_FIELDS, true)) {
                $fields[$name] = self::formValue($name, $value);
            } elseif ($name === 'extra_fields' && is_array($value)) {
                foreach ($value as $extra => $extraValue) {
                    if ($extraValue !== null) {
                        $fields[(string) $extra] = self::formValue((string) $extra, $extraValue);
                    }
                }
            } else {
                throw new \InvalidArgumentException(self::unknownParameter((string) $name));
            }
        }
        $ordered = [];
        foreach (self::TEXT_FIELDS as $name) {
            if (isset($fields[$name])) {
                $ordered[$name] = $fields[$name];
                unset($fields[$name]);
            }
        }
        $ordered += $fields;
        $key = $options['idempotency_key'] ?? self::uuid4();
        $rewindable = true;
        foreach ($files as $upload) {
            $rewindable = $rewindable && $upload->rewindable();
        }
        try {
            $response = $this->withRetries("POST " . self::REMOVEBG_PATH . " [{$key}]", $options, $rewindable,
            function (float $timeout) use ($ordered, $files, $key): ResponseInterface {
                $multipart = [];
                foreach ($ordered as $name => $value) {
                    $multipart[] = ['name' => $name, 'contents' => $value];
                }
                foreach ($files as $name => $upload) {
                    $multipart[] = [
                        'name' => $name, 'contents' => $upload->stream(), 'filename' => $upload->filename,
                        'headers' => ['Content-Type' => 'application/octet-stream'],
                    ];
                }
                return $this->send('POST', self::REMOVEBG_PATH, $timeout,
                    ['multipart' => $multipart, 'headers' => $this->headers() + ['Idempotency-Key' => $key]]);
            });
        } finally {
            foreach ($files as $upload) {
                $upload->release();
            }
        }
        return new RemoveBackgroundResult((string) $response->getBody(), self::lowerHeaders($response), $key);
    }

    /**
     * GET /v1.0/account: credits (total, subscription, payg, enterprise) and free calls.
     *
     * @param array{timeout?: float, max_retries?: int} $options for this call
     */
    public function account(array $options = []): Account
    {
        self::checkOptions($options, ['timeout', 'max_retries']);
        $response = $this->withRetries('GET ' . self::ACCOUNT_PATH, $options, true,
            fn (float $timeout): ResponseInterface => $this->send('GET', self::ACCOUNT_PATH, $timeout, ['headers' => $this->headers()]));
        $raw = (string) $response->getBody();
        $document = json_decode($raw, true);
        $attributes = is_array($document) ? ($document['data']['attributes'] ?? null) : null;
        if (!is_array($attributes) || !is_array($attributes['credits'] ?? null)) {
            throw new ClearBGException('GET ' . self::ACCOUNT_PATH . ' answered a body of an unexpected shape: ' . substr($raw, 0, 200));
        }
        $credits = $attributes['credits'];
        $api = is_array($attributes['api'] ?? null) ? $attributes['api'] : [];
        return new Account(
            new Credits(
                (float) ($credits['total'] ?? 0),
                (float) ($credits['subscription'] ?? 0),
                (float) ($credits['payg'] ?? 0),
                (float) ($credits['enterprise'] ?? 0),
            ),
            (int) ($api['free_calls'] ?? 0),
            (string) ($api['sizes'] ?? ''),
            self::lowerHeaders($response)['x-request-id'] ?? null,
        );
    }

    /** Seconds from a Retry-After value (seconds, or an HTTP date); null when absent or unreadable. */
    public static function parseRetryAfter(?string $value, ?float $now = null): ?float
    {
        if ($value === null || trim($value) === '') {
            return null;
        }
        $text = trim($value);
        if (preg_match('/^\d+(\.\d+)?$/', $text)) {
            return (float) $text;
        }
        $when = \DateTimeImmutable::createFromFormat(\DateTimeInterface::RFC7231, $text, new \DateTimeZone('UTC'));
        if ($when === false) {
            return null;
        }
        return max(0.0, $when->getTimestamp() - ($now ?? microtime(true)));
    }

    /** The wait before retry number $attempt + 1 when the server named none: 0.5 s * 2^n, at most 8 s, less up to a quarter at random. */
    public static function backoff(int $attempt): float
    {
        $base = min(self::BACKOFF_MAX, self::BACKOFF_BASE * (2 ** $attempt));
        return $base * (1 - 0.25 * (mt_rand() / mt_getrandmax()));
    }

    public static function isRetryable(ClearBGException $error): bool
    {
        if ($error instanceof ApiConnectionException) {
            return true;
        }
        if (!$error instanceof ApiException) {
            return false;
        }
        return in_array($error->status, self::RETRY_STATUSES, true)
            || ($error->status === 409 && $error->code === 'idempotency_in_flight');
    }

    /** @return array<string, string> */
    private function headers(): array
    {
        return ['X-Api-Key' => $this->apiKey, 'User-Agent' => 'clearbg-php/' . Version::VERSION];
    }

    /** @param array<string, mixed> $request */
    private function send(string $method, string $path, float $timeout, array $request): ResponseInterface
    {
        $url = $this->baseUrl . $path;
        try {
            return $this->http->request($method, $url, $request + [
                'http_errors' => false,
                'allow_redirects' => false,
                'timeout' => $timeout,
                'connect_timeout' => $timeout,
            ]);
        } catch (TransferException $e) {
            $context = method_exists($e, 'getHandlerContext') ? $e->getHandlerContext() : [];
            if (($context['errno'] ?? null) === 28 || stripos($e->getMessage(), 'timed out') !== false) {
                throw new ApiTimeoutException("No answer within the timeout ({$timeout} s): {$url}", 0, $e);
            }
            throw new ApiConnectionException("Connection error ({$e->getMessage()}): {$url}", 0, $e);
        } catch (GuzzleException $e) {
            throw new ApiConnectionException("Connection error ({$e->getMessage()}): {$url}", 0, $e);
        }
    }

    /**
     * @param array<string, mixed> $options
     * @param callable(float): ResponseInterface $attempt
     */
    private function withRetries(string $label, array $options, bool $rewindable, callable $attempt): ResponseInterface
    {
        $retries = (int) ($options['max_retries'] ?? $this->maxRetries);
        $timeout = (float) ($options['timeout'] ?? $this->timeout);
        for ($number = 0; ; $number++) {
            $this->waitForPause();
            try {
                $response = $attempt($timeout);
                $status = $response->getStatusCode();
                if ($status >= 200 && $status < 300) {
                    return $response;
                }
                $headers = self::lowerHeaders($response);
                $error = ApiException::fromResponse($status, $response->getReasonPhrase(), $headers,
                    (string) $response->getBody(), self::parseRetryAfter($headers['retry-after'] ?? null));
            } catch (ApiConnectionException $e) {
                $error = $e;
            }
            $retryAfter = $error instanceof ApiException ? $error->retryAfter : null;
            if ($retryAfter !== null && $error instanceof ApiException && in_array($error->status, [429, 503], true)) {
                // This call's retry and every later call of this client wait: the limit is the key's, not the call's.
                $this->pausedUntil = max($this->pausedUntil, microtime(true) + $retryAfter);
            }
            if ($number >= $retries || !self::isRetryable($error)) {
                throw $error;
            }
            if (!$rewindable) {
                $this->log("{$label}: not retrying ({$error->getMessage()}): the upload was a stream that cannot be rewound");
                throw $error;
            }
            $delay = $retryAfter ?? self::backoff($number);
            $this->log(sprintf('%s: retrying in %.3f s after %s', $label, $delay, (new \ReflectionClass($error))->getShortName()));
            if ($this->pausedUntil <= microtime(true)) {
                usleep((int) round($delay * 1e6));
            }
        }
    }

    private function waitForPause(): void
    {
        $left = $this->pausedUntil - microtime(true);
        if ($left > 0) {
            usleep((int) ceil($left * 1e6));
        }
    }

    private function log(string $line): void
    {
        if ($this->logger !== null) {
            ($this->logger)("clearbg: {$line}");
        }
    }

    /** @return array<string, string> */
    private static function lowerHeaders(ResponseInterface $response): array
    {
        $headers = [];
        foreach ($response->getHeaders() as $name => $values) {
            $headers[strtolower((string) $name)] = implode(', ', $values);
        }
        return $headers;
    }

    private static function formValue(string $name, mixed $value): string
    {
        if (is_bool($value)) {
            return $value ? 'true' : 'false';
        }
        if (is_scalar($value) || $value instanceof \Stringable) {
            return (string) $value;
        }
        throw new \InvalidArgumentException("{$name} must be a string, number or boolean, not " . get_debug_type($value));
    }

    private static function unknownParameter(string $name): string
    {
        $snake = strtolower((string) preg_replace('/(?<!^)[A-Z]/', '_$0', $name));
        $known = array_merge(self::FILE_FIELDS, self::TEXT_FIELDS, ['extra_fields']);
        $hint = $snake !== $name && in_array($snake, $known, true) ? " (the API's name is '{$snake}')" : '';
        return "unknown parameter '{$name}'{$hint}; known: " . implode(', ', $known);
    }

    /**
     * @param array<string, mixed> $options
     * @param list<string> $known
     */
    private static function checkOptions(array $options, array $known): void
    {
        foreach (array_keys($options) as $name) {
            if (!in_array($name, $known, true)) {
                throw new \InvalidArgumentException("unknown option '{$name}'; known: " . implode(', ', $known));
            }
        }
    }

    private static function uuid4(): string
    {
        $bytes = random_bytes(16);
        $bytes[6] = chr((ord($bytes[6]) & 0x0f) | 0x40);
        $bytes[8] = chr((ord($bytes[8]) & 0x3f) | 0x80);
        return vsprintf('%s%s-%s-%s-%s-%s%s%s', str_split(bin2hex($bytes), 4));
    }
}
