// `edgelan`: join TAP devices, QEMU guests and VDE cables to segments; manage
// segments and tokens; ping across a segment. Errors say what to do next.
import { hostname } from "node:os";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { formatMac, parseMac, type MacKey } from "../datapath/mac.ts";
import type { PortKind } from "../datapath/tunnel/constants.ts";
import { attachBackend } from "./attach.ts";
import { startDhcpAgent } from "./dhcp-agent.ts";
import { isBackendError, openBackend, serveBackend } from "./backend.ts";
import { nodeSocketFactory } from "./node-socket.ts";
import { Session, SessionError, type SessionOptions } from "./session.ts";

/** Exit codes a script can act on. */
export const ExitCode = { Ok: 0, Failure: 1, Usage: 2, Refused: 3, Unreachable: 4, Privileges: 5 } as const;

/** A failure with the exit code that goes with it. */
export class CliError extends Error {
  constructor(readonly exitCode: number, message: string) {
    super(message);
  }
}

const HELP = `edgelan — virtual Ethernet LANs at the edge

Usage:
  edgelan join <url> --tap NAME [--mac MAC] [--mtu N] [--netns NS] [--offload] [--kind member|bridge] [--token T] [--dhcp [--default-route]]
  edgelan qemu <url> --listen HOST:PORT|PATH [--token T]
  edgelan pipe <url> [--mac MAC] [--kind member|bridge] [--token T]
  edgelan ping <url> <ipv4> [--source-ip IP] [--count N] [--interval MS] [--token T]
  edgelan segments create|show|delete <name> [--relay URL] [--admin-token T] [--open-join] [--max-frame-size N] [--max-ports N] [--ttl S] [--dhcp SUBNET]
  edgelan token <segment> --role member|bridge|monitor [--ttl S] [--mac MAC]... [--relay URL] [--admin-token T]

<url> is a segment's connect URL, e.g. ws://127.0.0.1:8787/v1/segments/lab/connect
(http(s):// is accepted, and so is the URL without /connect).
Tokens: --token or $EDGELAN_TOKEN. Admin: --admin-token or $EDGELAN_ADMIN_TOKEN; relay: --relay or $EDGELAN_RELAY (default http://127.0.0.1:8787).

Exit codes: 0 ok, 1 failure (e.g. ping loss), 2 usage, 3 refused (401/403/version/MAC), 4 relay unreachable, 5 missing privileges.`;

const OPTIONS = {
  tap: { type: "string" }, mac: { type: "string", multiple: true }, mtu: { type: "string" }, netns: { type: "string" },
  kind: { type: "string" }, token: { type: "string" }, listen: { type: "string" }, "source-ip": { type: "string" },
  count: { type: "string" }, interval: { type: "string" }, relay: { type: "string" }, "admin-token": { type: "string" },
  "open-join": { type: "boolean" }, "max-frame-size": { type: "string" }, "max-ports": { type: "string" }, ttl: { type: "string" },
  role: { type: "string" }, offload: { type: "boolean" }, dhcp: { type: "boolean" }, "default-route": { type: "boolean" }, help: { type: "boolean", short: "h" }, quiet: { type: "boolean", short: "q" },
} satisfies ParseArgsConfig["options"];

type Values = ReturnType<typeof parseCommandLine>["values"];

function parseCommandLine(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
}

/** Runs the CLI; resolves with the exit code (long-running commands resolve when they end). */
export async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(argv);
  } catch (error) {
    return usage(String((error as Error).message));
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help === true || command === undefined || command === "help") {
    console.log(HELP);
    return ExitCode.Ok;
  }
  try {
    switch (command) {
      case "join": return await join(rest, values);
      case "qemu": return await qemu(rest, values);
      case "pipe": return await pipe(rest, values);
      case "ping": return await ping(rest, values);
      case "segments": return await segments(rest, values);
      case "token": return await token(rest, values);
      default: return usage(`unknown command "${command}"`);
    }
  } catch (error) {
    return report(error);
  }
}

// ---- commands -------------------------------------------------------------------

async function join(args: string[], values: Values): Promise<number> {
  const url = connectUrl(args[0]);
  if (values.tap === undefined) throw new CliError(ExitCode.Usage, "join needs --tap NAME (the TAP device to create or attach)");
  const mac = values.mac?.[0] !== undefined ? macOption(values.mac[0]) : randomLocalMac();
  const backend = await openBackend(`tap:${values.tap}`, {
    mac, mtu: values.mtu === undefined ? undefined : intOption("--mtu", values.mtu, 68, 65535), netns: values.netns,
    offload: values.offload === true,
  });
  const kind = kindOption(values.kind, ["member", "bridge"]);
  const ended = endOnFatal();
  const attachment = attachBackend(backend, sessionOptions(url, values, { kind, macs: kind === "member" ? [mac] : [] }), ended.fail, (session) => {
    session.on("open", (welcome) => log(values, `edgelan: ${backend.name} (${formatMac(mac)}) joined ${url} as port ${welcome.portId}`));
    logReconnects(values, session);
  });
  // --dhcp: the address comes from the segment's DHCP service (or any DHCP server on it); on exit its RELEASE goes out before the BYE.
  const dhcp = values.dhcp === true ? startDhcpAgent({
    session: attachment.session, mac, ifname: backend.name.replace(/^tap:/, ""), netns: values.netns,
    defaultRoute: values["default-route"] === true, hostname: hostname().split(".")[0], log: (line) => log(values, line),
  }) : undefined;
  const closer = dhcp === undefined ? attachment : { close: () => dhcp.close().then(() => attachment.close()) };
  return runUntilSignal(values, [closer], () => statusLine(attachment.session), ended.exit);
}

async function qemu(args: string[], values: Values): Promise<number> {
  const url = connectUrl(args[0]);
  if (values.listen === undefined) throw new CliError(ExitCode.Usage, "qemu needs --listen HOST:PORT or --listen /path/to.sock");
  const server = await serveBackend(`qemu:${values.listen}`);
  const { qemuNetdevArgument } = await import("./backends/qemu.ts");
  console.log(`edgelan: serving QEMU guests on ${server.address()} for ${url}`);
  console.log(`edgelan: start each VM with: ${qemuNetdevArgument(server.address())}`);
  console.log("edgelan: give every VM its own mac= (each guest registers the MAC it sends from)");
  // Closing the server closes every guest port, and each port's close ends its session.
  server.onConnection((port) => {
    log(values, `edgelan: guest connected (${port.name})`);
    // A refused guest (its MAC taken, say) is disconnected; the others and the server go on.
    attachBackend(port, sessionOptions(url, values, {}), (error) => logError(new Error(`${port.name}: ${error.message}`)), (session) => logReconnects(values, session));
  });
  return runUntilSignal(values, [{ close: () => server.close() }]);
}

async function pipe(args: string[], values: Values): Promise<number> {
  const url = connectUrl(args[0]);
  const kind = kindOption(values.kind, ["member", "bridge"]);
  // With --mac the session opens at once (so a refusal shows before any frame); without, on the cable's first frame.
  const macs = values.mac?.map(macOption);
  const backend = await openBackend("stdio");
  const ended = endOnFatal();
  const attachment = attachBackend(backend, sessionOptions(url, values, { kind, ...(macs === undefined ? {} : { macs }) }), ended.fail, (session) => logReconnects(values, session));
  return new Promise((resolve) => {
    const stop = (): void => void attachment.close();
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, stop);
    // The end of the cable ends the command; a fatal session error closes the cable first and sets the exit code.
    backend.onClose(() => {
      for (const signal of ["SIGINT", "SIGTERM"] as const) process.off(signal, stop);
      resolve(ended.code ?? ExitCode.Ok);
    });
  });
}

async function ping(args: string[], values: Values): Promise<number> {
  const url = connectUrl(args[0]);
  const target = args[1];
  if (target === undefined) throw new CliError(ExitCode.Usage, "ping needs a target IPv4 address: edgelan ping <url> <ipv4>");
  const { DiagHost } = await import("./diag-host.ts");
  const mac = values.mac?.[0] !== undefined ? macOption(values.mac[0]) : randomLocalMac();
  const session = new Session(sessionOptions(url, values, { macs: [mac], reconnect: false }));
  const handlers: Array<(frames: Uint8Array[]) => void> = [];
  session.on("frames", (frames) => handlers.forEach((handler) => handler(frames)));
  await session.start();
  const sourceIp = values["source-ip"] ?? defaultSourceIp(target);
  const host = new DiagHost({ send: (frames) => session.send(frames), onFrames: (handler) => handlers.push(handler) }, { mac, ip: sourceIp });
  const count = intOption("--count", values.count ?? "4", 1, 100_000);
  const intervalMs = intOption("--interval", values.interval ?? "1000", 1, 60_000);
  try {
    console.log(`PING ${target} from ${sourceIp} (${formatMac(mac)}) via ${url}`);
    const summary = await host.ping(target, {
      count, intervalMs, timeoutMs: Math.max(1000, intervalMs * 2),
      onReply: (seq, rtt) => console.log(`reply from ${target}: icmp_seq=${seq} time=${rtt.toFixed(3)} ms`),
    });
    console.log(`--- ${target} ping statistics ---`);
    console.log(`${summary.transmitted} packets transmitted, ${summary.received} received, ${summary.lossPercent}% packet loss`);
    const stats = [summary.minMs, summary.avgMs, summary.maxMs, summary.p50Ms];
    if (summary.received > 0) console.log(`rtt min/avg/max/p50 = ${stats.map((v) => (v ?? 0).toFixed(3)).join("/")} ms`);
    return summary.received === summary.transmitted ? ExitCode.Ok : ExitCode.Failure;
  } finally {
    host.close();
    session.close();
  }
}

async function segments(args: string[], values: Values): Promise<number> {
  const [action, name] = args;
  if (name === undefined || !["create", "show", "delete"].includes(action ?? "")) {
    throw new CliError(ExitCode.Usage, "usage: edgelan segments create|show|delete <name> [options]");
  }
  const path = `/v1/segments/${encodeURIComponent(name)}`;
  if (action === "show") return printJson(await adminCall(values, "GET", path));
  if (action === "delete") return printJson(await adminCall(values, "DELETE", path));
  const config: Record<string, unknown> = {};
  if (values["open-join"] === true) config.openJoin = true;
  if (values["max-frame-size"] !== undefined) config.maxFrameSize = intOption("--max-frame-size", values["max-frame-size"], 64, 65535);
  if (values["max-ports"] !== undefined) config.maxPorts = intOption("--max-ports", values["max-ports"], 1, 1024);
  if (values.ttl !== undefined) config.ttlSeconds = intOption("--ttl", values.ttl, 1, 31_536_000);
  // `--dhcp SUBNET`: the subnet is the positional after the name (--dhcp is a flag for join); the relay validates it.
  if (values.dhcp === true) {
    if (args[2] === undefined) throw new CliError(ExitCode.Usage, "segments create --dhcp needs the subnet, e.g. --dhcp 10.44.0.0/24");
    config.dhcp = { subnet: args[2] };
  }
  return printJson(await adminCall(values, "PUT", path, config));
}

async function token(args: string[], values: Values): Promise<number> {
  const [segment] = args;
  if (segment === undefined) throw new CliError(ExitCode.Usage, "usage: edgelan token <segment> --role member|bridge|monitor [--ttl S] [--mac MAC]");
  const role = kindOption(values.role, ["member", "bridge", "monitor"], "--role");
  const body: Record<string, unknown> = { role };
  if (values.ttl !== undefined) body.ttlSeconds = intOption("--ttl", values.ttl, 1, 2_592_000);
  if (values.mac !== undefined) body.macs = values.mac.map((text) => formatMac(macOption(text)));
  const minted = (await adminCall(values, "POST", `/v1/segments/${encodeURIComponent(segment)}/tokens`, body)) as { token?: string };
  console.log(minted.token ?? JSON.stringify(minted));
  return ExitCode.Ok;
}

// ---- helpers ----------------------------------------------------------------------

/** Session settings shared by every command that joins a segment. */
function sessionOptions(url: string, values: Values, extra: Partial<SessionOptions>): SessionOptions {
  return {
    url, token: values.token ?? process.env.EDGELAN_TOKEN, socketFactory: nodeSocketFactory,
    clientName: "edgelan-cli", clientVersion: "0.1.0",
    // A relay that cannot be reached at all is a mistake to report (exit 4); once joined, outages are retried forever.
    reconnect: { beforeOpen: false },
    ...extra,
  };
}

/** The first fatal error of a long-running command, reported once, as the exit code it maps to. */
function endOnFatal(): { readonly code: number | undefined; readonly exit: Promise<number>; fail: (error: Error) => void } {
  let resolveExit: (code: number) => void = () => undefined;
  const state = {
    code: undefined as number | undefined,
    exit: new Promise<number>((resolve) => (resolveExit = resolve)),
    fail: (error: Error): void => {
      if (state.code !== undefined) return;
      state.code = report(error);
      resolveExit(state.code);
    },
  };
  return state;
}

/** Says when a joined session loses its connection and when it is back (resumed or as a new port). */
function logReconnects(values: Values, session: Session): void {
  let lost = false;
  session.on("close", ({ code, reason, reconnecting }) => {
    if (!reconnecting || lost) return;
    lost = true;
    log(values, `edgelan: connection lost (${code}${reason ? `: ${reason}` : ""}); reconnecting`);
  });
  let portId: number | undefined;
  session.on("open", (welcome) => {
    if (lost) log(values, `edgelan: reconnected as port ${welcome.portId}${welcome.portId === portId ? " (resumed)" : " (a new port)"}`);
    lost = false;
    portId = welcome.portId;
  });
}

/** The connect URL from what the user typed, or a usage error saying what was wrong. */
export function connectUrl(text: string | undefined): string {
  if (text === undefined) throw new CliError(ExitCode.Usage, "missing <url>: e.g. ws://127.0.0.1:8787/v1/segments/lab/connect");
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CliError(ExitCode.Usage, `bad URL "${text}": expected ws://HOST[:PORT]/v1/segments/NAME/connect`);
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") throw new CliError(ExitCode.Usage, `bad URL "${text}": the scheme must be ws, wss, http or https`);
  const match = /^\/v1\/segments\/([a-z0-9._-]{1,64})(\/connect)?\/?$/.exec(url.pathname);
  if (match === null) throw new CliError(ExitCode.Usage, `bad URL "${text}": the path must be /v1/segments/NAME/connect (NAME: 1-64 of a-z 0-9 . _ -)`);
  url.pathname = `/v1/segments/${match[1]}/connect`;
  return url.toString();
}

async function adminCall(values: Values, method: string, path: string, body?: unknown): Promise<unknown> {
  const relay = values.relay ?? process.env.EDGELAN_RELAY ?? "http://127.0.0.1:8787";
  const adminToken = values["admin-token"] ?? process.env.EDGELAN_ADMIN_TOKEN;
  let response: Response;
  try {
    response = await fetch(new URL(path, relay), {
      method, body: body === undefined ? undefined : JSON.stringify(body),
      headers: { "content-type": "application/json", ...(adminToken === undefined ? {} : { authorization: `Bearer ${adminToken}` }) },
    });
  } catch (error) {
    throw new CliError(ExitCode.Unreachable, `cannot reach the relay at ${relay}: ${String((error as Error).cause ?? error)}`);
  }
  const payload = (await response.json().catch(() => ({}))) as { error?: string; message?: string };
  if (!response.ok) {
    const code = response.status === 401 || response.status === 403 ? ExitCode.Refused : ExitCode.Failure;
    throw new CliError(code, `relay answered ${response.status} ${payload.error ?? ""}: ${payload.message ?? "(no message)"}`);
  }
  return payload;
}

/**
 * Keeps long-running commands alive until SIGINT/SIGTERM (exit 0) or a fatal error (its exit code),
 * with an optional status line on a terminal; either way everything in `closers` is closed first.
 */
function runUntilSignal(
  values: Values, closers: Array<{ close(): Promise<void> }>, status?: () => string, fatal?: Promise<number>,
): Promise<number> {
  const timer = status !== undefined && process.stdout.isTTY && values.quiet !== true
    ? setInterval(() => process.stdout.write(`\r${status()}\x1b[K`), 1000)
    : undefined;
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (code: number): void => {
      if (stopping) return;
      stopping = true;
      if (timer !== undefined) clearInterval(timer);
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      void Promise.allSettled(closers.map((c) => c.close())).then(() => resolve(code));
    };
    const onSignal = (): void => stop(ExitCode.Ok);
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    void fatal?.then(stop);
  });
}

/** One line of live counters for `join`. */
function statusLine(session: Session): string {
  const c = session.counters;
  return `${session.isOpen ? "up" : "reconnecting"} | tx ${c.txFrames} (${c.txDropped} dropped, ${c.txReset} reset) | rx ${c.rxFrames} | reconnects ${c.reconnects}`;
}

function macOption(text: string): MacKey {
  const parsed = parseMac(text);
  if (!parsed.ok) throw new CliError(ExitCode.Usage, parsed.error.message);
  return parsed.value;
}

function intOption(name: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) throw new CliError(ExitCode.Usage, `${name} must be an integer from ${min} to ${max} (got "${text}")`);
  return value;
}

function kindOption(text: string | undefined, allowed: PortKind[], name = "--kind"): PortKind {
  const kind = (text ?? allowed[0]) as PortKind;
  if (!allowed.includes(kind)) throw new CliError(ExitCode.Usage, `${name} must be one of ${allowed.join(", ")} (got "${text}")`);
  return kind;
}

/** A source address in the target's /24 that is unlikely to be taken (.250). */
function defaultSourceIp(target: string): string {
  const octets = target.split(".");
  if (octets.length !== 4) throw new CliError(ExitCode.Usage, `"${target}" is not an IPv4 address`);
  return `${octets.slice(0, 3).join(".")}.250`;
}

function randomLocalMac(): MacKey {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  bytes[0] = ((bytes[0] as number) & 0xfc) | 0x02;
  return bytes.reduce((key, byte) => key * 256 + byte, 0);
}

function printJson(value: unknown): number {
  console.log(JSON.stringify(value, null, 2));
  return ExitCode.Ok;
}

function log(values: Values, line: string): void {
  if (values.quiet !== true) console.error(line);
}

function logError(error: Error): void {
  console.error(`edgelan: ${error.message}`);
}

function usage(message: string): number {
  console.error(`edgelan: ${message}\n\n${HELP}`);
  return ExitCode.Usage;
}

/** Maps an error to a message and an exit code a user can act on. */
function report(error: unknown): number {
  if (error instanceof CliError) {
    console.error(`edgelan: ${error.message}`);
    return error.exitCode;
  }
  if (error instanceof SessionError) {
    console.error(`edgelan: ${error.message}`);
    if (error.code === 401 || error.code === 403 || (error.code >= 4001 && error.code <= 4013)) return ExitCode.Refused;
    return error.code === 0 || error.code === 1006 ? ExitCode.Unreachable : ExitCode.Failure;
  }
  if (isBackendError(error)) {
    console.error(`edgelan: ${error.message}`);
    return error.code === "permission-denied" || error.code === "tun-missing" ? ExitCode.Privileges : ExitCode.Failure;
  }
  console.error(`edgelan: ${(error as Error).stack ?? String(error)}`);
  return ExitCode.Failure;
}
