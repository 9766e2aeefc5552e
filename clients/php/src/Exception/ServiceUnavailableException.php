<?php

declare(strict_types=1);

namespace ClearBG\Exception;

/** 503: overloaded or shutting down; $retryAfter says when to try again. */
class ServiceUnavailableException extends ApiException
{
}
