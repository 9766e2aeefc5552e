<?php

declare(strict_types=1);

namespace ClearBG;

/** Where the subject is in the result, in output pixels (X-Foreground-*). */
final class Foreground
{
    public function __construct(
        public int $top,
        public int $left,
        public int $width,
        public int $height,
    ) {
    }
}
