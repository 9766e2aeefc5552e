// Every error status maps to its class, with code/title/detail/requestId from the body and
// headers; a body that is not ClearBG's shape still gives a readable error.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import * as sdk from "clearbg";
import { error, startFakeServer } from "./fake-server.mjs";

let server;
before(async () => {
  server = await startFakeServer();
});
after(() => server.close());

const client = () => new sdk.ClearBG({ apiKey: "k", baseUrl: server.url, maxRetries: 0 });

const CASES = [
  [400, "invalid_size", sdk.BadRequestError],
  [401, "invalid_api_key", sdk.AuthenticationError],
  [402, "insufficient_credits", sdk.InsufficientCreditsError],
  [403, "ip_rate_limit_exceeded", sdk.PermissionDeniedError],
  [409, "idempotency_in_flight", sdk.ConflictError],
  [422, "idempotency_key_reused", sdk.UnprocessableEntityError],
  [429, "rate_limit_exceeded", sdk.RateLimitError],
  [500, "internal", sdk.InternalServerError],
  [502, "bad_gateway", sdk.InternalServerError],
  [503, "overloaded", sdk.ServiceUnavailableError],
  [504, "timeout", sdk.InternalServerError],
  [418, "teapot", sdk.APIError],
];

for (const [status, code, Class] of CASES) {
  test(`${status} is ${Class.name} with code, title, detail and request id`, async () => {
    server.script([error(status, code, { title: `Title ${status}`, detail: `Detail ${status}`, headers: { "retry-after": "7" } })]);
    const err = await client().removeBackground({ imageUrl: "https://example.com/a.jpg" }).catch((e) => e);
    assert.ok(err instanceof Class, `${err?.constructor?.name}: ${err}`);
    assert.equal(err.constructor, Class, "the most specific class");
    assert.ok(err instanceof sdk.APIError && err instanceof sdk.ClearBGError && err instanceof Error);
    assert.equal(err.name, Class.name);
    assert.equal(err.status, status);
    assert.equal(err.code, code);
    assert.equal(err.title, `Title ${status}`);
    assert.equal(err.detail, `Detail ${status}`);
    assert.equal(err.requestId, `req-${status}`);
    assert.equal(err.retryAfter, 7);
    assert.equal(err.headers.get("x-request-id"), `req-${status}`);
    assert.deepEqual(err.body, { errors: [{ title: `Title ${status}`, code, detail: `Detail ${status}` }] });
    assert.match(err.message, new RegExp(`^${status} ${code}: Detail ${status} \\(request id req-${status}\\)$`));
  });
}

test("a proxy's HTML page still gives the status and a readable detail", async () => {
  server.script([{ status: 502, headers: { "content-type": "text/html" }, body: "<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>" }]);
  const err = await client().account().catch((e) => e);
  assert.ok(err instanceof sdk.InternalServerError, String(err));
  assert.equal(err.status, 502);
  assert.equal(err.code, undefined);
  assert.equal(err.title, "Bad Gateway");
  assert.equal(err.detail, "HTTP 502 Bad Gateway without a ClearBG error body: 502 Bad Gateway nginx");
  assert.equal(err.requestId, undefined);
  assert.equal(typeof err.body, "string");
});

test("JSON that is not the errors shape, and an empty body, are readable too", async () => {
  server.script([{ status: 400, headers: { "content-type": "application/json" }, body: '{"message":"nope"}' }]);
  const err = await client().account().catch((e) => e);
  assert.ok(err instanceof sdk.BadRequestError);
  assert.equal(err.code, undefined);
  assert.match(err.detail, /^HTTP 400 Bad Request without a ClearBG error body: \{"message":"nope"\}$/);
  assert.deepEqual(err.body, { message: "nope" });

  server.script([{ status: 503, headers: {}, body: "" }]);
  const empty = await client().account().catch((e) => e);
  assert.ok(empty instanceof sdk.ServiceUnavailableError);
  assert.equal(empty.detail, "HTTP 503 Service Unavailable without a ClearBG error body");
});

test("a refused connection is an APIConnectionError, not a bare fetch error", async () => {
  const closed = await startFakeServer();
  const url = closed.url;
  await closed.close();
  const c = new sdk.ClearBG({ apiKey: "k", baseUrl: url, maxRetries: 0 });
  const err = await c.account().catch((e) => e);
  assert.ok(err instanceof sdk.APIConnectionError, String(err));
  assert.ok(!(err instanceof sdk.APITimeoutError));
  assert.match(err.message, /ECONNREFUSED/);
  assert.ok(err.cause);
});

test("an answer slower than the timeout is an APITimeoutError", async () => {
  server.script([{ ...error(500, "x"), delayMs: 1500 }]);
  const c = new sdk.ClearBG({ apiKey: "k", baseUrl: server.url, maxRetries: 0, timeout: 200 });
  const started = Date.now();
  const err = await c.account().catch((e) => e);
  assert.ok(err instanceof sdk.APITimeoutError && err instanceof sdk.APIConnectionError, String(err));
  assert.match(err.message, /timed out after 200 ms/);
  assert.ok(Date.now() - started < 1400, "gave up at the timeout, not at the answer");
});
