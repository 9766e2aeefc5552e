<?php

declare(strict_types=1);

namespace ClearBG\Exception;

/** 401: missing or invalid API key (missing_api_key, invalid_api_key). */
class AuthenticationException extends ApiException
{
}
