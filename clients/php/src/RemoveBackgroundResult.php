<?php

declare(strict_types=1);

namespace ClearBG;

/**
 * The cut-out: `$data` is the file the server sent (PNG, JPG, WebP or ZIP, as `$contentType`
 * says), and every figure the answer's headers gave. A header the server did not send is null
 * (0 for the credits).
 */
final class RemoveBackgroundResult
{
    /** The picture's bytes. */
    public string $data;
    public string $contentType;
    /** X-Width, X-Height: the output's size. */
    public ?int $width;
    public ?int $height;
    /** X-Type (person, product, animal, car, other, or e.g. animal-dog with type_level 2); null with type_level none. */
    public ?string $type;
    /** X-Credits-Charged: 0 for a preview. */
    public float $creditsCharged;
    /** X-Credits-Remaining: the balance after this call. */
    public float $creditsRemaining;
    public ?Foreground $foreground;
    public ?RateLimit $rateLimit;
    /** X-Request-Id: quote it when asking for help. */
    public ?string $requestId;
    /** True when the server answered from an earlier call with the same Idempotency-Key (charged once, then). */
    public bool $replayed;
    /** The Idempotency-Key this call was sent with. */
    public string $idempotencyKey;
    /** @var array<string, string> every answer header, lower-case names */
    public array $headers;

    /** @param array<string, string> $headers lower-case names */
    public function __construct(string $data, array $headers, string $idempotencyKey)
    {
        $this->data = $data;
        $this->headers = $headers;
        $this->idempotencyKey = $idempotencyKey;
        $this->contentType = $headers['content-type'] ?? 'application/octet-stream';
        $this->width = self::int($headers['x-width'] ?? null);
        $this->height = self::int($headers['x-height'] ?? null);
        $this->type = $headers['x-type'] ?? null;
        $this->creditsCharged = self::number($headers['x-credits-charged'] ?? null);
        $this->creditsRemaining = self::number($headers['x-credits-remaining'] ?? null);
        $this->foreground = isset($headers['x-foreground-top']) ? new Foreground(
            (int) self::int($headers['x-foreground-top']),
            (int) self::int($headers['x-foreground-left'] ?? null),
            (int) self::int($headers['x-foreground-width'] ?? null),
            (int) self::int($headers['x-foreground-height'] ?? null),
        ) : null;
        $this->rateLimit = isset($headers['x-ratelimit-limit']) ? new RateLimit(
            self::int($headers['x-ratelimit-limit']),
            self::int($headers['x-ratelimit-remaining'] ?? null),
            self::int($headers['x-ratelimit-reset'] ?? null),
        ) : null;
        $this->requestId = $headers['x-request-id'] ?? null;
        $this->replayed = strtolower($headers['idempotent-replayed'] ?? '') === 'true';
    }

    /** Writes the picture to $path (its folder must exist) and returns the path. */
    public function save(string $path): string
    {
        if (@file_put_contents($path, $this->data) !== strlen($this->data)) {
            $error = error_get_last();
            throw new \RuntimeException("Could not write {$path}: " . ($error['message'] ?? 'unknown error'));
        }
        return $path;
    }

    private static function int(?string $value): ?int
    {
        return $value !== null && preg_match('/^\s*-?\d+\s*$/', $value) ? (int) $value : null;
    }

    private static function number(?string $value): float
    {
        return $value !== null && is_numeric(trim($value)) ? (float) trim($value) : 0.0;
    }
}
