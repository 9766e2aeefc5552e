// A small scripted HTTP server on 127.0.0.1 for the unit tests: each request is recorded
// (headers, raw body, parsed multipart form, arrival time) and answered by the next scripted
// reply, or by the last one when the script runs out.
import http from "node:http";

export const PNG_1x1 = Buffer.from(
  "89504e470d0a1a0a0000000d4948445200000001000000010806000000" +
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a0e3" +
    "d5f20000000049454e44ae426082",
  "hex",
);

export const SUCCESS_HEADERS = {
  "content-type": "image/png",
  "x-width": "321",
  "x-height": "481",
  "x-type": "person",
  "x-credits-charged": "1",
  "x-credits-remaining": "49.5",
  "x-foreground-top": "10",
  "x-foreground-left": "20",
  "x-foreground-width": "200",
  "x-foreground-height": "400",
  "x-ratelimit-limit": "500",
  "x-ratelimit-remaining": "499",
  "x-ratelimit-reset": "1790000000",
  "x-request-id": "req-ok-1",
};

/** A scripted reply: `{ status, headers, body }`, or `"reset"` (destroy the socket), or
 * `{ delayMs, ...reply }` (answer late). */
export function ok(extraHeaders = {}) {
  return { status: 200, headers: { ...SUCCESS_HEADERS, ...extraHeaders }, body: PNG_1x1 };
}

export function error(status, code, { title = "Title", detail = "Detail", headers = {} } = {}) {
  return {
    status,
    headers: { "content-type": "application/json", "x-request-id": `req-${status}`, ...headers },
    body: JSON.stringify({ errors: [{ title, code, detail }] }),
  };
}

export async function startFakeServer(script = [ok()]) {
  const requests = [];
  const replies = [...script];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const record = { method: req.method, url: req.url, headers: req.headers, body, at: Date.now() };
    if ((req.headers["content-type"] ?? "").startsWith("multipart/form-data")) {
      record.form = await new Response(body, { headers: { "content-type": req.headers["content-type"] } }).formData();
    }
    requests.push(record);
    const reply = replies.length > 1 ? replies.shift() : replies[0];
    const answer = typeof reply === "function" ? reply(record, requests.length) : reply;
    if (answer === "reset") {
      req.socket.destroy();
      return;
    }
    if (answer.delayMs) await new Promise((resolve) => setTimeout(resolve, answer.delayMs));
    if (res.destroyed) return;
    res.writeHead(answer.status, answer.headers);
    res.end(answer.body);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    requests,
    /** Replaces what the next requests get. */
    script(next) {
      replies.splice(0, replies.length, ...next);
    },
    async close() {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
