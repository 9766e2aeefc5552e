import { randomUUID } from "node:crypto";

import {
  APIConnectionError,
  APIError,
  APITimeoutError,
  AuthenticationError,
  BadRequestError,
  ClearBGError,
  ConflictError,
  InsufficientCreditsError,
  InternalServerError,
  PermissionDeniedError,
  RateLimitError,
  ServiceUnavailableError,
  UnprocessableEntityError,
} from "./errors.js";
import { toUpload, type Uploadable } from "./uploads.js";
import { VERSION } from "./version.js";

/** The API page's address; `/v1.0/...` is appended. */
export const DEFAULT_BASE_URL = "https://api.clearbg.ai";
/** Milliseconds one attempt may take (upload, processing and download). */
export const DEFAULT_TIMEOUT_MS = 180_000;
/** Retries after the first attempt (so up to 3 attempts). */
export const DEFAULT_MAX_RETRIES = 2;

export interface ClearBGOptions {
  /** Defaults to the `CLEARBG_API_KEY` environment variable. */
  apiKey?: string;
  /** Defaults to `CLEARBG_BASE_URL`, else https://api.clearbg.ai. */
  baseUrl?: string;
  /** Milliseconds per attempt (default 180000). */
  timeout?: number;
  /** Retries of a failed attempt that may succeed later (default 2). */
  maxRetries?: number;
  /** A `fetch` to use instead of the global one (tests, proxies). */
  fetch?: typeof fetch;
  /** Receives one line per attempt and retry; default: stderr when `CLEARBG_LOG=debug`, else nothing. */
  log?: (line: string) => void;
}

/** Per-call overrides. */
export interface RequestOptions {
  /** Your own key for this logical call (default: a fresh UUID v4, the same on its retries). */
  idempotencyKey?: string;
  timeout?: number;
  maxRetries?: number;
  /** Aborts the call, retries included. */
  signal?: AbortSignal;
  /**
   * Ends the call's waits to try again (a Retry-After, a backoff): it then fails with this
   * signal's reason instead of another attempt. Unlike `signal`, an attempt on the wire is not
   * cut, so an answer already charged is not lost (the CLI's Ctrl-C).
   */
  retrySignal?: AbortSignal;
}

// `(string & {})` keeps the editor's completion of the known values while accepting others.
type Open = string & {};
export type Size = "auto" | "preview" | "small" | "regular" | "medium" | "hd" | "full" | "4k" | "50MP" | Open;
export type ForegroundType = "auto" | "person" | "product" | "animal" | "car" | "other" | "graphic" | "transportation" | Open;
export type TypeLevel = "1" | "2" | "none" | "latest" | 1 | 2 | Open;
export type Format = "auto" | "png" | "jpg" | "webp" | "zip" | Open;
export type Channels = "rgba" | "alpha" | Open;

/** The fields of `POST /v1.0/removebg`, camel-cased; see the README for each one's values. */
export interface RemoveBackgroundParams {
  /** The photo: a path, Buffer/Uint8Array, Blob/File or readable stream. */
  imageFile?: Uploadable;
  /** The photo's address, fetched by the server. */
  imageUrl?: string;
  /** The photo as base64 (a `data:` URL prefix is accepted). */
  imageFileB64?: string;
  size?: Size;
  type?: ForegroundType;
  typeLevel?: TypeLevel;
  format?: Format;
  /** Hex (3, 4, 6 or 8 digits, `#` optional) or a CSS colour name. */
  bgColor?: string;
  bgImageUrl?: string;
  /** A background picture: the same kinds as `imageFile`. */
  bgImageFile?: Uploadable;
  channels?: Channels;
  crop?: boolean;
  /** e.g. `"10px"`, `"5%"`, `"10px 20px"`, `"1% 2% 3% 4%"`. */
  cropMargin?: string;
  /** `"10%"`..`"100%"` or `"original"`. */
  scale?: string;
  /** `"original"`, `"center"`, `"50%"` or `"30% 70%"`. */
  position?: string;
  /** `"x1 y1 x2 y2"` in px or %. */
  roi?: string;
  addShadow?: boolean;
  shadowType?: string;
  shadowOpacity?: number;
  semitransparency?: boolean;
  /** Fields this SDK does not know yet, sent as given (REST names). */
  extraFields?: Record<string, string | number | boolean>;
}

const FIELDS: Record<string, string> = {
  imageUrl: "image_url",
  imageFileB64: "image_file_b64",
  size: "size",
  type: "type",
  typeLevel: "type_level",
  format: "format",
  bgColor: "bg_color",
  bgImageUrl: "bg_image_url",
  channels: "channels",
  crop: "crop",
  cropMargin: "crop_margin",
  scale: "scale",
  position: "position",
  roi: "roi",
  addShadow: "add_shadow",
  shadowType: "shadow_type",
  shadowOpacity: "shadow_opacity",
  semitransparency: "semitransparency",
};
const FILE_FIELDS: Record<string, string> = { imageFile: "image_file", bgImageFile: "bg_image_file" };

/** The subject's box in the output (alpha above 12/255): `X-Foreground-*`. */
export interface Foreground {
  top: number;
  left: number;
  width: number;
  height: number;
}

/** `X-RateLimit-*`: megapixel-images per minute for this key. */
export interface RateLimit {
  limit: number;
  remaining: number;
  /** Unix seconds at which the key's allowance is full again. */
  reset: number;
}

export interface RemoveBackgroundResult {
  /** The picture (PNG, JPG, WebP or ZIP, as `contentType` says). */
  data: Uint8Array;
  width: number;
  height: number;
  /** `X-Type` (undefined with `typeLevel: "none"`). */
  type: string | undefined;
  creditsCharged: number;
  creditsRemaining: number;
  foreground: Foreground | undefined;
  rateLimit: RateLimit | undefined;
  contentType: string;
  requestId: string | undefined;
  /** True when the server answered from its store of an earlier call with the same idempotency key. */
  replayed: boolean;
  /** The idempotency key this call was sent with. */
  idempotencyKey: string;
  headers: Headers;
}

export interface Account {
  credits: { total: number; subscription: number; payg: number; enterprise: number };
  freeCalls: number;
  sizes: string;
  requestId: string | undefined;
}

interface Answer {
  response: Response;
  body: Uint8Array;
}

/**
 * One pause shared by every call of a client: a 429 or 503 with Retry-After holds them all. Once
 * it has passed, calls go one at a time, oldest first, until one gets through, so a call the limit
 * refused is not overtaken again and again by newer ones (a batch would starve one photo).
 */
class RetryGate {
  #until = 0;
  /** A Retry-After was met and no call has got through since. */
  #limited = false;
  /** The one call let through while limited. */
  #passing: number | undefined;
  #tickets = 0;
  /** Calls of this client that are not on the wire now, by age. */
  readonly #ready = new Set<number>();
  /** Retry-Afters met so far, and how many each call's attempt on the wire went out after. */
  #pauses = 0;
  readonly #sent = new Map<number, number>();
  #wake: () => void = () => {};
  #changed = this.#renew();

  #renew(): Promise<void> {
    return new Promise((resolve) => (this.#wake = resolve));
  }

  #notify(): void {
    this.#wake();
    this.#changed = this.#renew();
  }

  /** A new call: its ticket, older than every later call's. */
  join(): number {
    const ticket = this.#tickets++;
    this.#ready.add(ticket);
    return ticket;
  }

  leave(ticket: number): void {
    this.#ready.delete(ticket);
    this.#sent.delete(ticket);
    if (this.#passing === ticket) this.#passing = undefined;
    this.#notify();
  }

  pause(untilMs: number): void {
    this.#until = Math.max(this.#until, untilMs);
    this.#limited = true;
    this.#pauses++;
  }

  /**
   * The attempt of `ticket` has its answer; `through`: it was not held back by a Retry-After.
   * Only an attempt sent after the last Retry-After shows the limit has room again.
   */
  answered(ticket: number, through: boolean): void {
    this.#ready.add(ticket);
    if (this.#passing === ticket) this.#passing = undefined;
    if (through && this.#sent.get(ticket) === this.#pauses) this.#limited = false;
    this.#notify();
  }

  async wait(ticket: number, signal: AbortSignal | undefined, log: (line: string) => void, label: string): Promise<void> {
    for (;;) {
      const left = this.#until - Date.now();
      if (left > 0) {
        log(`${label} waits ${(left / 1000).toFixed(3)} s for the server's Retry-After`);
        await sleep(left, signal);
        continue;
      }
      if (!this.#limited) break;
      if (this.#passing === undefined && ticket === Math.min(...this.#ready)) {
        this.#passing = ticket;
        break;
      }
      await abortable(this.#changed, signal);
    }
    this.#ready.delete(ticket);
    this.#sent.set(ticket, this.#pauses);
  }
}

export class ClearBG {
  static readonly ClearBGError = ClearBGError;
  static readonly APIError = APIError;
  static readonly BadRequestError = BadRequestError;
  static readonly AuthenticationError = AuthenticationError;
  static readonly InsufficientCreditsError = InsufficientCreditsError;
  static readonly PermissionDeniedError = PermissionDeniedError;
  static readonly ConflictError = ConflictError;
  static readonly UnprocessableEntityError = UnprocessableEntityError;
  static readonly RateLimitError = RateLimitError;
  static readonly InternalServerError = InternalServerError;
  static readonly ServiceUnavailableError = ServiceUnavailableError;
  static readonly APIConnectionError = APIConnectionError;
  static readonly APITimeoutError = APITimeoutError;

  readonly baseUrl: string;
  readonly timeout: number;
  readonly maxRetries: number;
  readonly #apiKey: string;
  readonly #fetch: typeof fetch;
  readonly #log: (line: string) => void;
  readonly #gate = new RetryGate();

  constructor(options: ClearBGOptions = {}) {
    const apiKey = options.apiKey ?? process.env.CLEARBG_API_KEY;
    if (!apiKey) {
      throw new ClearBGError(
        "No API key: pass new ClearBG({ apiKey }) or set the CLEARBG_API_KEY environment variable.",
      );
    }
    this.#apiKey = apiKey;
    this.baseUrl = (options.baseUrl || process.env.CLEARBG_BASE_URL || DEFAULT_BASE_URL).replace(/\/+$/, "");
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    this.maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    if (!(this.timeout > 0)) throw new TypeError(`timeout must be a positive number of milliseconds, got ${options.timeout}`);
    if (!Number.isInteger(this.maxRetries) || this.maxRetries < 0) {
      throw new TypeError(`maxRetries must be a whole number >= 0, got ${options.maxRetries}`);
    }
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#log = options.log ?? (process.env.CLEARBG_LOG === "debug"
      ? (line) => process.stderr.write(`[clearbg ${new Date().toISOString()}] ${line}\n`)
      : () => {});
  }

  /** `POST /v1.0/removebg`: the photo with its background removed, and what the server said about it. */
  async removeBackground(params: RemoveBackgroundParams, options: RequestOptions = {}): Promise<RemoveBackgroundResult> {
    const form = await toForm(params);
    const idempotencyKey = options.idempotencyKey ?? randomUUID();
    const { response, body } = await this.#request("POST", "/v1.0/removebg", options, {
      headers: { "Idempotency-Key": idempotencyKey },
      body: () => copyForm(form),
      label: `POST /v1.0/removebg [${idempotencyKey}]`,
    });
    const h = response.headers;
    return {
      data: body,
      width: num(h.get("x-width")),
      height: num(h.get("x-height")),
      type: h.get("x-type") ?? undefined,
      creditsCharged: num(h.get("x-credits-charged")),
      creditsRemaining: num(h.get("x-credits-remaining")),
      foreground: h.has("x-foreground-top")
        ? {
            top: num(h.get("x-foreground-top")),
            left: num(h.get("x-foreground-left")),
            width: num(h.get("x-foreground-width")),
            height: num(h.get("x-foreground-height")),
          }
        : undefined,
      rateLimit: h.has("x-ratelimit-limit")
        ? {
            limit: num(h.get("x-ratelimit-limit")),
            remaining: num(h.get("x-ratelimit-remaining")),
            reset: num(h.get("x-ratelimit-reset")),
          }
        : undefined,
      contentType: h.get("content-type") ?? "application/octet-stream",
      requestId: h.get("x-request-id") ?? undefined,
      replayed: (h.get("idempotent-replayed") ?? "").toLowerCase() === "true",
      idempotencyKey,
      headers: h,
    };
  }

  /** `GET /v1.0/account`: the credits and the month's free calls. */
  async account(options: Omit<RequestOptions, "idempotencyKey"> = {}): Promise<Account> {
    const { response, body } = await this.#request("GET", "/v1.0/account", options, {
      headers: {},
      body: () => undefined,
      label: "GET /v1.0/account",
    });
    let attributes: {
      credits?: Record<string, unknown>;
      api?: { free_calls?: unknown; sizes?: unknown };
    };
    try {
      attributes = JSON.parse(new TextDecoder().decode(body)).data.attributes;
    } catch (cause) {
      throw new ClearBGError("GET /v1.0/account answered 200 without the documented JSON body", { cause });
    }
    const credits = attributes.credits ?? {};
    return {
      credits: {
        total: Number(credits.total ?? 0),
        subscription: Number(credits.subscription ?? 0),
        payg: Number(credits.payg ?? 0),
        enterprise: Number(credits.enterprise ?? 0),
      },
      freeCalls: Number(attributes.api?.free_calls ?? 0),
      sizes: String(attributes.api?.sizes ?? ""),
      requestId: response.headers.get("x-request-id") ?? undefined,
    };
  }

  async #request(
    method: string,
    path: string,
    options: Omit<RequestOptions, "idempotencyKey">,
    call: { headers: Record<string, string>; body: () => FormData | undefined; label: string },
  ): Promise<Answer> {
    const maxRetries = options.maxRetries ?? this.maxRetries;
    const timeout = options.timeout ?? this.timeout;
    const headers = {
      "X-Api-Key": this.#apiKey,
      "User-Agent": `clearbg-node/${VERSION}`,
      ...call.headers,
    };
    const [waits, unhook] = either(options.signal, options.retrySignal);
    const ticket = this.#gate.join();
    try {
      for (let attempt = 0; ; attempt++) {
        await this.#gate.wait(ticket, waits, this.#log, call.label);
        this.#log(`${call.label} attempt ${attempt + 1} of ${maxRetries + 1}`);
        let failure: ClearBGError;
        let wait: number;
        let through = false;
        try {
          const answer = await this.#attempt(method, this.baseUrl + path, headers, call.body(), timeout, options.signal);
          const { response, body } = answer;
          if (response.ok) {
            this.#log(`${call.label} attempt ${attempt + 1}: ${response.status}`);
            through = true;
            return answer;
          }
          const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
          const error = APIError.fromResponse(response.status, response.statusText, response.headers, body, retryAfter);
          this.#log(`${call.label} attempt ${attempt + 1}: ${response.status} ${error.code ?? ""}` +
            (retryAfter === undefined ? "" : `, Retry-After ${response.headers.get("retry-after")}`));
          wait = retryAfter !== undefined ? retryAfter * 1000 : backoff(attempt);
          if (retryAfter !== undefined && (error.status === 429 || error.status === 503)) {
            this.#gate.pause(Date.now() + wait);
          } else {
            through = true;
          }
          if (!retryable(error) || attempt >= maxRetries) throw error;
          failure = error;
        } catch (error) {
          if (!(error instanceof APIConnectionError) || attempt >= maxRetries) throw error;
          this.#log(`${call.label} attempt ${attempt + 1}: ${error.message}`);
          failure = error;
          wait = backoff(attempt);
        } finally {
          this.#gate.answered(ticket, through);
        }
        this.#log(`${call.label} retrying in ${(wait / 1000).toFixed(3)} s after ${failure.constructor.name}`);
        await sleep(wait, waits);
      }
    } finally {
      this.#gate.leave(ticket);
      unhook();
    }
  }

  async #attempt(method: string, url: string, headers: Record<string, string>, body: FormData | undefined,
    timeout: number, signal: AbortSignal | undefined): Promise<Answer> {
    signal?.throwIfAborted();
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeout);
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const response = await this.#fetch(url, { method, headers, body, signal: controller.signal });
      // The timeout covers the whole answer, so the body is read before the timer stops.
      return { response, body: new Uint8Array(await response.arrayBuffer()) };
    } catch (cause) {
      if (signal?.aborted) throw signal.reason ?? cause;
      if (timedOut) throw new APITimeoutError(`Request timed out after ${timeout} ms.`, { cause });
      const reason = (cause as { cause?: { code?: string; message?: string } })?.cause;
      const detail = reason?.code ?? reason?.message ?? (cause as Error)?.message;
      throw new APIConnectionError(`Connection error${detail ? ` (${detail})` : ""}: ${url}`, { cause });
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }
}

function retryable(error: APIError): boolean {
  const { status } = error;
  if (status === 409) return error.code === "idempotency_in_flight";
  return status === 408 || status === 429 || status === 500 || status === 502 || status === 503 || status === 504;
}

/** Seconds from `Retry-After` (delta seconds or an HTTP date), undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, (date - Date.now()) / 1000);
}

/** 0.5 s * 2^n, at most 8 s, less up to a quarter at random so clients that failed together spread out. */
function backoff(attempt: number): number {
  const base = Math.min(8000, 500 * 2 ** attempt);
  return base * (1 - Math.random() * 0.25);
}

/** `promise`, or the signal's reason once it is aborted. */
function abortable(promise: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}

/** A signal aborted when either is (AbortSignal.any needs Node 20.3), and what unhooks it. */
function either(a: AbortSignal | undefined, b: AbortSignal | undefined): [AbortSignal | undefined, () => void] {
  if (!a || !b) return [a ?? b, () => {}];
  const both = new AbortController();
  const fromA = () => both.abort(a.reason);
  const fromB = () => both.abort(b.reason);
  if (a.aborted) fromA();
  else if (b.aborted) fromB();
  a.addEventListener("abort", fromA, { once: true });
  b.addEventListener("abort", fromB, { once: true });
  return [both.signal, () => {
    a.removeEventListener("abort", fromA);
    b.removeEventListener("abort", fromB);
  }];
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function num(value: string | null): number {
  return value === null ? NaN : Number(value);
}

function text(value: string | number | boolean): string {
  return typeof value === "string" ? value : String(value);
}

async function toForm(params: RemoveBackgroundParams): Promise<FormData> {
  if (params === null || typeof params !== "object") {
    throw new TypeError("removeBackground takes an object of parameters, e.g. { imageFile: 'photo.jpg' }");
  }
  const form = new FormData();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue;
    if (name in FILE_FIELDS) {
      const upload = await toUpload(value as Uploadable, name === "imageFile" ? "image" : "background");
      form.append(FILE_FIELDS[name]!, upload.blob, upload.filename);
    } else if (name in FIELDS) {
      form.append(FIELDS[name]!, text(value as string | number | boolean));
    } else if (name === "extraFields") {
      for (const [field, extra] of Object.entries(value as Record<string, string | number | boolean>)) {
        if (extra !== undefined && extra !== null) form.append(field, text(extra));
      }
    } else {
      throw new TypeError(
        `unknown parameter "${name}"; known: ${[...Object.keys(FILE_FIELDS), ...Object.keys(FIELDS), "extraFields"].join(", ")}`,
      );
    }
  }
  return form;
}

/** A fresh FormData per attempt (the Blobs in it are shared: re-read, never re-buffered). */
function copyForm(form: FormData): FormData {
  const copy = new FormData();
  form.forEach((value, name) => {
    if (typeof value === "string") copy.append(name, value);
    else copy.append(name, value, (value as File).name);
  });
  return copy;
}
