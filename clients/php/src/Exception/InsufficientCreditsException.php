<?php

declare(strict_types=1);

namespace ClearBG\Exception;

/** 402: no credits (insufficient_credits) or no free previews left (insufficient_free_calls). */
class InsufficientCreditsException extends ApiException
{
}
