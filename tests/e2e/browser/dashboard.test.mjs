// The dashboard in Debian's Chromium (headless), driven by playwright-core, against the real
// Envoy, server and model that tests/e2e/test_dashboard_browser.py started. Elements are found by role
// and label, as a screen reader sees the page. Each step prints "ok - ..."; the first failure
// prints its error, saves a screenshot and exits 1.
//
// Environment: BASE_URL, DEV_EMAIL, DEV_PASSWORD (the development user the server printed),
// LINK_EMAIL and SIGN_IN_LINK (a user `clearbg-admin create-user` made, and its one-time link),
// PHOTO (a JPEG), OUT_DIR (screenshots, the downloaded cut-out, the keys made), CHROMIUM.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE_SOURCE = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const BASE = process.env.BASE_URL.replace(/\/$/, "");
const OUT = process.env.OUT_DIR;
const PHOTO = process.env.PHOTO;
const DEV = { email: process.env.DEV_EMAIL, password: process.env.DEV_PASSWORD };
// Headless Chromium as this machine runs it: no GPU, no network but loopback, no background
// traffic. Playwright gives every launch a fresh, empty --user-data-dir of its own.
const FLAGS = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync",
];
// Each wait is for a real server doing real work (a model run on a busy 2-core machine).
const WAIT_MS = 120_000;

const screenshots = [];
const madeKeys = [];
const dialogs = [];
let current = null;

const started = Date.now();

function step(name) {
  console.log(`ok - ${name} [${((Date.now() - started) / 1000).toFixed(1)} s]`);
}

async function shot(page, name) {
  const file = path.join(OUT, "screenshots", `${String(screenshots.length + 1).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  screenshots.push(file);
}

// axe-core, evaluated through the DevTools protocol (the page's CSP forbids injected scripts,
// rightly). No serious or critical violation on the page as it stands.
async function checkAccessibility(page, name) {
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
    [],
    `axe on ${name}`,
  );
  step(`axe: no serious or critical violations on ${name} (${result.violations.length} minor)`);
}

// Every visible control of the page receives focus from the Tab key, in turn.
async function checkKeyboard(page, name) {
  const count = await page.evaluate(() => {
    const selector = "a[href], button, input, select, textarea, summary, [tabindex]:not([tabindex='-1'])";
    const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
    const controls = [...document.querySelectorAll(selector)].filter((el) => !el.disabled && visible(el) && el.tabIndex >= 0);
    controls.forEach((el, i) => el.setAttribute("data-kbd", String(i)));
    document.activeElement?.blur();
    window.scrollTo(0, 0);
    return controls.length;
  });
  const reached = new Set();
  for (let i = 0; i < count * 2 + 5 && reached.size < count; i += 1) {
    await page.keyboard.press("Tab");
    const mark = await page.evaluate(() => document.activeElement?.getAttribute("data-kbd"));
    if (mark !== null && mark !== undefined) reached.add(mark);
  }
  const missed = await page.evaluate((seen) => [...document.querySelectorAll("[data-kbd]")]
    .filter((el) => !seen.includes(el.getAttribute("data-kbd")))
    .map((el) => el.outerHTML.slice(0, 120)), [...reached]);
  assert.deepEqual(missed, [], `controls on ${name} that Tab never reaches`);
  step(`keyboard: all ${count} controls on ${name} reachable with Tab`);
}

async function checkPage(page, name) {
  await shot(page, name);
  await checkAccessibility(page, name);
  await checkKeyboard(page, name);
}

async function newContext(browser) {
  const context = await browser.newContext({ baseURL: BASE, acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on("dialog", async (dialog) => {
    dialogs.push(dialog.message());
    await dialog.dismiss();
  });
  page.on("pageerror", (error) => console.log(`# page error: ${error.message}`));
  current = page;
  return { context, page };
}

async function heading(page, name) {
  await page.getByRole("heading", { level: 1, name }).waitFor();
}

async function signUp(page, email, password) {
  await page.goto("/dashboard/sign-up");
  await heading(page, "Create an account");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await heading(page, "Overview");
}

async function signIn(page, email, password) {
  await page.goto("/dashboard/sign-in");
  await heading(page, "Sign in");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await heading(page, "Overview");
}

async function go(page, link, title) {
  await page.getByRole("navigation", { name: "Dashboard" }).getByRole("link", { name: link }).click();
  await heading(page, title ?? link);
}

async function createKey(page, name) {
  await go(page, "API keys");
  await page.getByLabel("Key name").fill(name);
  await page.getByRole("button", { name: "Create key" }).click();
  const panel = page.getByRole("region", { name: /^New key/ });
  await panel.waitFor();
  const key = (await panel.getByRole("code").textContent())?.trim()
    ?? (await page.locator("#new-key").textContent()).trim();
  madeKeys.push(key);
  return key;
}

async function removebg(key, size = "auto") {
  const form = new FormData();
  form.append("size", size);
  form.append("image_file", new Blob([fs.readFileSync(PHOTO)]), "photo.jpg");
  const answer = await fetch(`${BASE}/v1.0/removebg`, { method: "POST", headers: { "X-Api-Key": key }, body: form });
  // Read whole: an unread body held its connection, and so node, open ~45 s after the last step.
  const body = Buffer.from(await answer.arrayBuffer());
  return { status: answer.status, headers: answer.headers, body };
}

function keyRow(page, name) {
  return page.getByRole("row").filter({ has: page.getByRole("rowheader", { name, exact: true }) });
}

// A page on another origin that posts a form to the dashboard as soon as it loads: the classic
// cross-site request forgery, with a text/plain body shaped like JSON.
function attackerServer() {
  const html = `<!doctype html><html><body><form id="f" method="POST" enctype="text/plain" action="${BASE}/dashboard/api/keys">
<input name='{"name":"csrf-attack","x":"' value='"}'></form><script>document.getElementById("f").submit()</script></body></html>`;
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(html);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

async function crossSitePost(page, attackerUrl) {
  const answer = page.waitForResponse((r) => r.url() === `${BASE}/dashboard/api/keys` && r.request().method() === "POST");
  await page.goto(attackerUrl);
  return (await answer).status();
}

async function main() {
  fs.mkdirSync(path.join(OUT, "screenshots"), { recursive: true });
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args: FLAGS });
  try {
    const stamp = Date.now();
    const alice = { email: `alice-${stamp}@example.com`, password: "correct horse battery" };
    const bob = { email: `bob-${stamp}@example.com`, password: "another good password" };

    // -- sign up, sign in, the credits ---------------------------------------------------------
    const { context: aliceContext, page } = await newContext(browser);
    await page.goto("/dashboard/");
    await heading(page, "Sign in");
    step("a visitor is sent to the sign-in page");
    await checkPage(page, "sign-in");
    await page.getByRole("link", { name: "Create an account" }).click();
    await heading(page, "Create an account");
    await checkPage(page, "sign-up");
    await signUp(page, alice.email, alice.password);
    step("sign-up makes an account and signs in");
    await page.getByRole("button", { name: "Sign out" }).click();
    await heading(page, "Sign in");
    await signIn(page, alice.email, alice.password);
    const credits = page.getByRole("region", { name: "Credits" });
    assert.equal(await credits.getByRole("definition").first().textContent(), "0");
    await page.getByText("50 of 50").waitFor();
    step("sign-in shows the credits (total 0) and 50 of 50 free previews");
    await checkPage(page, "overview");

    // -- a key, used for a real cut-out, then revoked --------------------------------------------
    const key = await createKey(page, "ci-key");
    assert.match(key, /^cbg_[\w-]{40,}$/);
    await page.getByRole("button", { name: "Copy key" }).click();
    await page.getByText("Copied.").waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key);
    step("a new key is shown once, and its copy button puts it on the clipboard");
    await checkPage(page, "keys-new-key");
    await page.reload();
    await heading(page, "API keys");
    assert.equal(await page.getByText(key).count(), 0, "the key is shown again after a reload");
    assert.equal(await keyRow(page, "ci-key").getByRole("cell").nth(2).textContent(), "Never");
    step("after a reload the list shows the key's name and prefix, never the key");

    const cut = await removebg(key);
    assert.equal(cut.status, 200, cut.body.toString());
    assert.equal(cut.headers.get("content-type"), "image/png");
    step(`the key works from an HTTP client: 200, ${cut.headers.get("x-width")}x${cut.headers.get("x-height")} PNG`);
    await page.reload();
    await heading(page, "API keys");
    assert.notEqual(await keyRow(page, "ci-key").getByRole("cell").nth(2).textContent(), "Never");
    step("the key's last use is shown");

    await go(page, "Usage");
    const calls = page.getByRole("table", { name: /latest calls/ });
    const firstCall = calls.getByRole("row").nth(1);
    const cells = await firstCall.getByRole("cell").allTextContents();
    assert.match(cells[1], /^ci-key \(cbg_/);
    assert.equal(cells[2], "preview");
    assert.equal(cells[3], "0");
    assert.equal(cells[4], "Succeeded");
    await page.getByRole("img", { name: /^Images per day, last 30 days: 1 in all, 1 today/ }).waitFor();
    step("the usage table and the chart show that call");
    await checkPage(page, "usage");

    await go(page, "API keys");
    await keyRow(page, "ci-key").getByRole("button", { name: "Revoke ci-key" }).click();
    const dialog = page.getByRole("dialog", { name: /Revoke key/ });
    await dialog.getByRole("button", { name: "Revoke key" }).click();
    await keyRow(page, "ci-key").getByText(/^Revoked/).waitFor();
    const refused = await removebg(key);
    assert.equal(refused.status, 401);
    step("a revoked key is refused at once (401)");

    // -- try a photo ------------------------------------------------------------------------------
    await go(page, "Try it");
    await page.getByLabel("Photo").setInputFiles(PHOTO);
    await page.getByLabel("Size").selectOption("preview");
    await page.getByLabel("Format").selectOption("png");
    await page.getByRole("button", { name: "Remove background" }).click();
    await page.getByRole("img", { name: "Cut-out" }).waitFor();
    await page.getByRole("img", { name: "Original" }).waitFor();
    const download = page.waitForEvent("download");
    await page.getByRole("link", { name: /^Download/ }).click();
    await (await download).saveAs(path.join(OUT, "cutout.png"));
    step("Try it shows the cut-out beside the original and downloads it");
    await checkPage(page, "try-it");
    await go(page, "Overview");
    await page.getByText("49 of 50").waitFor();
    step("a preview in Try it cost nothing (the API call used one free preview, Try it none)");

    await go(page, "Docs");
    const sample = await page.getByRole("region", { name: "cURL", exact: true }).textContent();
    assert.ok(sample.includes(`${BASE}/v1.0/removebg`), sample);
    step("the docs' samples carry this server's base URL");
    await checkPage(page, "docs");

    // -- hostile pages and users ----------------------------------------------------------------
    const xssName = `<script>window.__xss=1</script><img src=x onerror="window.__xss=2">`;
    await createKey(page, xssName);
    await page.reload();
    await heading(page, "API keys");
    await keyRow(page, xssName).waitFor();
    assert.equal(await page.evaluate(() => window.__xss), undefined);
    assert.deepEqual(dialogs, []);
    assert.equal(await page.locator("main img").count(), 0);
    step("a key named with <script> and <img onerror> shows as text and runs nothing");
    await shot(page, "keys-script-name");

    const inline = await page.evaluate(() => {
      const script = document.createElement("script");
      script.textContent = "window.__inline = 1";
      document.head.append(script);
      return window.__inline;
    });
    assert.equal(inline, undefined, "an inline script ran: the CSP is missing");
    step("the Content-Security-Policy blocks inline scripts");

    const attacker = await attackerServer();
    const port = attacker.address().port;
    assert.equal(await crossSitePost(page, `http://127.0.0.1:${port}/`), 403);
    const crossSite = await crossSitePost(page, `http://localhost:${port}/`);
    assert.ok([401, 403].includes(crossSite), `cross-site post answered ${crossSite}`);
    attacker.close();
    await page.goto("/dashboard/keys");
    await heading(page, "API keys");
    assert.equal(await keyRow(page, "csrf-attack").count(), 0);
    step("a form posted from another origin (same site, 403) or another site (cookie withheld) makes no key");

    const { context: bobContext, page: bobPage } = await newContext(browser);
    await signUp(bobPage, bob.email, bob.password);
    const bobSession = await (await bobContext.request.get("/dashboard/api/session")).json();
    const aliceKeys = (await (await aliceContext.request.get("/dashboard/api/keys")).json()).keys;
    const live = aliceKeys.find((k) => !k.revoked_at);
    for (const id of aliceKeys.map((k) => k.id)) {
      const answer = await bobContext.request.post(`/dashboard/api/keys/${id}/revoke`, {
        headers: { "x-csrf-token": bobSession.csrf_token },
      });
      assert.equal(answer.status(), 404, `bob revoking alice's key ${id}`);
    }
    const bobKeys = await (await bobContext.request.get("/dashboard/api/keys?account_id=1&key_id=1")).json();
    assert.deepEqual(bobKeys.keys ?? [], []);
    const bobUsage = await (await bobContext.request.get("/dashboard/api/usage")).json();
    assert.deepEqual(bobUsage.calls ?? [], []);
    const still = (await (await aliceContext.request.get("/dashboard/api/keys")).json()).keys.find((k) => k.id === live.id);
    assert.equal(still.revoked_at, undefined); // a live key has no revocation time
    step("another user can neither list nor revoke the first user's keys by their ids, nor see its usage");

    // -- password change and sign-out end sessions ----------------------------------------------
    const { context: aliceElsewhere, page: elsewhere } = await newContext(browser);
    await signIn(elsewhere, alice.email, alice.password);
    await go(page, "Account");
    await checkPage(page, "account");
    await page.getByLabel("Current password").fill(alice.password);
    await page.getByLabel("New password").fill("a brand new password");
    await page.getByRole("button", { name: "Change password" }).click();
    await page.getByText("Password changed.").waitFor();
    assert.equal((await aliceElsewhere.request.get("/dashboard/api/overview")).status(), 401);
    assert.equal((await aliceContext.request.get("/dashboard/api/overview")).status(), 200);
    step("a password change ends the user's other sessions and keeps this one");
    await aliceElsewhere.close();

    const old = (await aliceContext.cookies(BASE)).find((c) => c.name.endsWith("clearbg_session"));
    assert.ok(old && old.httpOnly && old.sameSite === "Strict", JSON.stringify(old));
    await page.getByRole("button", { name: "Sign out" }).click();
    await heading(page, "Sign in");
    const replay = await fetch(`${BASE}/dashboard/api/overview`, { headers: { cookie: `${old.name}=${old.value}` } });
    assert.equal(replay.status, 401);
    step("the session cookie is HttpOnly and SameSite=Strict; after sign-out the old cookie is refused");

    // -- 20 wrong passwords in a row ---------------------------------------------------------------
    await bobContext.clearCookies();
    const csrf = (await (await bobContext.request.get("/dashboard/api/session")).json()).csrf_token;
    const statuses = [];
    let retryAfter = null;
    for (let i = 0; i < 20; i += 1) {
      const answer = await bobContext.request.post("/dashboard/api/sign-in", {
        data: { email: bob.email, password: `wrong-${i}` }, headers: { "x-csrf-token": csrf },
      });
      statuses.push(answer.status());
      if (answer.status() === 429) retryAfter = Number(answer.headers()["retry-after"]);
    }
    assert.ok(statuses.slice(0, 5).every((s) => s === 401), statuses.join(","));
    assert.ok(statuses.slice(-5).every((s) => s === 429), statuses.join(","));
    assert.ok(retryAfter > 0 && retryAfter <= 900, `Retry-After ${retryAfter}`);
    await bobPage.goto("/dashboard/sign-in");
    await bobPage.getByLabel("Email").fill(bob.email);
    await bobPage.getByLabel("Password").fill(bob.password);
    await bobPage.getByRole("button", { name: "Sign in" }).click();
    await bobPage.getByRole("alert").getByText(/Too many failed sign-ins/).waitFor();
    step(`20 wrong passwords in a row: ${statuses.join(",")}; then even the right one waits (429, Retry-After ${retryAfter} s)`);
    await shot(bobPage, "sign-in-429");
    await bobContext.close();

    // -- the operator's one-time sign-in link ---------------------------------------------------
    const { context: linkContext, page: linkPage } = await newContext(browser);
    await linkPage.goto(process.env.SIGN_IN_LINK);
    await heading(linkPage, "Account");
    await linkPage.getByRole("heading", { name: "Choose a password" }).waitFor();
    assert.ok(!linkPage.url().includes("sign-in-link"), linkPage.url());
    await linkPage.getByLabel("New password").fill("chosen password 1");
    await linkPage.getByRole("button", { name: "Set password" }).click();
    await linkPage.getByText("Password changed.").waitFor();
    await linkContext.close();
    const { context: againContext, page: again } = await newContext(browser);
    await again.goto(process.env.SIGN_IN_LINK);
    await heading(again, "Sign in");
    await again.getByRole("alert").getByText(/unknown, used or expired/).waitFor();
    await signIn(again, process.env.LINK_EMAIL, "chosen password 1");
    await againContext.close();
    step("the operator's sign-in link signs a new user in once, who then chooses a password; used again, it is refused");

    // -- make run's development user, by keyboard alone -----------------------------------------
    const { context: devContext, page: devPage } = await newContext(browser);
    await devPage.goto("/dashboard/");
    await heading(devPage, "Sign in");
    const tabTo = async (name, limit = 40) => {
      for (let i = 0; i < limit; i += 1) {
        await devPage.keyboard.press("Tab");
        const label = await devPage.evaluate(() => {
          const el = document.activeElement;
          return (el.labels?.[0]?.textContent || el.getAttribute("aria-label") || el.textContent || "").trim();
        });
        if (label === name) return;
      }
      throw new Error(`Tab never reached ${name}`);
    };
    await tabTo("Email");
    await devPage.keyboard.type(DEV.email);
    await tabTo("Password");
    await devPage.keyboard.type(DEV.password);
    await devPage.keyboard.press("Enter");
    await heading(devPage, "Overview");
    assert.equal(await devPage.getByRole("region", { name: "Credits" }).getByRole("definition").first().textContent(), "50");
    // The keys list answers slowly: what is typed before the page has loaded stays where it was
    // typed (the page once moved focus to its heading when the list came, cutting typing off).
    const slowList = async (route) => {
      if (route.request().method() === "GET") await new Promise((resolve) => setTimeout(resolve, 1500));
      await route.continue();
    };
    await devPage.route("**/dashboard/api/keys", slowList);
    await tabTo("API keys");
    await devPage.keyboard.press("Enter");
    await heading(devPage, "API keys");
    await tabTo("Key name");
    await devPage.keyboard.type("keyboard-key");
    await devPage.getByText(/^No keys yet\.$|^Your keys$/).waitFor();
    await devPage.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 50))));
    assert.deepEqual(await devPage.evaluate(() => [document.activeElement.name, document.activeElement.value]),
      ["name", "keyboard-key"], "focus and typing kept while the page loaded");
    step("typing into a page whose data is still loading keeps its focus when the data comes");
    // The list still answers slowly: focus is on "Copy key" as soon as the new key shows, not
    // once the list has reloaded (an Enter in between once submitted the emptied name field).
    await devPage.keyboard.press("Enter");
    await devPage.getByRole("region", { name: /^New key/ }).waitFor();
    assert.equal(await devPage.evaluate(() => document.activeElement.textContent), "Copy key",
      "focus on the copy button as the new key shows");
    const devKey = (await devPage.locator("#new-key").textContent()).trim();
    madeKeys.push(devKey);
    await devPage.keyboard.press("Enter");
    await devPage.getByText("Copied.").waitFor();
    // The slow reload answered (the new key's row is listed) before the route goes: a handler
    // still waiting when it went would continue a route already handled.
    await keyRow(devPage, "keyboard-key").waitFor();
    await devPage.unroute("**/dashboard/api/keys", slowList);
    const paid = await removebg(devKey);
    assert.equal(paid.status, 200);
    assert.equal(paid.headers.get("x-credits-charged"), "1");
    await tabTo("Revoke keyboard-key");
    await devPage.keyboard.press("Enter");
    await devPage.getByRole("dialog").waitFor();
    await devPage.keyboard.press("Shift+Tab");
    await devPage.keyboard.press("Enter");
    await keyRow(devPage, "keyboard-key").getByText(/^Revoked/).waitFor();
    step("by keyboard alone, the development user signs in, creates and copies a key (it works: 1 credit), and revokes it");
    await devContext.close();
    await aliceContext.close();
    assert.deepEqual(dialogs, [], "browser dialogs opened");
  } catch (error) {
    if (current) await current.screenshot({ path: path.join(OUT, "failure.png"), fullPage: true }).catch(() => {});
    throw error;
  } finally {
    fs.writeFileSync(path.join(OUT, "keys.txt"), madeKeys.join("\n"));
    fs.writeFileSync(path.join(OUT, "screenshots.txt"), screenshots.join("\n"));
    await browser.close();
  }
}

main().then(
  () => console.log(`# screenshots: ${path.join(OUT, "screenshots")}`),
  async (error) => {
    console.log(`not ok - ${error.stack || error}`);
    process.exitCode = 1;
  },
);
