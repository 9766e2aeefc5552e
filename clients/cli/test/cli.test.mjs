// The clearbg command against a fake server on 127.0.0.1: which files it sends, where it writes,
// what it prints (--json lines, failure lines, summary), its exit status, --skip-existing,
// the shared Retry-After pause, --watch, and `clearbg account`.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, beforeEach, test } from "node:test";
import { fileURLToPath } from "node:url";

import { error, ok, PNG_1x1, startFakeServer } from "../../node/test/fake-server.mjs";
import { renderBar } from "../dist/progress.js";

const BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "dist", "bin.js");
const ACCOUNT = {
  status: 200,
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ data: { attributes: { credits: { total: 50.5, subscription: 45, payg: 5.5, enterprise: 0 }, api: { free_calls: 49, sizes: "all" } } } }),
};

let server;
let dir;
before(async () => {
  server = await startFakeServer();
});
after(() => server.close());
beforeEach(() => {
  server.requests.length = 0;
  server.script([ok()]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "clearbg-cli-"));
});

function touch(relative, bytes = Buffer.from(`photo ${relative}`)) {
  const file = path.join(dir, relative);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, bytes);
  return file;
}

/** Runs `clearbg args...` in `dir`; resolves to { status, stdout, stderr }. */
function clearbg(args, { env = {}, onStart } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: dir,
      env: { ...process.env, CLEARBG_API_KEY: "test-key", CLEARBG_BASE_URL: server.url, CLEARBG_LOG: "", ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (status) => resolve({ status, stdout, stderr }));
    onStart?.(child);
  });
}

const lines = (stdout) => stdout.trim().split("\n").map((line) => JSON.parse(line));
const sentNames = () => server.requests.map((r) => r.form.get("image_file").name).sort();

test("a folder: its photos only, outputs beside them, one JSON line each and a summary", async () => {
  touch("a.jpg");
  touch("B.JPEG");
  touch("c.png");
  touch("notes.txt");
  touch("old-clearbg.png"); // an earlier output
  touch("sub/deep.jpg"); // not without --recursive
  const { status, stdout, stderr } = await clearbg(["remove", ".", "--json"]);
  assert.equal(status, 0, stderr);
  assert.deepEqual(sentNames(), ["B.JPEG", "a.jpg", "c.png"]);
  const records = lines(stdout);
  assert.deepEqual(records.at(-1), { summary: { done: 3, failed: 0, skipped: 0, credits_charged: 3 } });
  const byFile = Object.fromEntries(records.slice(0, -1).map((r) => [r.file, r]));
  assert.deepEqual(Object.keys(byFile).sort(), ["B.JPEG", "a.jpg", "c.png"]);
  assert.deepEqual(byFile["a.jpg"], {
    file: "a.jpg", output: "a-clearbg.png", status: "done", credits_charged: 1, credits_remaining: 49.5,
    width: 321, height: 481, type: "person",
  });
  for (const name of ["a-clearbg.png", "B-clearbg.png", "c-clearbg.png"]) {
    assert.ok(fs.readFileSync(path.join(dir, name)).equals(PNG_1x1), name);
  }
  assert.equal(stderr, "", "no bar and no failures when stderr is not a terminal");
});

test("-o OUTDIR with --recursive mirrors the folders; OUTDIR inside the folder is not read", async () => {
  touch("in/a.jpg");
  touch("in/x/y/b.webp");
  touch("in/out/already.png"); // inside OUTDIR: never an input
  const { status, stdout } = await clearbg(["remove", "in", "-o", "in/out", "-r", "--json"]);
  assert.equal(status, 0);
  assert.deepEqual(sentNames(), ["a.jpg", "b.webp"]);
  const outputs = lines(stdout).slice(0, -1).map((r) => [r.file, r.output]).sort();
  assert.deepEqual(outputs, [["in/a.jpg", "in/out/a.png"], ["in/x/y/b.webp", "in/out/x/y/b.png"]]);
  assert.ok(fs.existsSync(path.join(dir, "in/out/x/y/b.png")));
});

test("a file given by name is sent even without an image extension; -o puts it in OUTDIR", async () => {
  touch("scan.raw");
  const { status, stdout } = await clearbg(["remove", "scan.raw", "-o", "done", "--json", "--format", "webp"]);
  assert.equal(status, 0);
  assert.equal(lines(stdout)[0].output, "done/scan.webp");
});

test("picture options reach the server under their REST names", async () => {
  touch("a.jpg");
  touch("bg.png", Buffer.from("background"));
  const { status } = await clearbg(["remove", "a.jpg", "--size", "small", "--type", "product", "--type-level", "2",
    "--format", "jpg", "--bg-image-file", "bg.png", "--channels", "rgba", "--crop", "--crop-margin", "10px",
    "--scale", "80%", "--position", "center", "--roi", "0 0 100 100", "--add-shadow", "--json"]);
  assert.equal(status, 0);
  const { form } = server.requests[0];
  const fields = Object.fromEntries([...form.entries()].filter(([, v]) => typeof v === "string"));
  assert.deepEqual(fields, {
    size: "small", type: "product", type_level: "2", format: "jpg", channels: "rgba", crop: "true",
    crop_margin: "10px", scale: "80%", position: "center", roi: "0 0 100 100", add_shadow: "true",
  });
  assert.equal(Buffer.from(await form.get("bg_image_file").arrayBuffer()).toString(), "background");
  const color = await clearbg(["remove", "a.jpg", "--bg-color", "#fff", "--bg-image-url", "https://e.com/bg.jpg", "--json"]);
  assert.equal(color.status, 0);
  assert.equal(server.requests[1].form.get("bg_color"), "#fff");
  assert.equal(server.requests[1].form.get("bg_image_url"), "https://e.com/bg.jpg");
});

test("credits running out: paid results saved, the rest failed as 402, exit status 1", async () => {
  for (const n of [1, 2, 3, 4, 5]) touch(`p${n}.jpg`);
  server.script([ok(), ok(), error(402, "insufficient_credits", { title: "Insufficient credits", detail: "0 credits left" })]);
  const { status, stdout } = await clearbg(["remove", ".", "--json", "--concurrency", "1"]);
  assert.equal(status, 1);
  const records = lines(stdout);
  assert.deepEqual(records.at(-1), { summary: { done: 2, failed: 3, skipped: 0, credits_charged: 2 } });
  const failed = records.filter((r) => r.status === "failed");
  assert.equal(failed.length, 3);
  for (const r of failed) {
    assert.deepEqual(r.error, { status: 402, code: "insufficient_credits", title: "Insufficient credits", detail: "0 credits left" });
    assert.equal(r.output, null);
    assert.ok(!fs.existsSync(path.join(dir, r.file.replace(".jpg", "-clearbg.png"))));
  }
  assert.equal(server.requests.length, 5, "402 is not retried");

  // Without --json: a line per failure on stderr and the summary line.
  server.requests.length = 0;
  const text = await clearbg(["remove", "p3.jpg", "p4.jpg"]);
  assert.equal(text.status, 1);
  assert.equal(text.stdout, "done 0, failed 2, skipped 0, credits charged 0\n");
  // Two workers: the lines come in whichever order the answers did.
  assert.deepEqual(text.stderr.trim().split("\n").sort(), [
    "failed: p3.jpg: 402 insufficient_credits: 0 credits left (request id req-402)",
    "failed: p4.jpg: 402 insufficient_credits: 0 credits left (request id req-402)",
  ]);
});

test("--skip-existing sends nothing for a photo whose output exists", async () => {
  touch("a.jpg");
  touch("b.jpg");
  touch("a-clearbg.png");
  const { status, stdout } = await clearbg(["remove", ".", "--skip-existing", "--json"]);
  assert.equal(status, 0);
  assert.deepEqual(sentNames(), ["b.jpg"]);
  const records = lines(stdout);
  assert.deepEqual(records.find((r) => r.file === "a.jpg"), {
    file: "a.jpg", output: "a-clearbg.png", status: "skipped", credits_charged: 0, credits_remaining: null,
    width: null, height: null, type: null,
  });
  assert.deepEqual(records.at(-1).summary, { done: 1, failed: 0, skipped: 1, credits_charged: 1 });
});

test("--format auto: the extension follows the answer; --skip-existing then finds .png or .jpg", async () => {
  touch("a.jpg");
  touch("b.jpg");
  server.script([ok({ "content-type": "image/jpeg" })]);
  const { stdout } = await clearbg(["remove", ".", "--format", "auto", "--json", "--concurrency", "1"]);
  assert.deepEqual(lines(stdout).slice(0, -1).map((r) => r.output), ["a-clearbg.jpg", "b-clearbg.jpg"]);
  fs.rmSync(path.join(dir, "b-clearbg.jpg"));
  touch("b-clearbg.png");
  server.requests.length = 0;
  const again = await clearbg(["remove", ".", "--format", "auto", "--skip-existing", "--json"]);
  assert.equal(server.requests.length, 0);
  assert.deepEqual(lines(again.stdout).at(-1).summary, { done: 0, failed: 0, skipped: 2, credits_charged: 0 });
});

test("usage errors exit with 2 before any request", async () => {
  touch("a.jpg");
  const cases = [
    [["remove", "a.jpg"], { CLEARBG_API_KEY: "" }, /no API key: pass --api-key or set CLEARBG_API_KEY/],
    [["remove", "a.jpg", "--concurrency", "0"], {}, /--concurrency must be a whole number >= 1, got "0"/],
    [["remove", "a.jpg", "--max-retries", "x"], {}, /--max-retries must be a whole number >= 0/],
    [["remove", "a.jpg", "--timeout", "0"], {}, /--timeout must be a positive number of seconds/],
    [["remove", "a.jpg", "--format", "gif"], {}, /--format must be one of png, jpg, webp, zip, auto/],
    [["remove"], {}, /remove needs at least one PATH/],
    [["remove", "missing.jpg"], {}, /no such file or folder: missing\.jpg/],
    [["remove", "a.jpg", "--watch"], {}, /--watch needs a folder/],
    [["remove", "a.jpg", "--sise", "small"], {}, /Unknown option '--sise'/],
    [["remove", "a.jpg", "--bg-image-file", "nope.png"], {}, /no such file: --bg-image-file nope\.png/],
    [["frobnicate"], {}, /unknown command "frobnicate"/],
  ];
  for (const [args, env, message] of cases) {
    const { status, stderr } = await clearbg(args, { env });
    assert.equal(status, 2, `${args.join(" ")}: ${stderr}`);
    assert.match(stderr, message);
  }
  assert.equal(server.requests.length, 0);
  const { version } = JSON.parse(fs.readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  assert.equal((await clearbg(["--version"])).stdout, `clearbg-cli ${version}\n`);
  const help = await clearbg(["--help"]);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /clearbg remove PATH\.\.\. \[-o OUTDIR\]/);
});

test("--api-key and --base-url win over the environment", async () => {
  touch("a.jpg");
  const { status } = await clearbg(["remove", "a.jpg", "--api-key", "flag-key", "--base-url", server.url, "--json"],
    { env: { CLEARBG_API_KEY: "env-key", CLEARBG_BASE_URL: "http://127.0.0.1:9" } });
  assert.equal(status, 0);
  assert.equal(server.requests[0].headers["x-api-key"], "flag-key");
});

test("--concurrency 4 and a 429: every worker waits out Retry-After, the user sees no 429", async () => {
  for (let n = 0; n < 8; n++) touch(`p${n}.jpg`);
  let refused = 0;
  server.script([(request) => {
    if (refused === 0) {
      refused = request.at;
      return error(429, "rate_limit_exceeded", { headers: { "retry-after": "1" } });
    }
    // Slow answers: a worker's next photo goes out well after the 429 has reached the client.
    return { ...ok(), delayMs: 100 };
  }]);
  const { status, stdout, stderr } = await clearbg(["remove", ".", "--concurrency", "4"]);
  assert.equal(status, 0, stderr);
  assert.equal(stdout, "done 8, failed 0, skipped 0, credits charged 8\n");
  assert.doesNotMatch(stdout + stderr, /429|rate/i);
  // The first four requests went out together; every later one (the refused photo's retry
  // included) waited for the pause.
  assert.equal(server.requests.length, 9, "8 photos, one of them twice");
  for (const r of server.requests.slice(4)) assert.ok(r.at - refused >= 1000, `a request ${r.at - refused} ms after the 429`);
});

test("--watch takes new photos once complete, and Ctrl-C ends with the summary", async () => {
  touch("w/first.jpg");
  const result = clearbg(["remove", "w", "--watch", "--json"], {
    env: { CLEARBG_WATCH_INTERVAL_MS: "100" },
    onStart: (child) => {
      const waitFor = (count) => new Promise((resolve) => {
        const poll = setInterval(() => {
          if (server.requests.length >= count) {
            clearInterval(poll);
            resolve();
          }
        }, 20);
      });
      (async () => {
        await waitFor(1);
        await new Promise((r) => setTimeout(r, 300));
        touch("w/second.png");
        await waitFor(2);
        await new Promise((r) => setTimeout(r, 300)); // let it write the output
        child.kill("SIGINT");
      })();
    },
  });
  const { status, stdout, stderr } = await result;
  assert.equal(status, 0, stderr);
  assert.deepEqual(sentNames(), ["first.jpg", "second.png"]);
  const records = lines(stdout);
  assert.deepEqual(records.at(-1), { summary: { done: 2, failed: 0, skipped: 0, credits_charged: 2 } });
  assert.ok(fs.existsSync(path.join(dir, "w/second-clearbg.png")));
  assert.equal(server.requests.length, 2, "its own output was not taken as a new photo");
});

/** `clearbg remove args...`, Ctrl-C once the server has seen `requests` requests (and 200 ms
 * more); resolves to { status, stdout, stderr, tried: requests seen at the Ctrl-C, tookMs }. */
async function interrupted(args, requests) {
  let tried;
  let at;
  const result = await clearbg(args, {
    env: { CLEARBG_WATCH_INTERVAL_MS: "100" },
    onStart: (child) => {
      const poll = setInterval(() => {
        if (server.requests.length < requests) return;
        clearInterval(poll);
        setTimeout(() => {
          tried = server.requests.length;
          at = Date.now();
          child.kill("SIGINT");
        }, 200);
      }, 20);
    },
  });
  return { ...result, tried, tookMs: Date.now() - at };
}

for (const mode of [[], ["--watch"]]) {
  const name = mode.length ? "--watch" : "a folder";
  for (const [kind, refusal, requests] of [
    ["a backoff", error(503, "overloaded"), 2],
    ["a Retry-After of 60 s", error(429, "rate_limit_exceeded", { headers: { "retry-after": "60" } }), 1],
  ]) {
    test(`${name}: Ctrl-C ends ${kind} at once and sends nothing more`, async () => {
      touch("p.jpg");
      server.script([() => refusal]);
      const { status, stdout, stderr, tried, tookMs } = await interrupted(["remove", ".", ...mode], requests);
      assert.equal(status, mode.length ? 0 : 130, stderr);
      assert.equal(server.requests.length, tried, "no attempt after the Ctrl-C");
      // The refused photo was not charged and stays for the next run.
      assert.equal(stdout, "done 0, failed 0, skipped 0, credits charged 0\n");
      assert.ok(!fs.existsSync(path.join(dir, "p-clearbg.png")));
      assert.ok(tookMs < 10000, `${tookMs} ms (10 retries wait a minute and more)`);
    });
  }

  test(`${name}: Ctrl-C keeps an answer on its way`, async () => {
    touch("a.jpg");
    touch("b.jpg");
    server.script([() => ({ ...ok(), delayMs: 2000 })]);
    const { status, stdout, stderr, tried } = await interrupted(["remove", ".", "--concurrency", "1", ...mode], 1);
    assert.equal(status, mode.length ? 0 : 130, stderr);
    assert.equal(tried, 1);
    assert.equal(server.requests.length, 1);
    assert.equal(stdout, "done 1, failed 0, skipped 0, credits charged 1\n");
    assert.equal(fs.readdirSync(dir).filter((f) => f.endsWith("-clearbg.png")).length, 1);
  });
}

test("account: human-readable and --json", async () => {
  server.script([ACCOUNT]);
  const text = await clearbg(["account"]);
  assert.equal(text.status, 0);
  assert.equal(text.stdout, "credits     50.5 (subscription 45, payg 5.5, enterprise 0)\nfree calls  49\nsizes       all\n");
  const json = await clearbg(["account", "--json"]);
  assert.deepEqual(JSON.parse(json.stdout), { credits: { total: 50.5, subscription: 45, payg: 5.5, enterprise: 0 }, free_calls: 49, sizes: "all" });
  server.script([error(401, "invalid_api_key", { detail: "The API key is not valid." })]);
  const denied = await clearbg(["account"]);
  assert.equal(denied.status, 1);
  assert.equal(denied.stderr, "clearbg: 401 invalid_api_key: The API key is not valid. (request id req-401)\n");
});

test("the bar: count, share, rate, ETA and failures, within the terminal's width", () => {
  const counts = { done: 10, failed: 2, skipped: 0, total: 30 };
  const line = renderBar(counts, 6000, 80);
  assert.equal(line, "[===============>                      ]  12/30  40%  2.0/s  ETA 0:09  failed 2");
  assert.ok(line.length <= 80);
  assert.match(renderBar({ done: 3, failed: 0, skipped: 0, total: 100 }, 60000, 80), / 3\/100  3%  3\.0\/min  ETA 32:20  failed 0$/);
  assert.match(renderBar({ done: 0, failed: 0, skipped: 0, total: 5 }, 0, 80), / 0\/5  0%  --\/s  ETA --:--  failed 0$/);
  assert.match(renderBar({ done: 5, failed: 0, skipped: 25, total: 30 }, 1000, 60), /^\[=+\]  30\/30  100%  5\.0\/s  ETA 0:00  failed 0$/);
});
