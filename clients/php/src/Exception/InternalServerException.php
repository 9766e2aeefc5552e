<?php

declare(strict_types=1);

namespace ClearBG\Exception;

/** 500 and other 5xx answers (503 aside): nothing was charged. */
class InternalServerException extends ApiException
{
}
