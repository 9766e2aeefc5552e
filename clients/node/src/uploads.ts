import * as fs from "node:fs";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * What `imageFile` and `bgImageFile` accept: a path (string or `file:` URL), bytes (Buffer,
 * Uint8Array, ArrayBuffer), a Blob or File, or a readable stream (Node's, the web's, or any
 * async iterable of chunks).
 */
export type Uploadable =
  | string
  | URL
  | Uint8Array
  | ArrayBuffer
  | Blob
  | NodeJS.ReadableStream
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array | string>;

/** @internal */
export interface Upload {
  blob: Blob;
  filename: string;
}

type OpenAsBlob = (path: string) => Promise<Blob>;

/**
 * @internal A Blob that can be sent as often as a retry needs: a file is opened lazily with
 * `fs.openAsBlob` where Node has it (20+; read from disk on each send), else read once; a stream
 * can be read only once, so its chunks are collected into a Blob first.
 */
export async function toUpload(value: Uploadable, fallbackName: string): Promise<Upload> {
  if (typeof value === "string" || value instanceof URL) {
    const path = typeof value === "string" ? value : fileURLToPath(value);
    // stat first: it names the path in its error (ENOENT, EISDIR below), openAsBlob does not.
    const stat = await fs.promises.stat(path);
    if (!stat.isFile()) throw Object.assign(new Error(`EISDIR: not a file: '${path}'`), { code: "EISDIR", path });
    const openAsBlob = (fs as unknown as { openAsBlob?: OpenAsBlob }).openAsBlob;
    const blob = openAsBlob ? await openAsBlob(path) : new Blob([await fs.promises.readFile(path)]);
    return { blob, filename: basename(path) };
  }
  if (value instanceof Blob) {
    const name = (value as { name?: unknown }).name;
    return { blob: value, filename: typeof name === "string" && name ? name : fallbackName };
  }
  if (value instanceof Uint8Array || value instanceof ArrayBuffer) {
    return { blob: new Blob([value]), filename: fallbackName };
  }
  if (isAsyncIterable(value)) {
    const chunks: Uint8Array[] = [];
    for await (const chunk of value) {
      chunks.push(typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk);
    }
    const path = (value as { path?: unknown }).path; // fs.createReadStream keeps its path
    return { blob: new Blob(chunks), filename: typeof path === "string" ? basename(path) : fallbackName };
  }
  if (value && typeof (value as ReadableStream).getReader === "function") {
    const reader = (value as ReadableStream<Uint8Array>).getReader();
    const chunks: Uint8Array[] = [];
    for (;;) {
      const { done, value: chunk } = await reader.read();
      if (done) break;
      chunks.push(chunk);
    }
    return { blob: new Blob(chunks), filename: fallbackName };
  }
  throw new TypeError(
    `cannot upload ${describe(value)}: give a path, a Buffer or Uint8Array, an ArrayBuffer, a Blob or a readable stream`,
  );
}

function isAsyncIterable(value: unknown): value is AsyncIterable<Uint8Array | string> {
  return value !== null && typeof value === "object" && Symbol.asyncIterator in value;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return `a ${typeof value}`;
  return `a ${(value as object).constructor?.name ?? "object"}`;
}
