// `edgelan capture <url> -w FILE|- [--duration S] [--count N] [--port ID] [--mac MAC] [--vlan VID]`:
// joins a segment as a monitor port and writes pcapng to a file or stdout
// (`edgelan capture … -w - | wireshark -k -i -`). Stops on SIGINT/SIGTERM,
// after --duration or --count, and always ends the file with its statistics block.
import { createWriteStream, type WriteStream } from "node:fs";
import { parseArgs } from "node:util";
import { describeCaptureFilter, type CaptureFilter } from "../../datapath/capture.ts";
import { parseMac } from "../../datapath/mac.ts";
import { AdminApi, AdminApiError, httpBase } from "../admin-api.ts";
import { CaptureRecorder, type CaptureDone } from "../capture.ts";
import { nodeSocketFactory } from "../node-socket.ts";

/** The CLI's exit codes (README "Exit codes"). */
const Exit = { Ok: 0, Failure: 1, Usage: 2, Refused: 3, Unreachable: 4 } as const;

export const CAPTURE_USAGE =
  "edgelan capture <url> -w FILE|- [--duration S] [--count N] [--port ID] [--mac MAC] [--vlan VID] [--token T] [--admin-token T] [--relay URL]";

/** Bytes a slow reader (a pipe to Wireshark) may leave unwritten before packets are dropped and counted. */
const MAX_UNWRITTEN_BYTES = 64 * 1024 * 1024;
/** Lifetime of a monitor token the command mints for itself when none is given. */
const MINTED_TOKEN_TTL_SECONDS = 24 * 3600;

const OPTIONS = {
  write: { type: "string", short: "w" }, duration: { type: "string" }, count: { type: "string" },
  port: { type: "string" }, mac: { type: "string" }, vlan: { type: "string" },
  token: { type: "string" }, "admin-token": { type: "string" }, relay: { type: "string" },
  quiet: { type: "boolean", short: "q" }, help: { type: "boolean", short: "h" },
} as const;

class UsageError extends Error {}

/** Runs `edgelan capture`; resolves with the exit code when the capture has ended and the file is closed. */
export async function captureCommand(argv: string[]): Promise<number> {
  let parsed: CaptureArguments;
  try {
    parsed = parseCaptureArguments(argv);
  } catch (error) {
    console.error(`edgelan capture: ${(error as Error).message}\nusage: ${CAPTURE_USAGE}`);
    return Exit.Usage;
  }
  if (parsed === "help") {
    console.log(`usage: ${CAPTURE_USAGE}\n\nWrites pcapng; each packet's comment names its ingress port (looked up from the forwarding table with the admin token).`);
    return Exit.Ok;
  }
  const log = (line: string): void => {
    if (!parsed.quiet) console.error(line);
  };
  const admin = new AdminApi(parsed.relay, parsed.adminToken);
  let token = parsed.token;
  try {
    token ??= await admin.mintToken(parsed.segment, "monitor", MINTED_TOKEN_TTL_SECONDS);
  } catch (error) {
    return fail(error, "a monitor port needs a token: pass --token (role monitor) or an admin token to mint one");
  }

  const output = openOutput(parsed.output);
  // A reader that goes away (Wireshark closed: EPIPE) or a full disk ends the capture; nothing more is written.
  let outputFailed: Error | null = null;
  output.on("error", (error: Error) => (outputFailed ??= error));
  const recorder = new CaptureRecorder({
    url: parsed.url, segment: parsed.segment, token, admin: parsed.adminToken === undefined && !(await isOpenDevRelay(admin)) ? null : admin,
    filter: parsed.filter, maxPackets: parsed.count, socketFactory: nodeSocketFactory, application: "edgelan capture",
    write: (chunk, essential) => {
      if (outputFailed !== null) return false;
      if (!essential && output.writableLength > MAX_UNWRITTEN_BYTES) return false;
      output.write(chunk);
      return true;
    },
  });
  try {
    const welcome = await recorder.start();
    log(`edgelan: capturing segment ${parsed.segment} as monitor port ${welcome.portId} (filter: ${describeCaptureFilter(parsed.filter)}) to ${parsed.output === "-" ? "stdout" : parsed.output}`);
  } catch (error) {
    await closeOutput(output, outputFailed !== null);
    return fail(error, "");
  }

  const why = await untilStopped(recorder, parsed.durationSeconds, () => outputFailed);
  const totals = await recorder.stop(why.text);
  await closeOutput(output, outputFailed !== null);
  const dropped = totals.dropped === undefined ? "unknown (the segment did not answer)" : String(totals.dropped);
  log(`edgelan: ${why.text}: ${totals.written} packets written, ${totals.received} received, ${recorder.totals.filteredOut} filtered out, dropped ${dropped}`);
  return why.code;
}

interface CaptureArgumentsParsed {
  url: string;
  segment: string;
  output: string;
  relay: string;
  token: string | undefined;
  adminToken: string | undefined;
  filter: CaptureFilter;
  count: number | undefined;
  durationSeconds: number | undefined;
  quiet: boolean;
}
type CaptureArguments = CaptureArgumentsParsed | "help";

/** Parses and checks the command line; throws a UsageError naming what is wrong. */
export function parseCaptureArguments(argv: string[]): CaptureArguments {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help === true) return "help";
  if (positionals.length !== 1) throw new UsageError("give exactly one <url>, e.g. ws://127.0.0.1:8787/v1/segments/lab/connect");
  if (values.write === undefined) throw new UsageError("-w FILE (or -w - for stdout) is required");
  const { url, segment } = connectTarget(positionals[0] as string);
  const filter: CaptureFilter = {};
  if (values.port !== undefined) filter.port = integer("--port", values.port, 1, 2 ** 32 - 1);
  if (values.vlan !== undefined) filter.vlan = integer("--vlan", values.vlan, 1, 4094);
  if (values.mac !== undefined) {
    const mac = parseMac(values.mac);
    if (!mac.ok) throw new UsageError(`--mac: ${mac.error.message}`);
    filter.mac = mac.value;
  }
  return {
    url, segment, output: values.write, filter,
    relay: values.relay ?? process.env.EDGELAN_RELAY ?? httpBase(url),
    token: values.token ?? process.env.EDGELAN_TOKEN,
    adminToken: values["admin-token"] ?? process.env.EDGELAN_ADMIN_TOKEN,
    count: values.count === undefined ? undefined : integer("--count", values.count, 1, 2 ** 32 - 1),
    durationSeconds: values.duration === undefined ? undefined : integer("--duration", values.duration, 1, 31_536_000),
    quiet: values.quiet === true,
  };
}

/** The connect URL (ws/wss) and segment name from what the user typed. */
function connectTarget(text: string): { url: string; segment: string } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`bad URL "${text}": expected ws://HOST[:PORT]/v1/segments/NAME/connect`);
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") throw new UsageError(`bad URL "${text}": the scheme must be ws, wss, http or https`);
  const match = /^\/v1\/segments\/([a-z0-9._-]{1,64})(\/connect)?\/?$/.exec(url.pathname);
  if (match === null) throw new UsageError(`bad URL "${text}": the path must be /v1/segments/NAME/connect`);
  url.pathname = `/v1/segments/${match[1]}/connect`;
  return { url: url.toString(), segment: match[1] as string };
}

function integer(name: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) throw new UsageError(`${name} must be an integer from ${min} to ${max} (got "${text}")`);
  return value;
}

/** Whether the relay runs in open development mode (then the forwarding table can be read without a token). */
async function isOpenDevRelay(admin: AdminApi): Promise<boolean> {
  try {
    return ((await admin.call("GET", "/healthz")) as { devMode?: unknown }).devMode === true;
  } catch {
    return false;
  }
}

/** Resolves when the capture should end: a signal, the duration, the count, or the monitor port ending. */
function untilStopped(
  recorder: CaptureRecorder, durationSeconds: number | undefined, outputFailed: () => Error | null,
): Promise<{ text: string; code: number }> {
  return new Promise((resolve) => {
    const timer = durationSeconds === undefined ? undefined : setTimeout(() => end({ text: `captured for ${durationSeconds} s`, code: Exit.Ok }), durationSeconds * 1000);
    // The output's error event may come at any write; look once a second (and the next frame's write stops early anyway).
    const watch = setInterval(() => {
      const error = outputFailed();
      if (error === null) return;
      const readerGone = (error as NodeJS.ErrnoException).code === "EPIPE";
      end(readerGone ? { text: "the reader closed the output", code: Exit.Ok } : { text: `cannot write the output (${error.message})`, code: Exit.Failure });
    }, 250);
    const onSignal = (signal: NodeJS.Signals): void => end({ text: `stopped by ${signal}`, code: Exit.Ok });
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    recorder.onDone((done: CaptureDone) => {
      if (done.reason === "count") end({ text: "packet count reached", code: Exit.Ok });
      else end({ text: `monitor port ended: ${done.end.reason}`, code: Exit.Failure });
    });
    function end(outcome: { text: string; code: number }): void {
      if (timer !== undefined) clearTimeout(timer);
      clearInterval(watch);
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      resolve(outcome);
    }
  });
}

function openOutput(path: string): WriteStream | NodeJS.WriteStream {
  return path === "-" ? process.stdout : createWriteStream(path);
}

/** Flushes and closes a file; stdout is only drained (the process may still print). A failed output is left as it is. */
function closeOutput(output: WriteStream | NodeJS.WriteStream, failed: boolean): Promise<void> {
  return new Promise((resolve) => {
    if (failed) {
      resolve();
      return;
    }
    if (output === process.stdout) {
      if (output.writableLength === 0) resolve();
      else output.once("drain", () => resolve());
      return;
    }
    output.end(() => resolve());
  });
}

/** Prints an error and maps it to an exit code. */
function fail(error: unknown, hint: string): number {
  const message = (error as Error).message;
  console.error(`edgelan capture: ${message}${hint ? ` (${hint})` : ""}`);
  if (error instanceof AdminApiError) return error.status === 0 ? Exit.Unreachable : error.status === 401 || error.status === 403 ? Exit.Refused : Exit.Failure;
  if (/HTTP 40[13]|refused/.test(message)) return Exit.Refused;
  return /HTTP|lost the connection|cannot reach/.test(message) ? Exit.Unreachable : Exit.Failure;
}
