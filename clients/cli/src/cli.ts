import fs from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";

import { APIConnectionError, APIError, APITimeoutError, ClearBG, type RemoveBackgroundParams } from "clearbg";

import {
  collectJobs,
  existingOutput,
  FORMAT_EXTENSIONS,
  listFolder,
  outputPath,
  UsageError,
  writeOutput,
  type Job,
  type Layout,
} from "./files.js";
import { ProgressBar, type Counts } from "./progress.js";

// Kept equal to package.json's version by test/cli.test.mjs.
export const VERSION = "0.1.0";
/** Enough retries that a run limited to a few images a minute still completes. */
export const DEFAULT_MAX_RETRIES = 10;
export const DEFAULT_CONCURRENCY = 4;
/** How often --watch lists the folders again; a new file is taken once its size held still for one interval. */
const WATCH_INTERVAL_MS = Number(process.env.CLEARBG_WATCH_INTERVAL_MS) || 1000;

const USAGE = `Usage:
  clearbg remove PATH... [-o OUTDIR] [--size S] [--type T] [--type-level L] [--format F]
      [--bg-color C] [--bg-image-url U] [--bg-image-file F] [--channels C] [--crop]
      [--crop-margin M] [--scale S] [--position P] [--roi R] [--add-shadow]
      [--recursive] [--concurrency N] [--skip-existing] [--watch] [--json]
      [--api-key K] [--base-url U] [--max-retries N] [--timeout SECONDS]
  clearbg account [--json] [--api-key K] [--base-url U]
  clearbg --help | --version

The key and the server come from --api-key / --base-url, else CLEARBG_API_KEY / CLEARBG_BASE_URL.
Exit status: 0 all done, 1 some file failed, 2 usage error.`;

const CONNECTION: ParseArgsConfig["options"] = {
  "api-key": { type: "string" },
  "base-url": { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

/** The picture options: CLI name -> SDK parameter. */
const PICTURE_STRINGS: Record<string, keyof RemoveBackgroundParams> = {
  size: "size",
  type: "type",
  "type-level": "typeLevel",
  format: "format",
  "bg-color": "bgColor",
  "bg-image-url": "bgImageUrl",
  "bg-image-file": "bgImageFile",
  channels: "channels",
  "crop-margin": "cropMargin",
  scale: "scale",
  position: "position",
  roi: "roi",
};
const PICTURE_FLAGS: Record<string, keyof RemoveBackgroundParams> = { crop: "crop", "add-shadow": "addShadow" };

const REMOVE: ParseArgsConfig["options"] = {
  ...CONNECTION,
  ...Object.fromEntries(Object.keys(PICTURE_STRINGS).map((name) => [name, { type: "string" as const }])),
  ...Object.fromEntries(Object.keys(PICTURE_FLAGS).map((name) => [name, { type: "boolean" as const }])),
  output: { type: "string", short: "o" },
  recursive: { type: "boolean", short: "r" },
  concurrency: { type: "string" },
  "skip-existing": { type: "boolean" },
  watch: { type: "boolean" },
  "max-retries": { type: "string" },
  timeout: { type: "string" },
};

type Values = Record<string, string | boolean | undefined>;

export interface Streams {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream | NodeJS.WritableStream;
}

/** Runs the command line; resolves to the exit status. */
export async function main(argv: string[], streams: Streams = process): Promise<number> {
  const err = (line: string) => streams.stderr.write(`${line}\n`);
  try {
    const [command, ...rest] = argv;
    if (command === undefined || command === "--help" || command === "-h" || command === "help") {
      streams.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    }
    if (command === "--version" || command === "-V") {
      streams.stdout.write(`clearbg-cli ${VERSION}\n`);
      return 0;
    }
    if (command === "remove") return await remove(parse(rest, REMOVE), streams);
    if (command === "account") return await account(parse(rest, CONNECTION), streams);
    throw new UsageError(`unknown command "${command}"`);
  } catch (error) {
    if (error instanceof UsageError) {
      err(`clearbg: ${error.message}\nRun 'clearbg --help' for usage.`);
      return 2;
    }
    throw error;
  }
}

function parse(args: string[], options: ParseArgsConfig["options"]): { values: Values; paths: string[] } {
  try {
    const { values, positionals } = parseArgs({ args, options, allowPositionals: true, strict: true });
    return { values: values as Values, paths: positionals };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function client(values: Values, extra: { maxRetries?: number; timeout?: number } = {}): ClearBG {
  const apiKey = (values["api-key"] as string | undefined) || process.env.CLEARBG_API_KEY;
  if (!apiKey) throw new UsageError("no API key: pass --api-key or set CLEARBG_API_KEY");
  return new ClearBG({ apiKey, baseUrl: (values["base-url"] as string | undefined) || undefined, ...extra });
}

function wholeNumber(values: Values, name: string, min: number, fallback: number): number {
  const raw = values[name] as string | undefined;
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || value < min) throw new UsageError(`--${name} must be a whole number >= ${min}, got "${raw}"`);
  return value;
}

async function account({ values, paths }: { values: Values; paths: string[] }, streams: Streams): Promise<number> {
  if (values.help) {
    streams.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (paths.length) throw new UsageError(`account takes no arguments, got "${paths[0]}"`);
  const api = client(values);
  try {
    const info = await api.account();
    if (values.json) {
      streams.stdout.write(`${JSON.stringify({ credits: info.credits, free_calls: info.freeCalls, sizes: info.sizes })}\n`);
    } else {
      const c = info.credits;
      streams.stdout.write(
        `credits     ${c.total} (subscription ${c.subscription}, payg ${c.payg}, enterprise ${c.enterprise})\n` +
          `free calls  ${info.freeCalls}\n` +
          `sizes       ${info.sizes}\n`,
      );
    }
    return 0;
  } catch (error) {
    streams.stderr.write(`clearbg: ${describe(error).line}\n`);
    return 1;
  }
}

interface Failure {
  status: number | null;
  code: string;
  title: string;
  detail: string;
}

/** One line for the user and the JSON `error` object, for any failure of one file. */
function describe(error: unknown): { line: string; error: Failure } {
  if (error instanceof APIError) {
    const code = error.code ?? `http_${error.status}`;
    return {
      line: `${error.status} ${code}: ${error.detail}${error.requestId ? ` (request id ${error.requestId})` : ""}`,
      error: { status: error.status, code, title: error.title, detail: error.detail },
    };
  }
  if (error instanceof APIConnectionError) {
    const code = error instanceof APITimeoutError ? "timeout" : "connection_error";
    return { line: `${code}: ${error.message}`, error: { status: null, code, title: "No answer", detail: error.message } };
  }
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown })?.code;
  const name = typeof code === "string" ? code.toLowerCase() : "error";
  return { line: `${name}: ${message}`, error: { status: null, code: name, title: "Local error", detail: message } };
}

async function remove({ values, paths }: { values: Values; paths: string[] }, streams: Streams): Promise<number> {
  if (values.help) {
    streams.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (paths.length === 0) throw new UsageError("remove needs at least one PATH (a photo or a folder)");
  const format = values.format as string | undefined;
  if (format !== undefined && format !== "auto" && !(format in FORMAT_EXTENSIONS)) {
    throw new UsageError(`--format must be one of png, jpg, webp, zip, auto; got "${format}"`);
  }
  const concurrency = wholeNumber(values, "concurrency", 1, DEFAULT_CONCURRENCY);
  const maxRetries = wholeNumber(values, "max-retries", 0, DEFAULT_MAX_RETRIES);
  let timeout: number | undefined;
  if (values.timeout !== undefined) {
    timeout = Number(values.timeout) * 1000;
    if (!(timeout > 0)) throw new UsageError(`--timeout must be a positive number of seconds, got "${values.timeout}"`);
  }
  const background = values["bg-image-file"] as string | undefined;
  if (background !== undefined && !fs.existsSync(background)) throw new UsageError(`no such file: --bg-image-file ${background}`);
  const layout: Layout = { outdir: values.output as string | undefined, recursive: Boolean(values.recursive), format };
  const jobs = collectJobs(paths, layout);
  const folders = paths.filter((given) => fs.statSync(given).isDirectory());
  if (values.watch && folders.length === 0) throw new UsageError("--watch needs a folder to watch");
  const api = client(values, { maxRetries, timeout });

  const params: RemoveBackgroundParams = {};
  for (const [name, key] of Object.entries(PICTURE_STRINGS)) {
    if (values[name] !== undefined) (params as Record<string, unknown>)[key] = values[name];
  }
  for (const [name, key] of Object.entries(PICTURE_FLAGS)) {
    if (values[name]) (params as Record<string, unknown>)[key] = true;
  }

  const json = Boolean(values.json);
  const counts: Counts = { done: 0, failed: 0, skipped: 0, total: 0 };
  let charged = 0;
  const stopping = new AbortController(); // Ctrl-C: ends the waits to try again (see onSignal)
  const tty = !json && Boolean((streams.stderr as NodeJS.WriteStream).isTTY);
  const bar = tty ? new ProgressBar(streams.stderr as NodeJS.WriteStream, () => counts) : undefined;
  const report = (line: string) => (bar ? bar.print(line) : streams.stderr.write(`${line}\n`));
  const emit = (record: object) => json && streams.stdout.write(`${JSON.stringify(record)}\n`);

  const run = async (job: Job): Promise<void> => {
    const record = { file: job.file, output: null as string | null, status: "", credits_charged: 0,
      credits_remaining: null as number | null, width: null as number | null, height: null as number | null,
      type: null as string | null };
    const skippedBy = values["skip-existing"] ? existingOutput(job, format) : undefined;
    if (skippedBy !== undefined) {
      counts.skipped++;
      emit({ ...record, output: skippedBy, status: "skipped" });
      bar?.draw();
      return;
    }
    bar?.start();
    try {
      const result = await api.removeBackground({ ...params, imageFile: job.source }, { retrySignal: stopping.signal });
      // Charged as soon as the answer came: counted even if writing the file fails below.
      record.credits_charged = result.creditsCharged;
      record.credits_remaining = result.creditsRemaining;
      charged += result.creditsCharged;
      const output = outputPath(job, format, result.contentType);
      await writeOutput(output, result.data);
      counts.done++;
      emit({ ...record, output, status: "done", width: result.width, height: result.height, type: result.type ?? null });
    } catch (error) {
      // Ctrl-C while it waited to try again: nothing was charged; left, like the files not started.
      if (stopping.signal.aborted && error === stopping.signal.reason) return;
      const { line, error: failure } = describe(error);
      counts.failed++;
      emit({ ...record, status: "failed", error: failure });
      if (!json) report(`failed: ${job.file}: ${line}`);
    }
    bar?.draw();
  };

  // Workers take the next file from one queue; --watch adds to it until Ctrl-C.
  const queue: Job[] = [];
  const waiting: (() => void)[] = [];
  let closed = false;
  const add = (job: Job) => {
    counts.total++;
    queue.push(job);
    waiting.shift()?.();
  };
  const next = async (): Promise<Job | undefined> => {
    for (;;) {
      if (queue.length) return queue.shift();
      if (closed) return undefined;
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
  };
  const close = () => {
    closed = true;
    waiting.splice(0).forEach((resolve) => resolve());
  };

  let interrupted = false;
  let watcher: NodeJS.Timeout | undefined;
  const onSignal = () => {
    if (interrupted) process.exit(130); // a second Ctrl-C: leave at once
    interrupted = true;
    // Files not started stay for the next run, and so do those waiting to try again (a
    // Retry-After or a backoff: nothing was charged); answers on their way are kept.
    queue.length = 0;
    stopping.abort(new Error("interrupted"));
    if (watcher) clearInterval(watcher);
    close();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  jobs.forEach(add);
  bar?.draw(); // the first frame counts the files found (0/30), not the empty queue it started with
  if (values.watch) {
    const seen = new Set(jobs.map((job) => job.source));
    const sizes = new Map<string, number>();
    watcher = setInterval(() => {
      for (const folder of folders) {
        for (const job of listFolder(folder, layout)) {
          if (seen.has(job.source)) continue;
          let size: number;
          try {
            size = fs.statSync(job.source).size;
          } catch {
            continue;
          }
          // Taken once its size held still for an interval: a file still being copied is not.
          if (size > 0 && sizes.get(job.source) === size) {
            seen.add(job.source);
            sizes.delete(job.source);
            add(job);
          } else {
            sizes.set(job.source, size);
          }
        }
      }
    }, WATCH_INTERVAL_MS);
  } else {
    close();
  }

  const worker = async () => {
    for (let job = await next(); job; job = await next()) await run(job);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  bar?.finish();

  const credits = Math.round(charged * 1e6) / 1e6;
  if (json) {
    emit({ summary: { done: counts.done, failed: counts.failed, skipped: counts.skipped, credits_charged: credits } });
  } else {
    streams.stdout.write(`done ${counts.done}, failed ${counts.failed}, skipped ${counts.skipped}, credits charged ${credits}\n`);
  }
  if (counts.failed > 0) return 1;
  return interrupted && !values.watch ? 130 : 0;
}
