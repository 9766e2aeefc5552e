<?php

declare(strict_types=1);

namespace ClearBG\Exception;

/** 422: idempotency_key_reused (the key was sent before with other parameters). */
class UnprocessableEntityException extends ApiException
{
}
