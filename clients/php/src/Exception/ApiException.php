<?php

declare(strict_types=1);

namespace ClearBG\Exception;

/**
 * The server answered with an error status: one subclass per status (BadRequestException for
 * 400, ...), with what the body and headers said.
 *
 * `$code` (also getCode(), as PDOException does) is the server's machine-readable reason, e.g.
 * "insufficient_credits", or null when the body had none (a proxy's page).
 */
class ApiException extends ClearBGException
{
    /** The HTTP status, e.g. 402. */
    public int $status;
    /** @var string|null */
    public $code;
    public string $title;
    public string $detail;
    /** The gateway's X-Request-Id: quote it when asking for help. */
    public ?string $requestId;
    /** Seconds the server asked to wait (Retry-After), when it said. */
    public ?float $retryAfter;
    /** @var array<string, string> every answer header, lower-case names */
    public array $headers;
    /** The parsed JSON body, or the body as text when it was not JSON. */
    public mixed $body;

    /** @param array<string, string> $headers */
    public function __construct(int $status, ?string $code, string $title, string $detail, ?string $requestId = null,
        ?float $retryAfter = null, array $headers = [], mixed $body = null)
    {
        $suffix = $requestId !== null ? " (request id {$requestId})" : '';
        parent::__construct(sprintf('%d %s: %s%s', $status, $code ?? $title, $detail, $suffix));
        $this->status = $status;
        $this->code = $code;
        $this->title = $title;
        $this->detail = $detail;
        $this->requestId = $requestId;
        $this->retryAfter = $retryAfter;
        $this->headers = $headers;
        $this->body = $body;
    }

    /**
     * The exception for an answer: the class for its status, the fields from the body
     * {"errors":[{"title","code","detail"}]} when it has that shape.
     *
     * @param array<string, string> $headers lower-case names
     */
    public static function fromResponse(int $status, string $reason, array $headers, string $raw, ?float $retryAfter): self
    {
        $body = json_decode($raw, true);
        if ($body === null && json_last_error() !== JSON_ERROR_NONE) {
            $body = $raw; // not JSON: a proxy's or load balancer's page, reported with its status
        }
        $entry = is_array($body) && isset($body['errors'][0]) && is_array($body['errors'][0]) ? $body['errors'][0] : null;
        $title = $reason !== '' ? $reason : "HTTP {$status}";
        if ($entry !== null && is_string($entry['code'] ?? null)) {
            $code = $entry['code'];
            $title = isset($entry['title']) && $entry['title'] !== '' ? (string) $entry['title'] : $title;
            $detail = isset($entry['detail']) && $entry['detail'] !== '' ? (string) $entry['detail'] : $title;
        } else {
            $code = null;
            $snippet = trim((string) preg_replace('/\s+/', ' ', (string) preg_replace('/<[^>]*>/', ' ', $raw)));
            $snippet = mb_substr($snippet, 0, 200);
            $detail = "HTTP {$status} {$title} without a ClearBG error body" . ($snippet !== '' ? ": {$snippet}" : '');
        }
        $class = self::classFor($status);
        return new $class($status, $code, $title, $detail, $headers['x-request-id'] ?? null, $retryAfter, $headers, $body);
    }

    /** @return class-string<ApiException> */
    public static function classFor(int $status): string
    {
        switch ($status) {
            case 400: return BadRequestException::class;
            case 401: return AuthenticationException::class;
            case 402: return InsufficientCreditsException::class;
            case 403: return PermissionDeniedException::class;
            case 409: return ConflictException::class;
            case 422: return UnprocessableEntityException::class;
            case 429: return RateLimitException::class;
            case 503: return ServiceUnavailableException::class;
            default: return $status >= 500 ? InternalServerException::class : self::class;
        }
    }
}
