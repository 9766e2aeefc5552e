/** Every failure the SDK reports is a `ClearBGError`; the server's answers are `APIError`s. */
export class ClearBGError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** One entry of the server's error body `{"errors":[{"title","code","detail"}]}`. */
export interface ErrorEntry {
  title?: string;
  code?: string;
  detail?: string;
}

/** The server answered with an error status. */
export class APIError extends ClearBGError {
  /** The HTTP status, e.g. 402. */
  readonly status: number;
  /** The machine-readable code from the body, e.g. `insufficient_credits` (undefined when the body had none). */
  readonly code: string | undefined;
  readonly title: string;
  readonly detail: string;
  /** The gateway's `X-Request-Id`: quote it when asking for help. */
  readonly requestId: string | undefined;
  /** Seconds the server asked to wait (`Retry-After`), when it said. */
  readonly retryAfter: number | undefined;
  readonly headers: Headers;
  /** The parsed JSON body, or the body as text when it was not JSON. */
  readonly body: unknown;

  constructor(status: number, entry: Required<ErrorEntry> | { title: string; code: undefined; detail: string },
    headers: Headers, body: unknown, retryAfter: number | undefined) {
    const id = headers.get("x-request-id") ?? undefined;
    super(`${status} ${entry.code ?? entry.title}: ${entry.detail}${id ? ` (request id ${id})` : ""}`);
    this.status = status;
    this.code = entry.code;
    this.title = entry.title;
    this.detail = entry.detail;
    this.requestId = id;
    this.retryAfter = retryAfter;
    this.headers = headers;
    this.body = body;
  }

  /** @internal The error for an answer: the class for its status, the fields from its body. */
  static fromResponse(status: number, statusText: string, headers: Headers, raw: Uint8Array,
    retryAfter: number | undefined): APIError {
    const text = new TextDecoder().decode(raw);
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: a proxy's or load balancer's page; reported below with its status
    }
    const first = (body as { errors?: unknown })?.errors;
    const entry = Array.isArray(first) && first.length > 0 && typeof first[0] === "object" && first[0] !== null
      ? (first[0] as ErrorEntry)
      : undefined;
    const title = statusText || `HTTP ${status}`;
    const fields = entry && typeof entry.code === "string"
      ? { title: String(entry.title ?? title), code: entry.code, detail: String(entry.detail ?? entry.title ?? title) }
      : { title, code: undefined, detail: readable(status, title, text) };
    const Class = errorClassFor(status);
    return new Class(status, fields, headers, body, retryAfter);
  }
}

function readable(status: number, title: string, text: string): string {
  const snippet = text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 200);
  return `HTTP ${status} ${title} without a ClearBG error body${snippet ? `: ${snippet}` : ""}`;
}

export class BadRequestError extends APIError {}
export class AuthenticationError extends APIError {}
export class InsufficientCreditsError extends APIError {}
export class PermissionDeniedError extends APIError {}
export class ConflictError extends APIError {}
export class UnprocessableEntityError extends APIError {}
export class RateLimitError extends APIError {}
export class InternalServerError extends APIError {}
export class ServiceUnavailableError extends APIError {}

const BY_STATUS: Record<number, typeof APIError> = {
  400: BadRequestError,
  401: AuthenticationError,
  402: InsufficientCreditsError,
  403: PermissionDeniedError,
  409: ConflictError,
  422: UnprocessableEntityError,
  429: RateLimitError,
  503: ServiceUnavailableError,
};

function errorClassFor(status: number): typeof APIError {
  return BY_STATUS[status] ?? (status >= 500 ? InternalServerError : APIError);
}

/** The request did not get an answer: the connection failed, was reset or closed early. */
export class APIConnectionError extends ClearBGError {
  constructor(message = "Connection error.", options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The request got no complete answer within the client's `timeout`. */
export class APITimeoutError extends APIConnectionError {
  constructor(message = "Request timed out.", options?: { cause?: unknown }) {
    super(message, options);
  }
}
