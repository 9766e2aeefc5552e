<?php

declare(strict_types=1);

namespace ClearBG\Exception;

/** 409: idempotency_in_flight (retried), idempotency_result_evicted. */
class ConflictException extends ApiException
{
}
