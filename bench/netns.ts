// End-to-end latency and TCP throughput between two network namespaces joined
// through a local segment (real `wrangler dev` relay, two `edgelan join` TAPs),
// next to the kernel's own baselines in the same run: the same pair of
// namespaces joined by a veth pair, and by a Linux bridge. `npm run bench:netns`.
//
// Needs root, /dev/net/tun, iproute2, ping, iperf3 and the built TAP addon.
// Everything runs inside namespaces this process creates (10.234.0.0/24) and is
// deleted afterwards, also on error and on SIGINT/SIGTERM; only processes this
// process started are stopped (by process group).
//
// Per scenario: ping p50 (RUNS runs of PINGS pings; p50 of each run, then the
// median) and iperf3 TCP throughput (median of RUNS runs of SECONDS s, after one
// unmeasured warm-up run so V8 has optimised the client and the relay).
//
// Knobs: EDGELAN_BENCH_RUNS (3), EDGELAN_BENCH_SECONDS (10), EDGELAN_BENCH_PINGS (100),
// EDGELAN_BENCH_PING_INTERVAL (0.01 s), EDGELAN_BENCH_WARMUP (2 s; 0 = none),
// EDGELAN_BENCH_MTU (1500), EDGELAN_BENCH_ONLY (comma list of edgelan,compare,direct,vde,veth,bridge,
// run in the order given; default edgelan,vde,veth,bridge), EDGELAN_BENCH_DIRECT=1 (add "direct": the same TAPs
// joined to workerd's own port, bypassing wrangler dev's proxy), EDGELAN_BENCH_URL
// (use a relay already running at this ws:// base instead of starting `wrangler dev`),
// EDGELAN_BENCH_OFFLOAD=1 (join the TAPs with `--offload`: virtio-net header, TSO and
// checksum offload, GSO super-frames carried through the segment).
//
// EDGELAN_BENCH_COMPARE=DIR adds "compare": the same as "edgelan" on the same relay, with the agents
// of another checkout (DIR/bin/edgelan.mjs, e.g. a copy of main), so before/after come from one run;
// the JSON then has compare_* and tcp_vs_compare / ping_vs_compare (this checkout ÷ the other).
//
// Scenario "vde" (default when vde2 is installed): the same namespaces joined by vde_switch
// and one vde_plug2tap each, the user-space switch the segment is measured against; the JSON
// then has vde_tcp_gbps, vde_ping_p50_ms and the ratios tcp_vs_vde (edgelan ÷ vde, higher is
// better) and ping_vs_vde (edgelan ÷ vde, lower is better).
//
// EDGELAN_BENCH_BUDGET=1 (latency budget): both agents run with EDGELAN_TRACE_FILE
// (client/frame-trace.ts) and stamp every ICMP echo at TAP read, socket send, socket receive
// and TAP write with CLOCK_MONOTONIC; after the ping runs the budget per hop (µs, p50/p99) is
// printed and kept in the JSON as budget_us (bench/lib/latency-budget.ts), with the protocol
// PING round trip to the segment from a third port as the relay's fixed share.
//
// A failed run is reported and the others go on (exit status 1 at the end).
// The last line of output is one JSON object for scripts.
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { nodeSocketFactory } from "../client/node-socket.ts";
import { Session } from "../client/session.ts";
import { parseMac } from "../datapath/mac.ts";
import { procCpuMs } from "./lib/cpu-sampler.ts";
import { startWranglerDev, type RunningRelay } from "./lib/wrangler-dev.ts";
import { findWorkerdPort } from "../scripts/workerd-port.mjs";
import { describeBudget, latencyBudget, type HopFigures, type LatencyBudget } from "./lib/latency-budget.ts";
import { background, commandExists, guestSkipReason, Namespaces, type Background } from "../test/e2e/guests.ts";

type Scenario = "edgelan" | "compare" | "direct" | "vde" | "veth" | "bridge";
/**
 * All scenarios in run order; "direct" (TAPs joined to workerd's own port, bypassing wrangler dev's proxy) and
 * "compare" (another checkout's `edgelan join`, EDGELAN_BENCH_COMPARE) are opt-in.
 */
const SCENARIOS: readonly Scenario[] = ["edgelan", "compare", "direct", "vde", "veth", "bridge"];
/** "vde" runs by default when vde2 is installed. */
const DEFAULT_SCENARIOS: readonly Scenario[] = ["edgelan", "vde", "veth", "bridge"];

interface Config {
  runs: number;
  seconds: number;
  pings: number;
  pingIntervalS: number;
  warmupSeconds: number;
  mtu: number;
  offload: boolean;
  only: Scenario[];
  relayUrl: string | undefined;
  /** Trace every ICMP echo through both agents and print the latency budget (EDGELAN_BENCH_BUDGET=1). */
  budget: boolean;
  /** `bin/edgelan.mjs` of another checkout for the "compare" scenario (EDGELAN_BENCH_COMPARE=DIR). */
  compareCli: string | undefined;
}

interface PingRun { p50Ms: number; minMs: number; maxMs: number; transmitted: number; received: number }
/** `agentCpuMsPerMb`: CPU time of both edgelan agents per MB iperf3 moved (edgelan scenarios only; steadier than Gbit/s under load). */
interface TcpRun { gbps: number; retransmits: number | null; bytes: number; agentCpuMsPerMb?: number }
interface ScenarioResult { ping: PingRun[]; tcp: TcpRun[]; errors: string[]; budget?: LatencyBudget }

/** Issue #5's targets at MTU 1500 through the segment. */
const TARGET_TCP_GBPS = 1.0;
const TARGET_PING_P50_MS = 0.5;

const SUBNET = "10.234.0";
const A_IP = `${SUBNET}.1`;
const B_IP = `${SUBNET}.2`;
const A_MAC = "02:ed:9e:00:00:01";
const B_MAC = "02:ed:9e:00:00:02";

// ---- configuration and preflight ---------------------------------------------------

function intEnv(name: string, fallback: number, min: number, max: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) fail(`${name} must be an integer from ${min} to ${max} (got "${text}")`);
  return value;
}

function readConfig(): Config {
  const intervalText = process.env.EDGELAN_BENCH_PING_INTERVAL ?? "0.01";
  const pingIntervalS = Number(intervalText);
  if (!Number.isFinite(pingIntervalS) || pingIntervalS < 0.002 || pingIntervalS > 1) {
    fail(`EDGELAN_BENCH_PING_INTERVAL must be seconds from 0.002 to 1 (got "${intervalText}")`);
  }
  const onlyText = process.env.EDGELAN_BENCH_ONLY;
  const defaults = DEFAULT_SCENARIOS.filter((name) => name !== "vde" || vdeSkipReason() === null);
  const only = onlyText === undefined || onlyText === "" ? defaults : onlyText.split(",").map((s) => s.trim());
  if (process.env.EDGELAN_BENCH_DIRECT === "1" && !only.includes("direct")) only.splice(1, 0, "direct");
  const compareDir = process.env.EDGELAN_BENCH_COMPARE;
  const compareCli = compareDir === undefined || compareDir === "" ? undefined : join(compareDir, "bin", "edgelan.mjs");
  if (compareCli !== undefined && !existsSync(compareCli)) fail(`EDGELAN_BENCH_COMPARE: ${compareCli} does not exist`);
  if (compareCli !== undefined && !only.includes("compare")) only.splice(1, 0, "compare");
  if (compareCli === undefined && only.includes("compare")) fail("the compare scenario needs EDGELAN_BENCH_COMPARE=DIR (another checkout)");
  for (const name of only) if (!(SCENARIOS as readonly string[]).includes(name)) fail(`EDGELAN_BENCH_ONLY: unknown scenario "${name}" (use ${SCENARIOS.join(",")})`);
  const relayUrl = process.env.EDGELAN_BENCH_URL;
  return {
    runs: intEnv("EDGELAN_BENCH_RUNS", 3, 1, 50),
    seconds: intEnv("EDGELAN_BENCH_SECONDS", 10, 1, 120),
    pings: intEnv("EDGELAN_BENCH_PINGS", 100, 1, 100_000),
    pingIntervalS,
    warmupSeconds: intEnv("EDGELAN_BENCH_WARMUP", 2, 0, 60),
    mtu: intEnv("EDGELAN_BENCH_MTU", 1500, 576, 65535),
    offload: process.env.EDGELAN_BENCH_OFFLOAD === "1",
    // In the order given (so "compare,edgelan" can check for an order bias), each once.
    only: [...new Set(only)] as Scenario[],
    relayUrl: relayUrl === undefined || relayUrl === "" ? undefined : relayUrl.replace(/\/+$/, ""),
    budget: process.env.EDGELAN_BENCH_BUDGET === "1",
    compareCli,
  };
}

/** Why this benchmark cannot run here, or null. */
function preflight(): string | null {
  if (process.platform !== "linux") return "needs Linux (network namespaces, TAP devices)";
  if (process.getuid?.() !== 0) return "needs root (network namespaces, TAP devices, veth pairs); run it with sudo";
  if (!existsSync("/dev/net/tun")) return "needs /dev/net/tun (modprobe tun; in a container: --device /dev/net/tun --cap-add NET_ADMIN)";
  for (const command of ["ip", "ss", "ping", "iperf3"]) {
    if (!commandExists(command)) return `needs \`${command}\` on PATH (Debian: apt-get install ${command === "ip" || command === "ss" ? "iproute2" : command === "ping" ? "iputils-ping" : "iperf3"})`;
  }
  return guestSkipReason();
}

function fail(message: string): never {
  console.error(`bench:netns: ${message}`);
  process.exit(2);
}

// ---- cleanup ----------------------------------------------------------------------------

/** Everything that must be undone, newest first. */
const cleanups: Array<() => Promise<void>> = [];
let cleaningUp: Promise<void> | null = null;

function onCleanup(step: () => Promise<void>): void {
  cleanups.unshift(step);
}

function cleanupAll(): Promise<void> {
  cleaningUp ??= (async () => {
    for (const step of cleanups.splice(0)) {
      try {
        await step();
      } catch (error) {
        console.error(`bench:netns: cleanup step failed: ${String(error)}`);
      }
    }
  })();
  return cleaningUp;
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    console.error(`bench:netns: ${signal}: cleaning up`);
    const hardStop = setTimeout(() => process.exit(130), 20_000);
    hardStop.unref();
    void cleanupAll().finally(() => process.exit(130));
  });
}

// ---- commands in namespaces -----------------------------------------------------------

/** Runs a command inside a namespace without blocking the event loop (signals stay responsive). */
function execIn(ns: string, command: string, args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile("ip", ["netns", "exec", ns, command, ...args], { encoding: "utf8", timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      running.delete(child);
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
    running.add(child);
  });
}

/** Foreground commands (ping, iperf3 clients) in flight, stopped by cleanup on an interrupt. */
const running = new Set<ChildProcess>();
onCleanup(async () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Runs `ip ARGS` and throws with stderr on failure. */
async function ip(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("ip", args, { encoding: "utf8", timeout: 15_000 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`ip ${args.join(" ")}: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

const round = (value: number, digits: number): number => Number(value.toFixed(digits));

// ---- measurements -----------------------------------------------------------------------

/** Pings until one answer comes back (ARP, learning, relay warm-up), at most `timeoutMs`. */
async function waitReachable(ns: string, target: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const result = await execIn(ns, "ping", ["-n", "-c", "1", "-W", "1", target], 5_000);
    if (result.code === 0) return;
    await sleep(200);
  }
  throw new Error(`${target} is not reachable from ${ns} within ${timeoutMs} ms`);
}

/** One run of `count` pings; p50 of the per-packet RTTs. */
async function pingRun(ns: string, target: string, config: Config): Promise<PingRun> {
  const timeoutMs = Math.ceil((config.pings * config.pingIntervalS + 10) * 1000);
  const result = await execIn(ns, "ping", ["-n", "-c", String(config.pings), "-i", String(config.pingIntervalS), "-W", "2", target], timeoutMs);
  const summary = /(\d+) packets transmitted, (\d+) received/.exec(result.stdout);
  const rtts = [...result.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  if (rtts.length === 0) throw new Error(`ping ${target} from ${ns} got no replies:\n${result.stdout}${result.stderr}`);
  return {
    p50Ms: median(rtts), minMs: Math.min(...rtts), maxMs: Math.max(...rtts),
    transmitted: Number(summary?.[1] ?? rtts.length), received: Number(summary?.[2] ?? rtts.length),
  };
}

interface IperfJson {
  error?: string;
  end?: { sum_received?: { bits_per_second?: number; bytes?: number }; sum_sent?: { retransmits?: number } };
}

/** One iperf3 TCP run: a one-shot server in `serverNs` (tracked, stopped by cleanup), the client in `clientNs`. */
async function tcpRun(namespaces: Namespaces, serverNs: string, clientNs: string, serverIp: string, config: Config): Promise<TcpRun> {
  const server: Background = namespaces.spawn(serverNs, "iperf3", ["-s", "-1", "-B", serverIp]);
  try {
    // Wait until the server listens (bounded), so the client's first connect succeeds.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const listening = await execIn(serverNs, "ss", ["-Hltn", "sport", "= :5201"], 5_000);
      if (listening.stdout.includes("5201")) break;
      if (server.child.exitCode !== null) throw new Error(`iperf3 server exited early:\n${server.output()}`);
      if (Date.now() > deadline) throw new Error(`iperf3 server in ${serverNs} did not listen within 10 s:\n${server.output()}`);
      await sleep(50);
    }
    const result = await execIn(clientNs, "iperf3", ["-c", serverIp, "-t", String(config.seconds), "-J", "--connect-timeout", "5000"], (config.seconds + 15) * 1000);
    let parsed: IperfJson;
    try {
      parsed = JSON.parse(result.stdout) as IperfJson;
    } catch {
      throw new Error(`iperf3 client printed no JSON (exit ${result.code}):\n${result.stdout}${result.stderr}`);
    }
    const bps = parsed.end?.sum_received?.bits_per_second;
    if (parsed.error !== undefined || typeof bps !== "number") throw new Error(`iperf3 failed: ${parsed.error ?? "no end.sum_received.bits_per_second"}`);
    return { gbps: bps / 1e9, retransmits: parsed.end?.sum_sent?.retransmits ?? null, bytes: parsed.end?.sum_received?.bytes ?? 0 };
  } finally {
    await server.stop();
  }
}

/**
 * The ping and iperf3 runs between A and B, printed as they complete; a failed run is recorded and the rest go on.
 * `afterPings` runs between the ping runs and the TCP runs (the latency budget reads its traces there).
 */
async function measure(
  label: string, namespaces: Namespaces, a: string, b: string, config: Config, afterPings?: (result: ScenarioResult) => Promise<void>, agentPids: readonly number[] = [],
): Promise<ScenarioResult> {
  const tag = label.padEnd(8);
  await waitReachable(a, B_IP, 20_000);
  await waitReachable(b, A_IP, 20_000);
  const result: ScenarioResult = { ping: [], tcp: [], errors: [] };
  if (config.warmupSeconds > 0) {
    // Unmeasured: lets V8 optimise the client and the relay before the measured runs.
    try {
      await tcpRun(namespaces, b, a, B_IP, { ...config, seconds: config.warmupSeconds });
    } catch (error) {
      result.errors.push(`warm-up: ${message(error)}`);
      console.log(`${tag} warm-up failed: ${message(error)}`);
    }
  }
  for (let run = 1; run <= config.runs; run++) {
    try {
      const p = await pingRun(a, B_IP, config);
      result.ping.push(p);
      const loss = p.transmitted > 0 ? (100 * (p.transmitted - p.received)) / p.transmitted : 0;
      console.log(`${tag} ping  run ${run}/${config.runs}: p50 ${p.p50Ms.toFixed(3)} ms (min ${p.minMs.toFixed(3)}, max ${p.maxMs.toFixed(3)}, ${p.received}/${p.transmitted} replies, ${loss.toFixed(0)}% loss)`);
    } catch (error) {
      result.errors.push(`ping run ${run}: ${message(error)}`);
      console.log(`${tag} ping  run ${run}/${config.runs}: FAILED: ${message(error)}`);
    }
  }
  if (afterPings !== undefined) {
    try {
      await afterPings(result);
    } catch (error) {
      result.errors.push(`latency budget: ${message(error)}`);
      console.log(`${tag} latency budget FAILED: ${message(error)}`);
    }
  }
  for (let run = 1; run <= config.runs; run++) {
    try {
      const cpuBefore = agentCpuMs(agentPids);
      const t = await tcpRun(namespaces, b, a, B_IP, config);
      if (agentPids.length > 0 && t.bytes > 0) t.agentCpuMsPerMb = (agentCpuMs(agentPids) - cpuBefore) / (t.bytes / 1e6);
      result.tcp.push(t);
      const cpu = t.agentCpuMsPerMb === undefined ? "" : `, agents ${t.agentCpuMsPerMb.toFixed(2)} CPU ms/MB`;
      console.log(`${tag} tcp   run ${run}/${config.runs}: ${t.gbps.toFixed(3)} Gbit/s (${config.seconds} s, ${t.retransmits ?? "?"} retransmits${cpu})`);
    } catch (error) {
      result.errors.push(`tcp run ${run}: ${message(error)}`);
      console.log(`${tag} tcp   run ${run}/${config.runs}: FAILED: ${message(error)}`);
    }
  }
  const p50s = result.ping.map((p) => p.p50Ms);
  const tcps = result.tcp.map((t) => t.gbps);
  console.log(`${tag} => ping p50 median ${fmt(median(p50s), 3)} ms [${fmtRange(p50s, 3)}], tcp median ${fmt(median(tcps), 3)} Gbit/s [${fmtRange(tcps, 3)}]`);
  return result;
}

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error)).split("\n")[0] ?? "";
const fmt = (value: number, digits: number): string => (Number.isNaN(value) ? "n/a" : value.toFixed(digits));
const fmtRange = (values: readonly number[], digits: number): string =>
  values.length === 0 ? "no runs" : `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}`;

// ---- topologies ---------------------------------------------------------------------------

/** A fresh Namespaces set whose processes and namespaces are removed by cleanup (and at the end of the scenario). */
function scopedNamespaces(): Namespaces {
  const namespaces = new Namespaces(`elb${process.pid % 100000}`);
  onCleanup(() => namespaces.cleanup());
  return namespaces;
}

/** One `wrangler dev` for the edgelan scenarios, started on first use and stopped by cleanup. */
let relay: RunningRelay | undefined;
async function relayBase(config: Config): Promise<string> {
  if (config.relayUrl !== undefined) return config.relayUrl;
  if (relay === undefined) {
    console.log("edgelan  starting wrangler dev …");
    const starting = startWranglerDev();
    // Registered before it is up, so an interrupt during start-up still stops it; stop() runs once.
    onCleanup(async () => {
      const started = await starting.catch(() => undefined);
      await started?.stop();
    });
    relay = await starting;
  }
  return relay.wsUrl;
}

/** The `join` flags for plain or offload runs; a checkout older than `--no-offload` joins plain by default. */
function joinFlags(config: Config, cli: string | undefined): string[] {
  if (config.offload) return ["--offload"];
  if (cli === undefined) return ["--no-offload"];
  // `join --help` lists join's own options (the CLI's top-level help names only the commands).
  const help = spawnSync(process.execPath, [cli, "join", "--help"], { encoding: "utf8", timeout: 30_000 });
  return `${help.stdout}${help.stderr}`.includes("--no-offload") ? ["--no-offload"] : [];
}

/** Two namespaces with `edgelan join` TAPs on one segment at `base`; `cli` is another checkout's bin/edgelan.mjs. */
async function benchSegment(label: string, base: string, config: Config, cli?: string): Promise<ScenarioResult> {
  const name = `bench-${label}-${process.pid}`;
  const url = `${base}/v1/segments/${name}/connect`;
  console.log(`${label.padEnd(8)} segment ${url}`);
  // Frames above the default 1514 bytes need the segment configured for them (open development mode: no token).
  if (config.mtu > 1500) await configureSegment(base, name, { openJoin: true, maxFrameSize: config.mtu + 14 });
  const namespaces = scopedNamespaces();
  try {
    const a = namespaces.create("a");
    const b = namespaces.create("b");
    // `edgelan join` takes offloads by default where the TAP has them: the plain runs decline them.
    const extra = joinFlags(config, cli);
    const traces = config.budget ? traceFiles() : undefined;
    const agentPids: number[] = [];
    const joinIn = (ns: string, mac: string): void => {
      const options = { tap: "elt0", mac, mtu: config.mtu, extra };
      const agent = cli === undefined
        ? namespaces.join(ns, url, options)
        : namespaces.track(background(process.execPath, [cli, "join", url, "--tap", "elt0", "--netns", ns, "--mac", mac, "--quiet", "--mtu", String(config.mtu), ...extra]));
      if (agent.child.pid !== undefined) agentPids.push(agent.child.pid);
    };
    withTrace(traces?.a, () => joinIn(a, A_MAC));
    withTrace(traces?.b, () => joinIn(b, B_MAC));
    await namespaces.address(a, "elt0", `${A_IP}/24`);
    await namespaces.address(b, "elt0", `${B_IP}/24`);
    const budget = traces === undefined ? undefined : async (result: ScenarioResult): Promise<void> => {
      result.budget = await readBudget(traces, url);
      for (const line of describeBudget(label, result.budget)) console.log(line);
      // A budget over no pings is a broken trace, not a figure (it once printed budget_pings 0 unnoticed).
      if (result.budget.problem !== null) result.errors.push(`latency budget: ${result.budget.problem}`);
    };
    return await measure(label, namespaces, a, b, config, budget, agentPids);
  } finally {
    await namespaces.cleanup();
  }
}

/** CPU time (user + system) the agents used so far, in ms. */
function agentCpuMs(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + procCpuMs(pid), 0);
}

// ---- latency budget -------------------------------------------------------------------------

/** Trace files for agents A and B in a fresh directory that cleanup removes. */
function traceFiles(): { a: string; b: string } {
  const dir = mkdtempSync(join(tmpdir(), "edgelan-trace-"));
  onCleanup(async () => rmSync(dir, { recursive: true, force: true }));
  return { a: join(dir, "a.trace"), b: join(dir, "b.trace") };
}

/** Starts an agent with EDGELAN_TRACE_FILE set (background() copies the environment at spawn). */
function withTrace(path: string | undefined, start: () => void): void {
  if (path === undefined) return start();
  process.env.EDGELAN_TRACE_FILE = path;
  try {
    start();
  } finally {
    delete process.env.EDGELAN_TRACE_FILE;
  }
}

/** Protocol PINGs from a third port: the round trip bench → segment → bench, the floor under each relay hop pair. */
const SEGMENT_PINGS = 200;

async function readBudget(traces: { a: string; b: string }, url: string): Promise<LatencyBudget> {
  // The agents append their traces at least once a second.
  await sleep(1_500);
  const budget = latencyBudget(traces.a, traces.b);
  budget.hops.push(await segmentPing(url));
  return budget;
}

async function segmentPing(url: string): Promise<HopFigures> {
  const mac = parseMac("02:ed:9e:00:00:03");
  if (!mac.ok) throw new Error(mac.error.message);
  const session = new Session({ url, socketFactory: nodeSocketFactory, macs: [mac.value], reconnect: false, keepaliveSeconds: 0, rxBuffers: 64 });
  const samples: number[] = [];
  try {
    await session.start();
    for (let i = 0; i < SEGMENT_PINGS; i++) {
      const started = process.hrtime.bigint();
      await session.ping();
      samples.push(Number(process.hrtime.bigint() - started) / 1000);
    }
  } finally {
    session.close();
  }
  samples.sort((x, y) => x - y);
  const at = (p: number): number => Math.round(samples[Math.min(samples.length - 1, Math.floor((p / 100) * samples.length))] ?? Number.NaN);
  return {
    hop: "segment_ping", meaning: "protocol PING bench → segment → bench (two socket hops and the DO answering): the relay's fixed share of one relay hop pair",
    p50_us: at(50), p99_us: at(99), n: samples.length,
  };
}

/** Creates or updates a segment through the admin API (the relay runs in open development mode). */
async function configureSegment(base: string, name: string, config: Record<string, unknown>): Promise<void> {
  const http = base.replace(/^ws/, "http");
  const response = await fetch(`${http}/v1/segments/${name}`, {
    method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(config), signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) throw new Error(`configuring segment ${name} failed: HTTP ${response.status} ${await response.text()}`);
}

async function benchEdgelan(config: Config): Promise<ScenarioResult> {
  return benchSegment("edgelan", await relayBase(config), config);
}

/** The same with another checkout's agents (EDGELAN_BENCH_COMPARE): before/after in one run, on one relay. */
async function benchCompare(config: Config): Promise<ScenarioResult> {
  return benchSegment("compare", await relayBase(config), config, config.compareCli);
}

/** The same through workerd's own port, without wrangler dev's proxy in the path (diagnostic). */
async function benchDirect(config: Config): Promise<ScenarioResult> {
  const base = await relayBase(config);
  const port = await findWorkerdPort(Number(new URL(base).port));
  if (port === null) throw new Error("direct: workerd's own port behind wrangler dev's proxy was not found");
  return benchSegment("direct", `ws://127.0.0.1:${port}`, config);
}

async function benchVeth(config: Config): Promise<ScenarioResult> {
  const namespaces = scopedNamespaces();
  try {
    const a = namespaces.create("a");
    const b = namespaces.create("b");
    await ip("-n", a, "link", "add", "veth0", "mtu", String(config.mtu), "type", "veth", "peer", "name", "veth0", "netns", b, "mtu", String(config.mtu));
    await ip("-n", a, "addr", "add", `${A_IP}/24`, "dev", "veth0");
    await ip("-n", b, "addr", "add", `${B_IP}/24`, "dev", "veth0");
    await ip("-n", a, "link", "set", "veth0", "up");
    await ip("-n", b, "link", "set", "veth0", "up");
    return await measure("veth", namespaces, a, b, config);
  } finally {
    await namespaces.cleanup();
  }
}

/** Why the vde scenario cannot run, or null. */
function vdeSkipReason(): string | null {
  for (const command of ["vde_switch", "vde_plug2tap"]) if (!commandExists(command)) return `needs \`${command}\` (Debian: apt-get install vde2)`;
  return null;
}

/**
 * vde_switch with one vde_plug2tap per namespace: the classic user-space switch, the reference for
 * the segment's cost per hop. The switch keeps a management console on stdin, so it gets a pipe that
 * stays open (on EOF it exits); it is stopped by PID.
 */
async function benchVde(config: Config): Promise<ScenarioResult> {
  const skip = vdeSkipReason();
  if (skip !== null) throw new Error(skip);
  const dir = mkdtempSync(join(tmpdir(), "edgelan-vde-"));
  const sock = join(dir, "switch");
  const vdeSwitch = spawn("vde_switch", ["-s", sock], { detached: true, stdio: ["pipe", "ignore", "ignore"] });
  const stopSwitch = async (): Promise<void> => {
    if (vdeSwitch.exitCode === null && vdeSwitch.signalCode === null && vdeSwitch.pid !== undefined) {
      const exited = new Promise((resolve) => vdeSwitch.once("exit", resolve));
      process.kill(vdeSwitch.pid, "SIGTERM");
      await Promise.race([exited, sleep(5_000)]);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  onCleanup(stopSwitch);
  const namespaces = scopedNamespaces();
  try {
    const deadline = Date.now() + 10_000;
    while (!existsSync(join(sock, "ctl"))) {
      if (vdeSwitch.exitCode !== null || Date.now() > deadline) throw new Error(`vde_switch did not open ${sock}`);
      await sleep(50);
    }
    const a = namespaces.create("a");
    const b = namespaces.create("b");
    for (const [ns, mac, addr] of [[a, A_MAC, A_IP], [b, B_MAC, B_IP]] as const) {
      namespaces.spawn(ns, "vde_plug2tap", ["-s", sock, "vdt0"]);
      await waitForLink(ns, "vdt0");
      await ip("-n", ns, "link", "set", "vdt0", "address", mac, "mtu", String(config.mtu), "up");
      await ip("-n", ns, "addr", "add", `${addr}/24`, "dev", "vdt0");
    }
    return await measure("vde", namespaces, a, b, config);
  } finally {
    await namespaces.cleanup();
    await stopSwitch();
  }
}

/** Waits until `dev` exists in `ns` (bounded). */
async function waitForLink(ns: string, dev: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await ip("-n", ns, "link", "show", dev);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(50);
    }
  }
}

async function benchBridge(config: Config): Promise<ScenarioResult> {
  const namespaces = scopedNamespaces();
  try {
    const a = namespaces.create("a");
    const b = namespaces.create("b");
    const br = namespaces.create("br");
    await ip("-n", br, "link", "add", "br0", "mtu", String(config.mtu), "type", "bridge", "stp_state", "0", "forward_delay", "0");
    for (const [ns, port, addr] of [[a, "pa", A_IP], [b, "pb", B_IP]] as const) {
      await ip("-n", br, "link", "add", port, "mtu", String(config.mtu), "type", "veth", "peer", "name", "eth0", "netns", ns, "mtu", String(config.mtu));
      await ip("-n", br, "link", "set", port, "master", "br0");
      await ip("-n", br, "link", "set", port, "up");
      await ip("-n", ns, "addr", "add", `${addr}/24`, "dev", "eth0");
      await ip("-n", ns, "link", "set", "eth0", "up");
    }
    await ip("-n", br, "link", "set", "br0", "up");
    return await measure("bridge", namespaces, a, b, config);
  } finally {
    await namespaces.cleanup();
  }
}

// ---- main ---------------------------------------------------------------------------------

async function main(): Promise<number> {
  const reason = preflight();
  if (reason !== null) fail(`cannot run: ${reason}`);
  const config = readConfig();
  console.log(`bench:netns: ${config.runs} runs × (${config.pings} pings at ${config.pingIntervalS} s; iperf3 TCP ${config.seconds} s after a ${config.warmupSeconds} s warm-up), MTU ${config.mtu}${config.offload ? ", TAP offload on" : ""}, scenarios ${config.only.join(", ")}`);
  console.log("bench:netns: figures on a shared 2-core machine are noisy; compare against the kernel baselines from the same run.");
  const results: Partial<Record<Scenario, ScenarioResult>> = {};
  const runners: Record<Scenario, (config: Config) => Promise<ScenarioResult>> = { edgelan: benchEdgelan, compare: benchCompare, direct: benchDirect, vde: benchVde, veth: benchVeth, bridge: benchBridge };
  let failed = false;
  for (const scenario of config.only) {
    try {
      results[scenario] = await runners[scenario](config);
      if ((results[scenario]?.errors.length ?? 0) > 0) failed = true;
    } catch (error) {
      // A scenario that cannot be set up is reported, and the others still run.
      failed = true;
      results[scenario] = { ping: [], tcp: [], errors: [message(error)] };
      console.log(`${scenario.padEnd(8)} FAILED: ${message(error)}`);
    }
  }

  const summary: Record<string, unknown> = {};
  const prefix: Record<Scenario, string> = { edgelan: "", compare: "compare_", direct: "direct_", vde: "vde_", veth: "veth_", bridge: "bridge_" };
  const nullable = (value: number, digits: number): number | null => (Number.isNaN(value) ? null : round(value, digits));
  for (const scenario of SCENARIOS) {
    const result = results[scenario];
    if (result === undefined) continue;
    const key = prefix[scenario];
    const tcp = result.tcp.map((t) => round(t.gbps, 4));
    const p50 = result.ping.map((p) => round(p.p50Ms, 4));
    summary[`${key}tcp_gbps`] = nullable(median(tcp), 4);
    summary[`${key}ping_p50_ms`] = nullable(median(p50), 4);
    summary[`${key}tcp_gbps_runs`] = tcp;
    summary[`${key}ping_p50_ms_runs`] = p50;
    summary[`${key}tcp_retransmits_runs`] = result.tcp.map((t) => t.retransmits);
    const cpuPerMb = result.tcp.flatMap((t) => (t.agentCpuMsPerMb === undefined ? [] : [round(t.agentCpuMsPerMb, 3)]));
    if (cpuPerMb.length > 0) {
      summary[`${key}agent_cpu_ms_per_mb`] = nullable(median(cpuPerMb), 3);
      summary[`${key}agent_cpu_ms_per_mb_runs`] = cpuPerMb;
    }
    summary[`${key}ping_lost_runs`] = result.ping.map((p) => p.transmitted - p.received);
    if (result.errors.length > 0) summary[`${key}errors`] = result.errors;
    if (result.budget !== undefined) {
      summary[`${key}budget_us`] = Object.fromEntries(result.budget.hops.map((h) => [h.hop, { p50: h.p50_us, p99: h.p99_us }]));
      summary[`${key}budget_pings`] = result.budget.pings;
      if (result.budget.problem !== null) summary[`${key}budget_problem`] = result.budget.problem;
      if (result.budget.messages !== null) summary[`${key}budget_messages_per_ping`] = result.budget.messages.total;
    }
  }
  const vdeTcp = summary.vde_tcp_gbps as number | null | undefined;
  const vdePing = summary.vde_ping_p50_ms as number | null | undefined;
  for (const [scenario, key] of [["edgelan", ""], ["compare", "compare_"], ["direct", "direct_"]] as const) {
    if (results[scenario] === undefined || typeof vdeTcp !== "number" || typeof vdePing !== "number") continue;
    const tcp = summary[`${key}tcp_gbps`];
    const p50 = summary[`${key}ping_p50_ms`];
    // TCP: edgelan ÷ vde (higher is better); ping: edgelan ÷ vde (lower is better).
    summary[`${key}tcp_vs_vde`] = typeof tcp === "number" && vdeTcp > 0 ? round(tcp / vdeTcp, 3) : null;
    summary[`${key}ping_vs_vde`] = typeof p50 === "number" && vdePing > 0 ? round(p50 / vdePing, 3) : null;
  }
  if (typeof summary.tcp_gbps === "number" && typeof summary.compare_tcp_gbps === "number" && typeof summary.ping_p50_ms === "number" && typeof summary.compare_ping_p50_ms === "number") {
    // This checkout ÷ the other one, from the same run.
    summary.tcp_vs_compare = round(summary.tcp_gbps / summary.compare_tcp_gbps, 3);
    summary.ping_vs_compare = round(summary.ping_p50_ms / summary.compare_ping_p50_ms, 3);
    const cpu = summary.agent_cpu_ms_per_mb;
    const compareCpu = summary.compare_agent_cpu_ms_per_mb;
    if (typeof cpu === "number" && typeof compareCpu === "number" && compareCpu > 0) summary.agent_cpu_vs_compare = round(cpu / compareCpu, 3);
    console.log(`edgelan  vs compare (${config.compareCli ?? ""}): tcp ${String(summary.tcp_vs_compare)}×, ping p50 ${String(summary.ping_vs_compare)}×, agent CPU per MB ${String(summary.agent_cpu_vs_compare ?? "n/a")}×`);
  }
  if (typeof summary.tcp_gbps === "number" && typeof summary.direct_tcp_gbps === "number" && typeof summary.ping_p50_ms === "number" && typeof summary.direct_ping_p50_ms === "number") {
    // workerd's own port ÷ wrangler dev's proxy, from the same run (what `npm start`'s fast local path buys).
    summary.direct_tcp_vs_proxied = round(summary.direct_tcp_gbps / summary.tcp_gbps, 3);
    summary.direct_ping_vs_proxied = round(summary.direct_ping_p50_ms / summary.ping_p50_ms, 3);
    console.log(`direct   vs edgelan through the proxy: tcp ${String(summary.direct_tcp_vs_proxied)}×, ping p50 ${String(summary.direct_ping_vs_proxied)}×`);
  }
  if (summary.tcp_vs_vde !== undefined) {
    console.log(`edgelan  vs vde_switch (issue 13: tcp ≥ 2× without offload, ≥ 4× with; ping ≤ 1×): tcp ${String(summary.tcp_vs_vde)}×, ping p50 ${String(summary.ping_vs_vde)}×`);
  }
  if (results.edgelan !== undefined) {
    const tcp = summary.tcp_gbps as number | null;
    const p50 = summary.ping_p50_ms as number | null;
    const tcpMet = tcp !== null && tcp >= TARGET_TCP_GBPS;
    const pingMet = p50 !== null && p50 <= TARGET_PING_P50_MS;
    summary.targets = { tcp_gbps_min: TARGET_TCP_GBPS, ping_p50_ms_max: TARGET_PING_P50_MS, tcp_met: tcpMet, ping_met: pingMet };
    console.log(`edgelan  vs targets (issue #5): tcp ${tcp === null ? "n/a" : tcp.toFixed(3)} Gbit/s (≥ ${TARGET_TCP_GBPS.toFixed(1)}: ${tcpMet ? "met" : "NOT met"}), ping p50 ${p50 === null ? "n/a" : p50.toFixed(3)} ms (≤ ${TARGET_PING_P50_MS}: ${pingMet ? "met" : "NOT met"})`);
  }
  summary.config = {
    runs: config.runs, seconds: config.seconds, warmup_seconds: config.warmupSeconds, pings: config.pings,
    ping_interval_s: config.pingIntervalS, mtu: config.mtu, offload: config.offload, scenarios: config.only, budget: config.budget, load_average: loadavg().map((v) => round(v, 2)),
  };
  console.log(JSON.stringify(summary));
  return failed ? 1 : 0;
}

let exitCode = 0;
try {
  exitCode = await main();
} catch (error) {
  console.error(`bench:netns: ${error instanceof Error ? error.message : String(error)}`);
  exitCode = 1;
} finally {
  await cleanupAll();
}
process.exit(exitCode);
