<?php

declare(strict_types=1);

namespace ClearBG;

/** The key's megapixel-images per minute (X-RateLimit-*); $reset in Unix seconds. */
final class RateLimit
{
    public function __construct(
        public ?int $limit,
        public ?int $remaining,
        public ?int $reset,
    ) {
    }
}
