// End-to-end: the SDK against the real service (Envoy + gRPC server + model), started by
// tests/clients/node/ (pytest), which runs this file where the packed SDK is installed and sets:
//   CLEARBG_BASE_URL, CLEARBG_API_KEY   the stack and an account with credits and free calls
//   CLEARBG_E2E_POOR_KEY                an account with nothing to pay with
//   CLEARBG_E2E_PHOTO                   a real photo (read in place)
//   CLEARBG_E2E_OUT                     where answers are saved for pytest to decode with Pillow
// Every result field is checked against the raw headers the server sent, seen through a
// recording fetch (the SDK's own parsing is what is under test).
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { test } from "node:test";

import * as sdk from "clearbg";

const { CLEARBG_E2E_POOR_KEY: POOR_KEY, CLEARBG_E2E_PHOTO: PHOTO, CLEARBG_E2E_OUT: OUT } = process.env;
for (const name of ["CLEARBG_BASE_URL", "CLEARBG_API_KEY", "CLEARBG_E2E_POOR_KEY", "CLEARBG_E2E_PHOTO", "CLEARBG_E2E_OUT"]) {
  assert.ok(process.env[name], `${name} is not set`);
}
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A client whose every exchange is recorded: { request headers, response status and headers }. */
function recorded(options = {}) {
  const seen = [];
  const client = new sdk.ClearBG({
    ...options,
    fetch: async (url, init) => {
      const response = await fetch(url, init);
      seen.push({ url, sent: new Headers(init.headers), status: response.status, headers: response.headers });
      return response;
    },
  });
  return { client, seen };
}

/** PNG signature and the IHDR chunk's width and height. */
function pngSize(data) {
  const bytes = Buffer.from(data);
  assert.ok(bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), "PNG signature");
  assert.equal(bytes.subarray(12, 16).toString("latin1"), "IHDR");
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

/** Every field of a result against the raw headers of the answer it came from. */
function assertMatchesHeaders(result, headers) {
  const int = (name) => {
    assert.match(headers.get(name) ?? "", /^\d+$/, `${name} header`);
    return Number(headers.get(name));
  };
  assert.equal(result.width, int("x-width"));
  assert.equal(result.height, int("x-height"));
  assert.equal(result.type, headers.get("x-type") ?? undefined);
  assert.equal(result.creditsCharged, Number(headers.get("x-credits-charged")));
  assert.equal(result.creditsRemaining, Number(headers.get("x-credits-remaining")));
  assert.deepEqual(result.foreground, {
    top: int("x-foreground-top"), left: int("x-foreground-left"),
    width: int("x-foreground-width"), height: int("x-foreground-height"),
  });
  assert.deepEqual(result.rateLimit, {
    limit: int("x-ratelimit-limit"), remaining: int("x-ratelimit-remaining"), reset: int("x-ratelimit-reset"),
  });
  assert.equal(result.contentType, headers.get("content-type"));
  assert.ok(headers.get("x-request-id"), "the gateway sets X-Request-Id");
  assert.equal(result.requestId, headers.get("x-request-id"));
  assert.equal(result.replayed, headers.get("idempotent-replayed") === "true");
}

function save(name, result) {
  fs.writeFileSync(path.join(OUT, `${name}.bin`), result.data);
  const { data, headers, ...fields } = result;
  fs.writeFileSync(path.join(OUT, `${name}.json`), JSON.stringify(fields));
}

test("a photo by path: a PNG of X-Width x X-Height, every field from the headers, the balance after", async () => {
  const { client, seen } = recorded();
  const before = await client.account();
  const result = await client.removeBackground({ imageFile: PHOTO, size: "small" });
  assert.equal(seen.length, 2);
  const { sent, status, headers } = seen[1];
  assert.equal(status, 200);
  assertMatchesHeaders(result, headers);
  assert.deepEqual(pngSize(result.data), { width: result.width, height: result.height });
  assert.equal(result.contentType, "image/png");
  assert.equal(result.creditsCharged, 1);
  assert.equal(result.replayed, false);
  assert.match(sent.get("idempotency-key"), UUID4);
  assert.equal(result.idempotencyKey, sent.get("idempotency-key"));
  assert.match(sent.get("user-agent"), /^clearbg-node\/\d+\.\d+\.\d+$/);
  const after = await client.account();
  assert.equal(after.credits.total, before.credits.total - 1);
  assert.equal(result.creditsRemaining, after.credits.total);
  save("path", result);
});

test("a Buffer, a Blob and a stream of the same photo give the same answer", async () => {
  const { client, seen } = recorded();
  const bytes = fs.readFileSync(PHOTO);
  const answers = [];
  for (const imageFile of [bytes, new Blob([bytes]), fs.createReadStream(PHOTO), Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)])]) {
    const result = await client.removeBackground({ imageFile, size: "preview" });
    assertMatchesHeaders(result, seen.at(-1).headers);
    assert.equal(result.creditsCharged, 0, "previews are free");
    answers.push(result);
  }
  const [first, ...rest] = answers;
  for (const other of rest) {
    assert.deepEqual([other.width, other.height, other.foreground], [first.width, first.height, first.foreground]);
  }
  save("buffer", first);
});

test("formats: JPG, WebP and ZIP by their magic bytes and content types", async () => {
  const { client, seen } = recorded();
  const magic = {
    jpg: ["image/jpeg", (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff],
    webp: ["image/webp", (b) => b.subarray(0, 4).toString("latin1") === "RIFF" && b.subarray(8, 12).toString("latin1") === "WEBP"],
    zip: ["application/zip", (b) => b.subarray(0, 4).toString("latin1") === "PK\x03\x04"],
  };
  for (const [format, [contentType, looksRight]] of Object.entries(magic)) {
    const result = await client.removeBackground({ imageFile: PHOTO, size: "preview", format, bgColor: format === "jpg" ? "#81d4fa" : undefined });
    assertMatchesHeaders(result, seen.at(-1).headers);
    assert.equal(result.contentType, contentType);
    assert.ok(looksRight(Buffer.from(result.data)), `${format} magic bytes`);
    if (format === "jpg") save("blue", result);
  }
});

test("base64 source, a given type echoed, typeLevel none leaves X-Type out", async () => {
  const { client, seen } = recorded();
  const b64 = fs.readFileSync(PHOTO).toString("base64");
  const typed = await client.removeBackground({ imageFileB64: b64, size: "preview", type: "product" });
  assertMatchesHeaders(typed, seen.at(-1).headers);
  assert.equal(typed.type, "product");
  const none = await client.removeBackground({ imageFileB64: b64, size: "preview", typeLevel: "none" });
  assertMatchesHeaders(none, seen.at(-1).headers);
  assert.equal(none.type, undefined);
  assert.equal(seen.at(-1).headers.get("x-type"), null);
});

test("the server's errors arrive as their classes, with code, detail and request id, and are not retried", async () => {
  const cases = [
    [{ apiKey: "not-a-key" }, { imageFile: PHOTO, size: "preview" }, sdk.AuthenticationError, 401, "invalid_api_key"],
    [{}, { imageFile: PHOTO, size: "preview", bgColor: "not-a-colour" }, sdk.BadRequestError, 400, "invalid_bg_color"],
    [{}, { size: "preview" }, sdk.BadRequestError, 400, "missing_source"],
    [{ apiKey: POOR_KEY }, { imageFile: PHOTO, size: "small" }, sdk.InsufficientCreditsError, 402, "insufficient_credits"],
    [{ apiKey: POOR_KEY }, { imageFile: PHOTO, size: "preview" }, sdk.InsufficientCreditsError, 402, "insufficient_free_calls"],
  ];
  for (const [options, params, Class, status, code] of cases) {
    const { client, seen } = recorded(options);
    const err = await client.removeBackground(params).catch((e) => e);
    assert.ok(err instanceof Class, `${code}: got ${err}`);
    assert.equal(err.status, status);
    assert.equal(err.code, code);
    assert.ok(err.title && err.detail, "title and detail from the body");
    assert.equal(seen.length, 1, `${code} is not retried`);
    assert.ok(err.requestId);
    assert.equal(err.requestId, seen[0].headers.get("x-request-id"));
  }
  const poor = new sdk.ClearBG({ apiKey: POOR_KEY });
  assert.equal((await poor.account()).credits.total, 0, "the refused calls charged nothing");
});
