// The dashboard's calls (clearbg.v1.DashboardService through the gateway). Changes carry the
// CSRF token GetSession gave; the session itself is an HttpOnly cookie the page never sees.
let csrfToken = "";

export function setCsrf(token) {
  csrfToken = token || "";
}

export class ApiError extends Error {
  constructor(status, code, detail, retryAfter) {
    super(detail || `The server answered ${status}.`);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function failure(response) {
  let code = "error";
  let detail = `The server answered ${response.status}.`;
  try {
    const body = await response.json();
    const first = body.errors && body.errors[0];
    if (first) ({ code, detail } = { code: first.code, detail: first.detail || first.title });
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, code, detail, response.headers.get("retry-after"));
}

export async function call(method, path, body) {
  const headers = { accept: "application/json" };
  if (method !== "GET") headers["x-csrf-token"] = csrfToken;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(`/dashboard/api/${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (!response.ok) throw await failure(response);
  return response.json();
}

// "Try it": a removal form (as POST /v1.0/removebg takes it); the answer is the image.
export async function tryPhoto(form) {
  const response = await fetch("/dashboard/api/try", {
    method: "POST",
    headers: { "x-csrf-token": csrfToken },
    body: form,
    credentials: "same-origin",
  });
  if (!response.ok) throw await failure(response);
  return { blob: await response.blob(), headers: response.headers };
}
