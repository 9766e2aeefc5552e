// The package as a user loads it: ESM and CommonJS entry points with the same API, the
// declarations the exports map names, and the version it reports.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import * as esm from "clearbg";

const require = createRequire(import.meta.url);
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));

test("import and require give the same names", () => {
  const cjs = require("clearbg");
  assert.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).sort());
  for (const name of ["ClearBG", "APIError", "RateLimitError", "InsufficientCreditsError", "APIConnectionError", "APITimeoutError"]) {
    assert.equal(typeof esm[name], "function", name);
    assert.equal(typeof cjs[name], "function", name);
  }
  assert.equal(esm.ClearBG.RateLimitError, esm.RateLimitError);
});

test("the version sent in User-Agent is package.json's", () => {
  assert.equal(esm.VERSION, pkg.version);
});

test("the exports map points at files that exist, with declarations", () => {
  const entry = pkg.exports["."];
  for (const condition of ["import", "require"]) {
    for (const kind of ["types", "default"]) {
      assert.ok(fs.existsSync(path.join(root, entry[condition][kind])), `${condition}.${kind}: ${entry[condition][kind]}`);
    }
  }
  const declarations = fs.readFileSync(path.join(root, entry.import.types.replace("index", "client")), "utf8");
  assert.match(declarations, /removeBackground\(params: RemoveBackgroundParams, options\?: RequestOptions\): Promise<RemoveBackgroundResult>/);
});

test("no runtime dependencies", () => {
  assert.equal(pkg.dependencies, undefined);
});

test("TypeScript users type-check against the declarations, as ES module and as CommonJS", () => {
  const tsc = require.resolve("typescript/bin/tsc");
  const done = spawnSync(process.execPath, [tsc, "-p", path.join(root, "test", "types")], { encoding: "utf8" });
  assert.equal(done.status, 0, done.stdout + done.stderr);
});
