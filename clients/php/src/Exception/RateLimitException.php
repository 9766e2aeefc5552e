<?php

declare(strict_types=1);

namespace ClearBG\Exception;

/** 429: the key's megapixel-images per minute; $retryAfter says when to try again. */
class RateLimitException extends ApiException
{
}
