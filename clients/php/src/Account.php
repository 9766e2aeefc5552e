<?php

declare(strict_types=1);

namespace ClearBG;

/** GET /v1.0/account: the credits, this month's free preview calls left, the sizes allowed. */
final class Account
{
    public function __construct(
        public Credits $credits,
        public int $freeCalls,
        public string $sizes,
        public ?string $requestId,
    ) {
    }
}
