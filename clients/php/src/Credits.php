<?php

declare(strict_types=1);

namespace ClearBG;

/** An account's credits (GET /v1.0/account). */
final class Credits
{
    public function __construct(
        public float $total,
        public float $subscription,
        public float $payg,
        public float $enterprise,
    ) {
    }
}
