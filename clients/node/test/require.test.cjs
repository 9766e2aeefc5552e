// CommonJS users: require("clearbg") works and its errors are the CommonJS build's classes.
const assert = require("node:assert/strict");
const { test } = require("node:test");

const { ClearBG, ClearBGError } = require("clearbg");

test("require('clearbg') gives a working client class", () => {
  assert.throws(() => new ClearBG({ apiKey: "" }), ClearBGError);
  const client = new ClearBG({ apiKey: "k", baseUrl: "http://127.0.0.1:9/" });
  assert.equal(client.baseUrl, "http://127.0.0.1:9");
  assert.equal(client.maxRetries, 2);
});
