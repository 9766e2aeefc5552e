<?php

declare(strict_types=1);

namespace ClearBG\Exception;

/** 400: a parameter or the image; $code names which (invalid_size, invalid_file_type, ...). */
class BadRequestException extends ApiException
{
}
