<?php

declare(strict_types=1);

namespace ClearBG\Exception;

/** 403: e.g. too many free previews from this IP address (ip_rate_limit_exceeded). */
class PermissionDeniedException extends ApiException
{
}
