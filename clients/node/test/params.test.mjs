// Option mapping (camelCase -> the REST field names and their string values), the result's
// fields from the headers, the key and base URL from options or the environment.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ClearBG, ClearBGError, DEFAULT_BASE_URL, VERSION } from "clearbg";
import { ok, PNG_1x1, startFakeServer } from "./fake-server.mjs";

let server;
before(async () => {
  server = await startFakeServer();
});
after(() => server.close());

function fresh(script = [ok()], options = {}) {
  server.requests.length = 0;
  server.script(script);
  return new ClearBG({ apiKey: "secret-key", baseUrl: server.url, ...options });
}

test("every option is sent under its REST name, as text", async () => {
  const c = fresh();
  await c.removeBackground({
    imageUrl: "https://example.com/photo.jpg",
    size: "hd",
    type: "product",
    typeLevel: 2,
    format: "webp",
    bgColor: "#81d4fa",
    bgImageUrl: "https://example.com/bg.jpg",
    channels: "alpha",
    crop: true,
    cropMargin: "10px 5%",
    scale: "80%",
    position: "50% 70%",
    roi: "0% 0% 100% 90%",
    addShadow: false,
    shadowType: "drop",
    shadowOpacity: 40,
    semitransparency: true,
    extraFields: { future_field: "x", another: 3 },
  });
  const [request] = server.requests;
  assert.equal(request.method, "POST");
  assert.equal(request.url, "/v1.0/removebg");
  assert.deepEqual(Object.fromEntries(request.form.entries()), {
    image_url: "https://example.com/photo.jpg",
    size: "hd",
    type: "product",
    type_level: "2",
    format: "webp",
    bg_color: "#81d4fa",
    bg_image_url: "https://example.com/bg.jpg",
    channels: "alpha",
    crop: "true",
    crop_margin: "10px 5%",
    scale: "80%",
    position: "50% 70%",
    roi: "0% 0% 100% 90%",
    add_shadow: "false",
    shadow_type: "drop",
    shadow_opacity: "40",
    semitransparency: "true",
    future_field: "x",
    another: "3",
  });
});

test("undefined options are left out; base64 sources pass as given", async () => {
  const c = fresh();
  await c.removeBackground({ imageFileB64: "data:image/png;base64,AAAA", size: undefined, crop: undefined });
  assert.deepEqual([...server.requests[0].form.keys()], ["image_file_b64"]);
  assert.equal(server.requests[0].form.get("image_file_b64"), "data:image/png;base64,AAAA");
});

test("an unknown option is a TypeError before any request (a typo is not silently dropped)", async () => {
  const c = fresh();
  await assert.rejects(c.removeBackground({ imageUrl: "u", bgColour: "red" }), (err) => {
    assert.ok(err instanceof TypeError);
    assert.match(err.message, /unknown parameter "bgColour"; known: imageFile, bgImageFile, imageUrl/);
    return true;
  });
  assert.equal(server.requests.length, 0);
});

test("the result's fields are the headers the server sent", async () => {
  const c = fresh([ok({ "idempotent-replayed": "true" })]);
  const result = await c.removeBackground({ imageUrl: "u" });
  assert.ok(result.data instanceof Uint8Array);
  assert.ok(Buffer.from(result.data).equals(PNG_1x1));
  assert.equal(result.width, 321);
  assert.equal(result.height, 481);
  assert.equal(result.type, "person");
  assert.equal(result.creditsCharged, 1);
  assert.equal(result.creditsRemaining, 49.5);
  assert.deepEqual(result.foreground, { top: 10, left: 20, width: 200, height: 400 });
  assert.deepEqual(result.rateLimit, { limit: 500, remaining: 499, reset: 1790000000 });
  assert.equal(result.contentType, "image/png");
  assert.equal(result.requestId, "req-ok-1");
  assert.equal(result.replayed, true);
  assert.equal(result.headers.get("x-width"), "321");
});

test("headers the server left out are undefined, not made up", async () => {
  const c = fresh([{ status: 200, headers: { "content-type": "image/png", "x-width": "1", "x-height": "1", "x-credits-charged": "0", "x-credits-remaining": "3" }, body: PNG_1x1 }]);
  const result = await c.removeBackground({ imageUrl: "u" });
  assert.equal(result.type, undefined);
  assert.equal(result.foreground, undefined);
  assert.equal(result.rateLimit, undefined);
  assert.equal(result.requestId, undefined);
  assert.equal(result.replayed, false);
  assert.equal(result.creditsCharged, 0);
});

test("requests carry the key, the User-Agent and nothing else of ours", async () => {
  const c = fresh();
  await c.removeBackground({ imageUrl: "u" });
  const { headers } = server.requests[0];
  assert.equal(headers["x-api-key"], "secret-key");
  assert.equal(headers["user-agent"], `clearbg-node/${VERSION}`);
  assert.equal(headers.accept ?? "*/*", "*/*", "no Accept: application/json (that asks for a JSON body)");
});

test("account() reads the documented JSON", async () => {
  const body = { data: { attributes: { credits: { total: 50, subscription: 45, payg: 5, enterprise: 0 }, api: { free_calls: 48, sizes: "all" } } } };
  const c = fresh([{ status: 200, headers: { "content-type": "application/json", "x-request-id": "acc-1" }, body: JSON.stringify(body) }]);
  assert.deepEqual(await c.account(), {
    credits: { total: 50, subscription: 45, payg: 5, enterprise: 0 },
    freeCalls: 48,
    sizes: "all",
    requestId: "acc-1",
  });
  assert.equal(server.requests[0].method, "GET");
  assert.equal(server.requests[0].url, "/v1.0/account");
  assert.equal(server.requests[0].headers["x-api-key"], "secret-key");
});

test("key and base URL come from CLEARBG_API_KEY / CLEARBG_BASE_URL; options win", async () => {
  const saved = { key: process.env.CLEARBG_API_KEY, url: process.env.CLEARBG_BASE_URL };
  try {
    process.env.CLEARBG_API_KEY = "from-env";
    process.env.CLEARBG_BASE_URL = server.url + "/";
    server.requests.length = 0;
    server.script([ok()]);
    const c = new ClearBG();
    assert.equal(c.baseUrl, server.url, "trailing slash dropped");
    await c.removeBackground({ imageUrl: "u" });
    assert.equal(server.requests[0].headers["x-api-key"], "from-env");
    assert.equal(new ClearBG({ apiKey: "mine", baseUrl: "http://other:1" }).baseUrl, "http://other:1");

    delete process.env.CLEARBG_BASE_URL;
    assert.equal(new ClearBG().baseUrl, DEFAULT_BASE_URL);
    assert.equal(DEFAULT_BASE_URL, "https://api.clearbg.ai");

    delete process.env.CLEARBG_API_KEY;
    assert.throws(() => new ClearBG({ baseUrl: server.url }), (err) => {
      assert.ok(err instanceof ClearBGError);
      assert.match(err.message, /No API key: pass new ClearBG\(\{ apiKey \}\) or set the CLEARBG_API_KEY/);
      return true;
    });
  } finally {
    for (const [name, value] of [["CLEARBG_API_KEY", saved.key], ["CLEARBG_BASE_URL", saved.url]]) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
});

test("a base URL with a path prefix keeps it", async () => {
  const c = fresh([ok()], { baseUrl: server.url + "/proxy/clearbg/" });
  await c.removeBackground({ imageUrl: "u" });
  assert.equal(server.requests[0].url, "/proxy/clearbg/v1.0/removebg");
});

test("bad client options are refused at construction", () => {
  assert.throws(() => new ClearBG({ apiKey: "k", maxRetries: -1 }), /maxRetries must be a whole number/);
  assert.throws(() => new ClearBG({ apiKey: "k", timeout: 0 }), /timeout must be a positive number of milliseconds/);
});
