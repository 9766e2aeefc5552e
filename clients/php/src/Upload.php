<?php

declare(strict_types=1);

namespace ClearBG;

use GuzzleHttp\Psr7\LimitStream;
use GuzzleHttp\Psr7\Utils;
use Psr\Http\Message\StreamInterface;

/**
 * @internal One file to upload: a path (opened for each attempt), or a stream read again from the
 * position it had when the call began (when it can seek).
 */
final class Upload
{
    public string $filename;
    private ?string $path = null;
    private ?StreamInterface $source = null;
    private ?int $start = null;
    /** The caller's own resource: left open for them (a PSR-7 stream would close it when freed). */
    private bool $borrowed = false;

    public static function of(string $field, mixed $value): self
    {
        $upload = new self();
        if ($value instanceof \SplFileInfo) {
            $value = $value->getPathname();
        }
        if (is_string($value)) {
            if (strlen($value) > 4096 || str_contains($value, "\0")) {
                throw new \InvalidArgumentException("{$field}: a string is a path, and this one is not (to send bytes, "
                    . "pass GuzzleHttp\\Psr7\\Utils::streamFor(\$bytes), or 'image_file_b64' => base64_encode(\$bytes))");
            }
            if (!is_file($value)) {
                throw new \InvalidArgumentException("{$field}: no such file: {$value}");
            }
            $upload->path = $value;
            $upload->filename = basename($value);
            return $upload;
        }
        if (is_resource($value) || $value instanceof StreamInterface) {
            $stream = Utils::streamFor($value);
            $upload->source = $stream;
            $upload->borrowed = is_resource($value);
            $uri = $stream->getMetadata('uri');
            $upload->filename = is_string($uri) && $uri !== '' && !str_starts_with($uri, 'php://') ? basename($uri) : $field;
            $upload->start = $stream->isSeekable() ? $stream->tell() : null;
            return $upload;
        }
        throw new \InvalidArgumentException(
            "{$field} must be a path, an SplFileInfo, a stream resource (fopen) or a PSR-7 stream, not " . get_debug_type($value)
        );
    }

    public function rewindable(): bool
    {
        return $this->source === null || $this->start !== null;
    }

    /** After the call: the caller's resource is handed back open. */
    public function release(): void
    {
        if ($this->borrowed && $this->source !== null) {
            $this->source->detach();
            $this->source = null;
        }
    }

    public function stream(): StreamInterface
    {
        if ($this->path !== null) {
            return Utils::streamFor(Utils::tryFopen($this->path, 'rb'));
        }
        assert($this->source !== null);
        if ($this->start === null) {
            return $this->source;
        }
        // Guzzle rewinds a body before sending it: the window keeps "its start" where the caller's stream stood.
        return new LimitStream($this->source, -1, $this->start);
    }
}
