/** The progress bar drawn on a terminal: count, share, rate, ETA and failures so far. */

export interface Counts {
  done: number;
  failed: number;
  skipped: number;
  total: number;
}

/** `[=========>          ]  12/30  40%  2.1/s  ETA 0:09  failed 1` fitted to `columns`.
 * `elapsedMs` counts from the first request; skipped files are not in the rate (they cost no
 * time), and the ETA is for the files still to send. */
export function renderBar(counts: Counts, elapsedMs: number, columns: number): string {
  const finished = counts.done + counts.failed + counts.skipped;
  const sent = counts.done + counts.failed;
  const share = counts.total === 0 ? 1 : finished / counts.total;
  const perSecond = sent > 0 && elapsedMs > 0 ? sent / (elapsedMs / 1000) : 0;
  const rate = perSecond === 0 ? "--/s" : perSecond >= 1 ? `${perSecond.toFixed(1)}/s` : `${(perSecond * 60).toFixed(1)}/min`;
  const left = counts.total - finished;
  const eta = left === 0 ? "0:00" : perSecond === 0 ? "--:--" : clock(left / perSecond);
  const tail = `  ${finished}/${counts.total}  ${Math.floor(share * 100)}%  ${rate}  ETA ${eta}  failed ${counts.failed}`;
  const width = Math.max(10, Math.min(40, columns - tail.length - 3));
  const filled = Math.min(width, Math.floor(share * width));
  const bar = "=".repeat(filled) + (filled < width ? ">" + " ".repeat(width - filled - 1) : "");
  return `[${bar}]${tail}`;
}

function clock(seconds: number): string {
  const s = Math.ceil(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Redraws the bar in place on a TTY stream; lines printed through it go above the bar. */
export class ProgressBar {
  private started: number | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly stream: NodeJS.WriteStream, private readonly counts: () => Counts) {
    this.timer = setInterval(() => this.draw(), 1000);
    this.timer.unref();
  }

  /** The first request went out: the rate counts from here. */
  start(): void {
    this.started ??= Date.now();
  }

  draw(): void {
    const elapsed = this.started === undefined ? 0 : Date.now() - this.started;
    this.stream.write(`\r${renderBar(this.counts(), elapsed, this.stream.columns || 80)}\x1b[K`);
  }

  print(line: string): void {
    this.stream.write(`\r\x1b[K${line}\n`);
    this.draw();
  }

  finish(): void {
    clearInterval(this.timer);
    this.draw();
    this.stream.write("\n");
  }
}
