// Retry rules: which answers are retried, how long each wait is (Retry-After first, else
// exponential backoff), one Idempotency-Key per logical call, and the pause shared by a
// client's concurrent calls.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import * as sdk from "clearbg";
import { error, ok, startFakeServer } from "./fake-server.mjs";

const ACCOUNT = { status: 200, headers: { "content-type": "application/json" }, body: '{"data":{"attributes":{"credits":{"total":1},"api":{"free_calls":0,"sizes":"all"}}}}' };
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let server;
before(async () => {
  server = await startFakeServer();
});
after(() => server.close());

function fresh(script, options = {}) {
  server.requests.length = 0;
  server.script(script);
  return new sdk.ClearBG({ apiKey: "k", baseUrl: server.url, ...options });
}

const gaps = () => server.requests.slice(1).map((r, i) => r.at - server.requests[i].at);

test("429 with Retry-After: waits that long, same Idempotency-Key, then succeeds", async () => {
  const c = fresh([error(429, "rate_limit_exceeded", { headers: { "retry-after": "1" } }), ok()]);
  const result = await c.removeBackground({ imageUrl: "https://example.com/a.jpg" });
  assert.equal(server.requests.length, 2);
  const [first, second] = server.requests;
  assert.match(first.headers["idempotency-key"], UUID4);
  assert.equal(second.headers["idempotency-key"], first.headers["idempotency-key"]);
  assert.equal(result.idempotencyKey, first.headers["idempotency-key"]);
  // The backoff's first wait would be under 0.5 s: at least 1 s is Retry-After's.
  assert.ok(gaps()[0] >= 1000, `waited ${gaps()[0]} ms for Retry-After: 1`);
  assert.equal(result.width, 321);
});

test("Retry-After as an HTTP date is honoured", async () => {
  const when = new Date(Date.now() + 2000).toUTCString(); // whole seconds: 1-2 s from now
  const c = fresh([error(503, "overloaded", { headers: { "retry-after": when } }), ok()]);
  await c.removeBackground({ imageUrl: "https://example.com/a.jpg" });
  const [gap] = gaps();
  assert.ok(gap >= 900, `waited ${gap} ms until ${when}`);
});

test("without Retry-After: exponential backoff from 0.5 s", async () => {
  const c = fresh([error(500, "internal"), error(502, "bad_gateway"), ok()]);
  await c.removeBackground({ imageUrl: "https://example.com/a.jpg" });
  assert.equal(server.requests.length, 3);
  const [g1, g2] = gaps();
  // 0.5 s then 1 s, each less up to a quarter: the second is longer than the first can be.
  assert.ok(g1 >= 370, `first wait ${g1} ms (0.5 s less jitter)`);
  assert.ok(g2 >= 740, `second wait ${g2} ms (1 s less jitter)`);
  const keys = new Set(server.requests.map((r) => r.headers["idempotency-key"]));
  assert.equal(keys.size, 1, "one key for the three attempts");
});

test("every retryable status is retried; maxRetries bounds the attempts", async () => {
  for (const [status, code] of [[408, "timeout"], [409, "idempotency_in_flight"], [429, "r"], [500, "i"], [502, "b"], [503, "o"], [504, "g"]]) {
    const c = fresh([error(status, code, { headers: { "retry-after": "0" } })], { maxRetries: 2 });
    const err = await c.removeBackground({ imageUrl: "https://example.com/a.jpg" }).catch((e) => e);
    assert.equal(err.status, status);
    assert.equal(server.requests.length, 3, `${status}: 1 attempt + 2 retries`);
  }
  const c = fresh([error(503, "overloaded", { headers: { "retry-after": "0" } })], { maxRetries: 0 });
  await assert.rejects(c.account(), sdk.ServiceUnavailableError);
  assert.equal(server.requests.length, 1);
  const c5 = fresh([error(503, "overloaded", { headers: { "retry-after": "0" } })], { maxRetries: 2 });
  await assert.rejects(c5.account({ maxRetries: 4 }), sdk.ServiceUnavailableError);
  assert.equal(server.requests.length, 5, "per-call maxRetries");
});

test("400, 401, 402, 403, 422 and other 409s fail at once", async () => {
  for (const [status, code] of [[400, "invalid_size"], [401, "invalid_api_key"], [402, "insufficient_credits"], [403, "ip_rate_limit_exceeded"], [409, "conflict"], [422, "idempotency_key_reused"]]) {
    const c = fresh([error(status, code, { headers: { "retry-after": "0" } }), ok()]);
    const err = await c.removeBackground({ imageUrl: "https://example.com/a.jpg" }).catch((e) => e);
    assert.equal(err.status, status);
    assert.equal(server.requests.length, 1, `${status} is not retried`);
  }
});

test("a reset connection is retried with the same key and the same upload", async () => {
  const c = fresh(["reset", ok()]);
  const photo = Buffer.from("photo bytes ".repeat(1000));
  const result = await c.removeBackground({ imageFile: photo });
  assert.equal(result.creditsCharged, 1);
  assert.equal(server.requests.length, 2);
  const [first, second] = server.requests;
  assert.equal(first.headers["idempotency-key"], second.headers["idempotency-key"]);
  assert.deepEqual(Buffer.from(await second.form.get("image_file").arrayBuffer()), photo);
});

test("a timed-out attempt is retried; giving up throws APITimeoutError", async () => {
  const c = fresh([{ ...ok(), delayMs: 800 }, ok()], { timeout: 300 });
  const result = await c.removeBackground({ imageUrl: "https://example.com/a.jpg" });
  assert.equal(result.width, 321);
  assert.equal(server.requests.length, 2);
  assert.equal(server.requests[0].headers["idempotency-key"], server.requests[1].headers["idempotency-key"]);

  const slow = fresh([{ ...ok(), delayMs: 800 }], { timeout: 200, maxRetries: 1 });
  await assert.rejects(slow.removeBackground({ imageUrl: "https://example.com/a.jpg" }), sdk.APITimeoutError);
  assert.equal(server.requests.length, 2);
});

test("each logical call has its own fresh key; a given key is used as is", async () => {
  const c = fresh([ok()]);
  await c.removeBackground({ imageUrl: "https://example.com/a.jpg" });
  await c.removeBackground({ imageUrl: "https://example.com/a.jpg" });
  await c.removeBackground({ imageUrl: "https://example.com/a.jpg" }, { idempotencyKey: "order-1042-photo-3" });
  const [a, b, mine] = server.requests.map((r) => r.headers["idempotency-key"]);
  assert.match(a, UUID4);
  assert.match(b, UUID4);
  assert.notEqual(a, b);
  assert.equal(mine, "order-1042-photo-3");
  server.script([ACCOUNT]);
  await c.account();
  assert.equal(server.requests.at(-1).headers["idempotency-key"], undefined, "GET /v1.0/account carries none");
});

test("a 429's Retry-After pauses the client's other calls too (one shared gate)", async () => {
  // The first request is refused for 1 s; the other calls, started 100 ms later, must not
  // reach the server before that second is over.
  const c = fresh([error(429, "rate_limit_exceeded", { headers: { "retry-after": "1" } }), ok()], { maxRetries: 3 });
  const first = c.removeBackground({ imageUrl: "https://example.com/1.jpg" });
  await new Promise((resolve) => setTimeout(resolve, 100));
  await Promise.all([first, c.removeBackground({ imageUrl: "https://example.com/2.jpg" }), c.removeBackground({ imageUrl: "https://example.com/3.jpg" })]);
  const refusedAt = server.requests[0].at;
  const later = server.requests.slice(1);
  assert.equal(later.length, 3);
  for (const r of later) assert.ok(r.at - refusedAt >= 1000, `a request came ${r.at - refusedAt} ms after the 429`);
});

/** A client log that resolves `seen` once the first call has its 429 (the others start after it, on any machine). */
function refusedSignal() {
  let done;
  const seen = new Promise((resolve) => (done = resolve));
  return { seen, log: (line) => line.includes("retrying in") && done() };
}

test("after a Retry-After, calls go one at a time and the refused call first", async () => {
  // The first request is refused for 1 s; two calls started meanwhile wait at the gate. When it
  // opens, the refused call must go first and alone (the others wait for its answer), so newer
  // calls cannot keep overtaking it at a limit they share.
  const gate = refusedSignal();
  const c = fresh([error(429, "rate_limit_exceeded", { headers: { "retry-after": "1" } }), { ...ok(), delayMs: 300 }], { maxRetries: 3, log: gate.log });
  const first = c.removeBackground({ imageUrl: "https://example.com/1.jpg" });
  await gate.seen;
  const others = [2, 3].map((n) => c.removeBackground({ imageUrl: `https://example.com/${n}.jpg` }));
  const results = await Promise.all([first, ...others]);
  const [refused, retried, ...later] = server.requests;
  assert.equal(server.requests.length, 4);
  assert.equal(retried.headers["idempotency-key"], refused.headers["idempotency-key"], "the refused call went first");
  assert.equal(results[0].idempotencyKey, refused.headers["idempotency-key"]);
  for (const r of later) {
    assert.ok(r.at - retried.at >= 250, `a newer call went ${r.at - retried.at} ms after the retry, before its answer`);
  }
});

test("a call left waiting at the gate can be aborted", async () => {
  const gate = refusedSignal();
  const c = fresh([error(429, "rate_limit_exceeded", { headers: { "retry-after": "1" } }), { ...ok(), delayMs: 1500 }], { maxRetries: 3, log: gate.log });
  const first = c.removeBackground({ imageUrl: "https://example.com/1.jpg" });
  await gate.seen;
  const controller = new AbortController();
  const second = c.removeBackground({ imageUrl: "https://example.com/2.jpg" }, { signal: controller.signal });
  // From 1 s the gate is open but the refused call is on the wire for 1.5 s: the second waits for it.
  setTimeout(() => controller.abort(new Error("stop")), 1400);
  await assert.rejects(second, /stop/);
  await first;
  assert.equal(server.requests.length, 2, "the aborted call sent nothing");
});

test("an aborted signal stops the waits and is not retried", async () => {
  const c = fresh([error(429, "r", { headers: { "retry-after": "30" } })]);
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error("stop")), 200);
  const started = Date.now();
  await assert.rejects(c.removeBackground({ imageUrl: "https://example.com/a.jpg" }, { signal: controller.signal }), /stop/);
  assert.ok(Date.now() - started < 2000);
  assert.equal(server.requests.length, 1);
});

test("retrySignal ends a Retry-After or a backoff wait: no more attempts", async () => {
  for (const refusal of [error(429, "r", { headers: { "retry-after": "30" } }), error(503, "overloaded")]) {
    const c = fresh([refusal], { maxRetries: 10 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("stop")), 200);
    const started = Date.now();
    await assert.rejects(c.removeBackground({ imageUrl: "https://example.com/a.jpg" }, { retrySignal: controller.signal }), /stop/);
    assert.ok(Date.now() - started < 2000, `${Date.now() - started} ms`); // 10 retries wait a minute and more
    assert.equal(server.requests.length, 1, `${refusal.status}: nothing sent after the abort`);
  }
});

test("retrySignal does not cut an attempt on the wire: its answer is returned", async () => {
  const c = fresh([{ ...ok(), delayMs: 600 }]);
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error("stop")), 200);
  const result = await c.removeBackground({ imageUrl: "https://example.com/a.jpg" }, { retrySignal: controller.signal });
  assert.equal(result.width, 321);
  assert.equal(server.requests.length, 1);
});

test("CLEARBG_LOG=debug-style log lines name each attempt, answer and wait", async () => {
  const lines = [];
  const c = fresh([error(429, "rate_limit_exceeded", { headers: { "retry-after": "0" } }), ok()], { log: (l) => lines.push(l) });
  const result = await c.removeBackground({ imageUrl: "https://example.com/a.jpg" });
  const key = result.idempotencyKey;
  assert.deepEqual(lines, [
    `POST /v1.0/removebg [${key}] attempt 1 of 3`,
    `POST /v1.0/removebg [${key}] attempt 1: 429 rate_limit_exceeded, Retry-After 0`,
    `POST /v1.0/removebg [${key}] retrying in 0.000 s after RateLimitError`,
    `POST /v1.0/removebg [${key}] attempt 2 of 3`,
    `POST /v1.0/removebg [${key}] attempt 2: 200`,
  ]);
});
