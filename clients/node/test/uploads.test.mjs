// imageFile / bgImageFile: paths, bytes, Blobs and streams arrive byte for byte, with a file
// name; a stream is read once and resent whole on a retry.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";

import { ClearBG } from "clearbg";
import { error, ok, startFakeServer } from "./fake-server.mjs";

let server;
let dir;
const PHOTO = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251));
before(async () => {
  server = await startFakeServer();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "clearbg-uploads-"));
  fs.writeFileSync(path.join(dir, "holiday.jpg"), PHOTO);
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
  return server.close();
});

function fresh(script = [ok()]) {
  server.requests.length = 0;
  server.script(script);
  return new ClearBG({ apiKey: "k", baseUrl: server.url });
}

async function sent(request, field = "image_file") {
  const file = request.form.get(field);
  assert.ok(file instanceof Blob, `${field} is a file part`);
  return { bytes: Buffer.from(await file.arrayBuffer()), name: file.name };
}

const KINDS = {
  "a path": () => path.join(dir, "holiday.jpg"),
  "a file: URL": () => new URL(`file://${path.join(dir, "holiday.jpg")}`),
  "a Buffer": () => PHOTO,
  "a Uint8Array": () => new Uint8Array(PHOTO),
  "an ArrayBuffer": () => PHOTO.buffer.slice(PHOTO.byteOffset, PHOTO.byteOffset + PHOTO.length),
  "a Blob": () => new Blob([PHOTO]),
  "a File": () => new File([PHOTO], "named.jpg"),
  "an fs read stream": () => fs.createReadStream(path.join(dir, "holiday.jpg"), { highWaterMark: 16 * 1024 }),
  "a Readable of chunks": () => Readable.from([PHOTO.subarray(0, 1000), PHOTO.subarray(1000)]),
  "a web ReadableStream": () => Readable.toWeb(Readable.from([PHOTO.subarray(0, 5), PHOTO.subarray(5)])),
};
const NAMES = {
  "a path": "holiday.jpg", "a file: URL": "holiday.jpg", "a File": "named.jpg", "an fs read stream": "holiday.jpg",
};

for (const [kind, make] of Object.entries(KINDS)) {
  test(`imageFile as ${kind} arrives byte for byte, and again on a retry`, async () => {
    const c = fresh([error(503, "overloaded", { headers: { "retry-after": "0" } }), ok()]);
    await c.removeBackground({ imageFile: make(), size: "preview" });
    assert.equal(server.requests.length, 2);
    for (const request of server.requests) {
      assert.match(request.headers["content-type"], /^multipart\/form-data; boundary=/);
      const { bytes, name } = await sent(request);
      assert.equal(bytes.length, PHOTO.length);
      assert.ok(bytes.equals(PHOTO), "same bytes");
      assert.equal(name, NAMES[kind] ?? "image");
      assert.equal(request.form.get("size"), "preview");
    }
  });
}

test("bgImageFile is uploaded as bg_image_file beside image_file", async () => {
  const c = fresh();
  const background = Buffer.from("background bytes");
  await c.removeBackground({ imageFile: PHOTO, bgImageFile: new Blob([background]) });
  const [request] = server.requests;
  assert.ok((await sent(request)).bytes.equals(PHOTO));
  const bg = await sent(request, "bg_image_file");
  assert.ok(bg.bytes.equals(background));
  assert.equal(bg.name, "background");
});

test("a missing file fails before any request", async () => {
  const c = fresh();
  await assert.rejects(c.removeBackground({ imageFile: path.join(dir, "nope.jpg") }), { code: "ENOENT" });
  assert.equal(server.requests.length, 0);
});

test("something that is no upload is a TypeError before any request", async () => {
  const c = fresh();
  await assert.rejects(c.removeBackground({ imageFile: 42 }), /cannot upload a number: give a path/);
  await assert.rejects(c.removeBackground({ imageFile: { not: "a file" } }), /cannot upload a Object/);
  assert.equal(server.requests.length, 0);
});

test("a folder is not a file", async () => {
  const c = fresh();
  await assert.rejects(c.removeBackground({ imageFile: dir }), { code: "EISDIR" });
  assert.equal(server.requests.length, 0);
});
