import fs from "node:fs";
import path from "node:path";

/** What a folder's listing takes as a photo (case-insensitive). */
export const IMAGE_EXTENSIONS = new Set([".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"]);
/** Answers' extensions by --format; `auto` follows the answer's content type. */
export const FORMAT_EXTENSIONS: Record<string, string> = { png: "png", jpg: "jpg", webp: "webp", zip: "zip" };
const CONTENT_TYPE_EXTENSIONS: Record<string, string> = {
  "image/png": "png",
  "image/jpeg": "jpg",
  "image/webp": "webp",
  "application/zip": "zip",
};
/** With --format auto, an existing output with either of these counts for --skip-existing. */
const AUTO_EXTENSIONS = ["png", "jpg"];

export interface Job {
  /** The photo, as the user would name it (the PATH given, joined with its place in a folder). */
  file: string;
  /** Absolute path of the photo. */
  source: string;
  /** The output path without its extension (added once the answer's type is known for auto). */
  outputBase: string;
}

export interface Layout {
  /** -o OUTDIR, or undefined: outputs beside their sources as <stem>-clearbg.<ext>. */
  outdir: string | undefined;
  recursive: boolean;
  /** --format as given (undefined: the server's default, PNG). */
  format: string | undefined;
}

export class UsageError extends Error {}

/** An output (`photo-clearbg.png`) is never taken for an input. */
export function isOutputName(name: string): boolean {
  return path.parse(name).name.endsWith("-clearbg");
}

export function isImageName(name: string): boolean {
  return IMAGE_EXTENSIONS.has(path.extname(name).toLowerCase()) && !isOutputName(name);
}

/** The photos under the PATHs given, in order, each with its output path; a PATH that does not
 * exist is a usage error. Folders: their image files (subfolders with --recursive), never the
 * OUTDIR or an output. A photo reached twice is taken once. */
export function collectJobs(paths: string[], layout: Layout): Job[] {
  const jobs: Job[] = [];
  const sources = new Set<string>();
  for (const given of paths) {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(given);
    } catch {
      throw new UsageError(`no such file or folder: ${given}`);
    }
    const found = stat.isDirectory() ? listFolder(given, layout) : [jobFor(given, path.basename(given), layout)];
    for (const job of found) {
      if (sources.has(job.source)) continue;
      sources.add(job.source);
      jobs.push(job);
    }
  }
  return jobs;
}

/** The folder's photos now (the watcher lists the folders again and again). */
export function listFolder(folder: string, layout: Layout): Job[] {
  const outdir = layout.outdir === undefined ? undefined : path.resolve(layout.outdir);
  const jobs: Job[] = [];
  const walk = (relative: string) => {
    const here = path.join(folder, relative);
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(here, { withFileTypes: true });
    } catch {
      return; // removed while we looked (watch mode)
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const inFolder = path.join(relative, entry.name);
      const full = path.join(folder, inFolder);
      if (outdir !== undefined && path.resolve(full) === outdir) continue;
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        try {
          const target = fs.statSync(full);
          isDir = target.isDirectory();
          isFile = target.isFile();
        } catch {
          continue; // a dangling link
        }
      }
      if (isDir) {
        if (layout.recursive) walk(inFolder);
      } else if (isFile && isImageName(entry.name)) {
        jobs.push(jobFor(full, inFolder, layout));
      }
    }
  };
  walk("");
  return jobs;
}

function jobFor(file: string, relative: string, layout: Layout): Job {
  const parsed = path.parse(relative);
  const outputBase = layout.outdir === undefined
    ? path.join(path.dirname(file), `${parsed.name}-clearbg`)
    : path.join(layout.outdir, parsed.dir, parsed.name);
  return { file, source: path.resolve(file), outputBase };
}

/** The output's path for an answer of this content type. */
export function outputPath(job: Job, format: string | undefined, contentType: string): string {
  const fixed = FORMAT_EXTENSIONS[format ?? "png"];
  const ext = fixed ?? CONTENT_TYPE_EXTENSIONS[contentType.split(";")[0]!.trim().toLowerCase()] ?? "bin";
  return `${job.outputBase}.${ext}`;
}

/** --skip-existing: the output already there (for auto: a .png or a .jpg), else undefined. */
export function existingOutput(job: Job, format: string | undefined): string | undefined {
  const fixed = FORMAT_EXTENSIONS[format ?? "png"];
  const candidates = fixed ? [fixed] : AUTO_EXTENSIONS;
  return candidates.map((ext) => `${job.outputBase}.${ext}`).find((file) => fs.existsSync(file));
}

/** Writes through a temporary name, so an interrupted run never leaves a partial output that
 * --skip-existing would take for a finished one. */
export async function writeOutput(file: string, data: Uint8Array): Promise<void> {
  await fs.promises.mkdir(path.dirname(file), { recursive: true });
  const partial = `${file}.${process.pid}.partial`;
  await fs.promises.writeFile(partial, data);
  await fs.promises.rename(partial, file);
}
