<?php

// The fake server's router (`php -S 127.0.0.1:PORT fake_router.php`, FAKE_DIR in the environment):
// records each request as FAKE_DIR/requests/NNNN.json and answers with the next reply of
// FAKE_DIR/script.json (the last one again when one is left). See FakeServer.

declare(strict_types=1);

$dir = getenv('FAKE_DIR');
$lock = fopen("{$dir}/lock", 'c');
flock($lock, LOCK_EX);
$script = json_decode((string) file_get_contents("{$dir}/script.json"), true);
$reply = count($script) > 1 ? array_shift($script) : $script[0];
file_put_contents("{$dir}/script.json", json_encode($script));
$headers = [];
foreach (getallheaders() as $name => $value) {
    $headers[strtolower($name)] = $value;
}
$number = count(glob("{$dir}/requests/*.json"));
file_put_contents(sprintf('%s/requests/%04d.json', $dir, $number), json_encode([
    'method' => $_SERVER['REQUEST_METHOD'],
    'path' => $_SERVER['REQUEST_URI'],
    'headers' => $headers,
    'body' => base64_encode((string) file_get_contents('php://input')),
    'at' => microtime(true),
]));
flock($lock, LOCK_UN);

if (!empty($reply['delay'])) {
    usleep((int) ($reply['delay'] * 1e6));
}
http_response_code($reply['status']);
foreach ($reply['headers'] as $name => $value) {
    header("{$name}: {$value}");
}
echo base64_decode($reply['body']);
