// `edgelan top <segment>`: a live view of a segment's ports from the admin API,
// refreshed every second: rates per port sorted by traffic, segment totals.
// On a terminal it draws on the alternate screen and quits on q or Ctrl-C,
// restoring the terminal; otherwise it prints plain tables, one per refresh.
import { parseArgs } from "node:util";
import { AdminApi, AdminApiError } from "../admin-api.ts";
import { topRows, type TopRow, type TopSample } from "../port-rates.ts";

const Exit = { Ok: 0, Failure: 1, Usage: 2, Refused: 3, Unreachable: 4 } as const;

export const TOP_USAGE = "edgelan top <segment> [--relay URL] [--admin-token T] [--interval MS] [--count N]";

const OPTIONS = {
  relay: { type: "string" }, "admin-token": { type: "string" }, interval: { type: "string" }, count: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

const COLUMNS: ReadonlyArray<[title: string, width: number, cell: (row: TopRow) => string]> = [
  ["PORT", 5, (row) => String(row.portId)],
  ["KIND", 7, (row) => row.kind],
  ["MODE", 5, (row) => (row.mode === "descriptor" ? "desc" : row.mode)],
  ["MACS", 20, (row) => (row.macs.length === 0 ? "-" : row.macs[0] + (row.macs.length > 1 ? ` +${row.macs.length - 1}` : ""))],
  ["REMOTE", 15, (row) => row.remote || "-"],
  ["RX/s", 8, (row) => fixed(row.rxFps, 0)],
  ["TX/s", 8, (row) => fixed(row.txFps, 0)],
  ["RX Mb/s", 8, (row) => fixed(row.rxMbps, 2)],
  ["TX Mb/s", 8, (row) => fixed(row.txMbps, 2)],
  ["RX", 9, (row) => String(row.rxFrames)],
  ["TX", 9, (row) => String(row.txFrames)],
  ["QUEUE", 6, (row) => String(row.queuedFrames)],
  ["DROPS/s", 0, (row) => describeDrops(row.dropsPerSecond)],
];

/** The screen: a title, a header, one line per port, the segment totals. Lines are not padded or cut. */
export function renderTop(name: string, relay: string, sample: TopSample, rows: TopRow[]): string[] {
  const line = (cells: string[]): string => cells.map((cell, i) => {
    const width = (COLUMNS[i] as (typeof COLUMNS)[number])[1];
    return i < 5 ? cell.padEnd(width) : cell.padStart(width);
  }).join(" ").trimEnd();
  const sum = (pick: (row: TopRow) => number | null): number | null =>
    rows.some((row) => pick(row) === null) ? null : rows.reduce((total, row) => total + (pick(row) ?? 0), 0);
  const drops: Record<string, number> = {};
  for (const row of rows) for (const [reason, value] of Object.entries(row.dropsPerSecond)) drops[reason] = (drops[reason] ?? 0) + value;
  const table = sample.segment.forwardingTable;
  return [
    `edgelan top — segment ${name} at ${relay} — ${rows.length} ports, ${table.learned + table.static} MACs in the forwarding table, ${sample.segment.queuedBytes} bytes queued — ${new Date(sample.atMs).toISOString()}`,
    "",
    line(COLUMNS.map(([title]) => title)),
    ...rows.map((row) => line(COLUMNS.map(([, , cell]) => cell(row)))),
    line(["TOTAL", "", "", "", "", fixed(sum((r) => r.rxFps), 0), fixed(sum((r) => r.txFps), 0), fixed(sum((r) => r.rxMbps), 2), fixed(sum((r) => r.txMbps), 2),
      String(rows.reduce((t, r) => t + r.rxFrames, 0)), String(rows.reduce((t, r) => t + r.txFrames, 0)), String(rows.reduce((t, r) => t + r.queuedFrames, 0)), describeDrops(drops)]),
  ];
}

function fixed(value: number | null, digits: number): string {
  return value === null ? "-" : value.toFixed(digits);
}

function describeDrops(drops: Record<string, number>): string {
  const entries = Object.entries(drops);
  return entries.length === 0 ? "-" : entries.map(([reason, value]) => `${reason} ${value.toFixed(0)}`).join(", ");
}

/** Runs `edgelan top`; resolves with the exit code after the terminal is restored. */
export async function topCommand(argv: string[]): Promise<number> {
  let values: { relay?: string; "admin-token"?: string; interval?: string; count?: string; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true }));
  } catch (error) {
    return usage((error as Error).message);
  }
  if (values.help === true) {
    console.log(`usage: ${TOP_USAGE}`);
    return Exit.Ok;
  }
  const [name] = positionals;
  if (name === undefined || positionals.length > 1) return usage("give exactly one <segment> name");
  const intervalMs = Number(values.interval ?? "1000");
  const count = values.count === undefined ? Infinity : Number(values.count);
  if (!Number.isInteger(intervalMs) || intervalMs < 100 || intervalMs > 60_000) return usage(`--interval must be an integer from 100 to 60000 ms (got "${values.interval}")`);
  if (count !== Infinity && (!Number.isInteger(count) || count < 1)) return usage(`--count must be a positive integer (got "${values.count}")`);
  const relay = values.relay ?? process.env.EDGELAN_RELAY ?? "http://127.0.0.1:8787";
  const api = new AdminApi(relay, values["admin-token"] ?? process.env.EDGELAN_ADMIN_TOKEN);
  const screen = process.stdout.isTTY ? new TerminalScreen() : null;
  try {
    return await pollLoop(api, name, intervalMs, count, (lines) => (screen === null ? printPlain(lines) : screen.draw(lines)), screen);
  } catch (error) {
    screen?.restore();
    console.error(`edgelan top: ${(error as Error).message}`);
    if (error instanceof AdminApiError) return error.status === 0 ? Exit.Unreachable : error.status === 401 || error.status === 403 ? Exit.Refused : Exit.Failure;
    return Exit.Failure;
  } finally {
    screen?.restore();
  }
}

/** Polls, renders, sleeps; ends on the count, a quit key (terminal) or SIGINT/SIGTERM. */
async function pollLoop(
  api: AdminApi, name: string, intervalMs: number, count: number, show: (lines: string[]) => void, screen: TerminalScreen | null,
): Promise<number> {
  let quit = false;
  let wake: () => void = () => undefined;
  const stop = (): void => {
    quit = true;
    wake();
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  screen?.onQuit(stop);
  let previous: TopSample | null = null;
  try {
    for (let shown = 0; shown < count && !quit; shown++) {
      let sample: TopSample;
      try {
        const [segment, ports] = await Promise.all([api.segment(name), api.ports(name)]);
        sample = { atMs: Date.now(), segment, ports };
      } catch (error) {
        // Once running, an outage (unreachable, 5xx) is shown and retried; refusals and a deleted segment end top.
        if (previous === null || !isTransient(error)) throw error;
        show([`edgelan top — segment ${name}: ${(error as Error).message}; retrying every ${intervalMs} ms`]);
        sample = previous;
      }
      if (sample !== previous) show(renderTop(name, api.relay, sample, topRows(previous, sample)));
      previous = sample;
      if (shown + 1 < count && !quit) await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, intervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
  return Exit.Ok;
}

function isTransient(error: unknown): boolean {
  return error instanceof AdminApiError && (error.status === 0 || error.status >= 500);
}

function printPlain(lines: string[]): void {
  process.stdout.write(`${lines.join("\n")}\n\n`);
}

/** The alternate screen with the cursor hidden and keys read raw; restore() puts everything back (idempotent). */
class TerminalScreen {
  private restored = false;
  private quitHandler: () => void = () => undefined;
  private readonly onKey = (data: Buffer): void => {
    // q, Q, Ctrl-C (raw mode delivers it as a byte, not a signal), Ctrl-D.
    if (data.includes(0x71) || data.includes(0x51) || data.includes(0x03) || data.includes(0x04)) this.quitHandler();
  };

  constructor() {
    process.stdout.write("\x1b[?1049h\x1b[?25l");
    if (process.stdin.isTTY) {
      process.stdin.setRawMode(true);
      process.stdin.resume();
      process.stdin.on("data", this.onKey);
    }
    process.once("exit", () => this.restore());
  }

  onQuit(handler: () => void): void {
    this.quitHandler = handler;
  }

  /** Redraws in place, each line cut to the terminal's width. */
  draw(lines: string[]): void {
    const width = process.stdout.columns ?? 120;
    const height = process.stdout.rows ?? 40;
    const shown = lines.slice(0, height - 1).map((text) => `${text.slice(0, width)}\x1b[K`);
    process.stdout.write(`\x1b[H${shown.join("\r\n")}\r\n\x1b[J${"q to quit".slice(0, width)}`);
  }

  restore(): void {
    if (this.restored) return;
    this.restored = true;
    if (process.stdin.isTTY) {
      process.stdin.off("data", this.onKey);
      process.stdin.setRawMode(false);
      process.stdin.pause();
    }
    process.stdout.write("\x1b[?25h\x1b[?1049l");
  }
}

function usage(message: string): number {
  console.error(`edgelan top: ${message}\nusage: ${TOP_USAGE}`);
  return Exit.Usage;
}
