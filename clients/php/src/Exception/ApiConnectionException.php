<?php

declare(strict_types=1);

namespace ClearBG\Exception;

/** No answer came: the connection failed, was reset or closed early. */
class ApiConnectionException extends ClearBGException
{
}
