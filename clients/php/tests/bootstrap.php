<?php

declare(strict_types=1);

// The classes come from Composer's autoloader (`composer install`, or `composer dump-autoload`,
// which needs no network); Guzzle from vendor/ when Composer installed it, else from Debian's
// php-guzzlehttp-guzzle on the include path (as `make test` runs it).
$autoload = __DIR__ . '/../vendor/autoload.php';
if (!is_file($autoload)) {
    fwrite(STDERR, "clients/php/vendor/autoload.php is missing: run `composer dump-autoload` (or `composer install`) in clients/php\n");
    exit(1);
}
require $autoload;
if (!class_exists(\GuzzleHttp\Client::class)) {
    require_once 'GuzzleHttp/autoload.php';
}
