<?php

declare(strict_types=1);

namespace ClearBG\Exception;

/** Every failure the SDK throws is a ClearBGException (also: no API key configured). */
class ClearBGException extends \RuntimeException
{
}
