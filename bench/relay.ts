// Relay throughput and latency against the real relay (`wrangler dev` → workerd),
// with `ws` clients speaking edgelan.v1 through the real codec (issue #4).
//
//   npm run bench:relay
//
// Cases, each on its own fresh segment, all in one run:
//   descriptor 64 B / 1514 B  one-way: SENDERS sender ports keep their TX window full
//                             with BATCH-record messages and refill on completions; one
//                             receiver keeps up to 65536 RX credits posted and re-posts
//                             as it consumes. Frames are counted at the receiver.
//   raw 64 B / 1514 B         the same traffic without a subprotocol: one frame per
//                             WebSocket message, senders bounded by ws.bufferedAmount.
//   RTT                       frame ping-pong A→B→A (descriptor and raw), and protocol
//                             ping records (the segment answers pong itself).
// Throughput is measured over MEASURE_S seconds after WARMUP_S seconds. The client's own
// cost is reported too: its CPU share during the run and the codec rates it needs.
// When workerd's own listening port can be found, the descriptor 64 B and raw 64 B cases
// are repeated directly against it, bypassing wrangler dev's proxy.
//
// Environment: EDGELAN_BENCH_SECONDS (measure, default 5), EDGELAN_BENCH_WARMUP (default 1),
// EDGELAN_BENCH_SENDERS (default 2), EDGELAN_BENCH_BATCH (default 256), EDGELAN_BENCH_RTT
// (iterations, default 2000), EDGELAN_BENCH_DIRECT=0 to skip the direct cases, EDGELAN_BENCH_PROFILE=1
// to add a descriptor 64 B run under V8's sampling profiler (through wrangler dev's inspector) and
// print where the worker's time goes, EDGELAN_BENCH_QUICK=1 to run the descriptor 64 B case only (tuning).
// Human-readable lines first; the last line is one JSON object.
//
// The wire client, bench frames with their integrity checker, the CPU sampler and the relay
// launcher live in bench/lib/.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import WebSocket from "ws";
import { forEachRecord, MessageEncoder, type RecordVisitor } from "../datapath/tunnel/codec.ts";
import { MAX_RX_CREDITS } from "../datapath/tunnel/constants.ts";
import { benchFrame, frame, stamp } from "./lib/bench-frames.ts";
import { cpuSample, cpuShares, groupOf, round } from "./lib/cpu-sampler.ts";
import { DescriptorPort, RawPort, TX_WINDOW } from "./lib/wire-client.ts";
import { startWranglerDev, type RunningRelay } from "./lib/wrangler-dev.ts";
import { WorkerProfiler } from "./lib/worker-profiler.ts";

const ADMIN = "bench-admin-token";
const MEASURE_S = Number(process.env.EDGELAN_BENCH_SECONDS ?? 5);
const WARMUP_S = Number(process.env.EDGELAN_BENCH_WARMUP ?? 1);
const SENDERS = Number(process.env.EDGELAN_BENCH_SENDERS ?? 2);
const BATCH = Number(process.env.EDGELAN_BENCH_BATCH ?? 256);
const RTT_ITERATIONS = Number(process.env.EDGELAN_BENCH_RTT ?? 2000);
const TRY_DIRECT = process.env.EDGELAN_BENCH_DIRECT !== "0";
/** Raw senders stop writing while this much is buffered in ws. */
const RAW_BUFFERED_LIMIT = 256 * 1024;
/** The whole run is bounded: past this the relay is stopped and the process exits. */
const OVERALL_TIMEOUT_MS = 10 * 60_000;

const RECEIVER_MAC = 0x02_00_00_00_ff_01;
const senderMac = (i: number): number => 0x02_00_00_00_00_10 + i;

// ---------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

// ---------------------------------------------------------------------------
// The cases

interface Throughput {
  fps: number;
  gbps: number;
  cpu: Record<string, number>;
  note: string;
  /** Frames that arrived out of sequence where no drop explains it (descriptor mode: must be 0). */
  integrityErrors: number;
  /** CPU time of the worker's workerd process per frame received, in µs (less sensitive to other load than frames/s). */
  workerUsPerFrame: number;
  /** Top self-time entries of the worker's profile, when profiled. */
  profile?: string[];
}

let relayPids: Array<{ pid: number; name: string }> = [];

async function admin(baseUrl: string, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${baseUrl}${path}`, {
    method, headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

let segmentSerial = 0;

/** A fresh segment with room to queue (the receiver is never short of credit, but bursts are large). */
async function newSegment(relay: RunningRelay, wsBase: string, label: string): Promise<string> {
  const name = `bench-${label}-${++segmentSerial}`;
  const response = await admin(relay.baseUrl, "PUT", `/v1/segments/${name}`, {
    openJoin: true, rxQueueFrames: 65536, rxQueueBytes: 64 * 1024 * 1024, segmentQueueBytes: 64 * 1024 * 1024, maxFrameSize: 1514,
  });
  if (response.status !== 201) throw new Error(`creating ${name}: HTTP ${response.status} ${await response.text()}`);
  return `${wsBase}/v1/segments/${name}/connect`;
}

/** Counts receiver frames over MEASURE_S after WARMUP_S; samples CPU over the same window. */
async function measureWindow(count: () => { frames: number; bytes: number }, check: () => void): Promise<Throughput> {
  await sleep(WARMUP_S * 1000);
  check();
  const pids = relayPids.map((p) => p.pid);
  const names = new Map(relayPids.map((p) => [p.pid, p.name]));
  const startCount = count();
  const startCpu = cpuSample(pids);
  await sleep(MEASURE_S * 1000);
  const endCount = count();
  const endCpu = cpuSample(pids);
  check();
  const seconds = (endCpu.wall - startCpu.wall) / 1000;
  const frames = endCount.frames - startCount.frames;
  const bytes = endCount.bytes - startCount.bytes;
  const workerPid = relayPids.find((p) => p.name === "workerd-worker")?.pid;
  const workerMs = workerPid === undefined ? NaN : (endCpu.procs.get(workerPid) ?? NaN) - (startCpu.procs.get(workerPid) ?? NaN);
  return {
    fps: frames / seconds, gbps: (bytes * 8) / seconds / 1e9, cpu: cpuShares(startCpu, endCpu, names), note: "", integrityErrors: 0,
    workerUsPerFrame: (workerMs * 1000) / frames,
  };
}

async function descriptorThroughput(relay: RunningRelay, wsBase: string, size: number, profile = false): Promise<Throughput> {
  const url = await newSegment(relay, wsBase, `d${size}`);
  const receiver = await DescriptorPort.join(url, RECEIVER_MAC, 1);
  const senders: DescriptorPort[] = [];
  for (let i = 0; i < SENDERS; i++) senders.push(await DescriptorPort.join(url, senderMac(i)));
  let running = true;
  senders.forEach((sender, i) => {
    const template = benchFrame(RECEIVER_MAC, senderMac(i), i, size);
    sender.onCompletion = () => {
      if (running) sender.fillWindow(template, BATCH);
    };
    sender.fillWindow(template, BATCH);
  });
  const check = (): void => {
    for (const port of [receiver, ...senders]) if (port.error !== null) throw port.error;
  };
  const stopProfile = profile ? await startProfile(relay.port) : null;
  const result = await measureWindow(() => ({ frames: receiver.rxFrames, bytes: receiver.rxBytes }), check);
  running = false;
  if (stopProfile !== null) result.profile = await stopProfile();
  // Quiesce: every TX completed and the receiver idle, then compare the segment's counters with ours.
  const quiesceBy = performance.now() + 5000;
  let lastRx = -1;
  while (performance.now() < quiesceBy && (senders.some((s) => s.outstanding > 0) || receiver.rxFrames !== lastRx)) {
    lastRx = receiver.rxFrames;
    await sleep(100);
  }
  receiver.topUpCredits(true);
  await sleep(100);
  const ok = senders.reduce((sum, s) => sum + s.completedOk, 0);
  const dropped = senders.reduce((sum, s) => sum + s.completedDropped, 0);
  const reasons = new Map<number, number>();
  for (const s of senders) for (const [status, n] of s.dropsByStatus) reasons.set(status, (reasons.get(status) ?? 0) + n);
  const { problems, egress } = await checkCounters(relay, url, receiver, senders);
  result.note = `completions ok ${ok}, dropped ${dropped}${reasons.size > 0 ? ` (${[...reasons].map(([s, n]) => `status ${s}: ${n}`).join(", ")})` : ""}; ` +
    `receiver sequence gaps ${receiver.integrity.gaps}, steps back ${receiver.integrity.backwards}, drops at the receiver: ${egress}; ` +
    `counters ${problems.length === 0 ? "exact" : `WRONG: ${problems.join("; ")}`}`;
  result.integrityErrors = receiver.integrity.backwards + problems.length;
  for (const port of [receiver, ...senders]) port.close();
  await sleep(200);
  return result;
}

interface PortStatsView {
  portId: number;
  counters: { rxFrames: number; txFrames: number; drops: Record<string, number> };
  credits: number | null;
  queuedFrames: number;
}

/**
 * After quiescence the segment's counters must agree with what the clients saw: each sender's rxFrames is
 * what it sent; the receiver's txFrames is what it received (protocol.md §8.4: queued and dropped frames
 * are not counted as tx); what is queued plus what was dropped at egress is exactly what is missing from
 * its sequences; its credits are what it posted and did not use. Returns the disagreements.
 */
async function checkCounters(relay: RunningRelay, url: string, receiver: DescriptorPort, senders: readonly DescriptorPort[]): Promise<{ problems: string[]; egress: string }> {
  const name = /segments\/([^/]+)\/connect/.exec(url)?.[1] ?? "";
  const response = await admin(relay.baseUrl, "GET", `/v1/segments/${name}/ports`);
  if (!response.ok) return { problems: [`GET ports: HTTP ${response.status}`], egress: "?" };
  const { ports } = (await response.json()) as { ports: PortStatsView[] };
  const byId = new Map(ports.map((p) => [p.portId, p]));
  const problems: string[] = [];
  for (const sender of senders) {
    const stats = byId.get(sender.portId);
    if (stats === undefined) problems.push(`sender port ${sender.portId} missing`);
    else if (stats.counters.rxFrames !== sender.sent) problems.push(`sender ${sender.portId}: segment counted rx ${stats.counters.rxFrames}, client sent ${sender.sent}`);
  }
  const stats = byId.get(receiver.portId);
  if (stats === undefined) return { problems: [...problems, "receiver port missing"], egress: "?" };
  const egressDrops = ["rx-buffer-too-small", "rx-queue-full", "segment-budget", "flushed"].reduce((sum, k) => sum + (stats.counters.drops[k] ?? 0), 0);
  // tx counts frames delivered into posted buffers only; queued and dropped ones are not in it (protocol.md §8.4).
  if (stats.counters.txFrames !== receiver.rxFrames) {
    problems.push(`receiver: segment counted tx ${stats.counters.txFrames}, client got ${receiver.rxFrames} (besides queued ${stats.queuedFrames}, egress drops ${egressDrops})`);
  }
  if (receiver.integrity.missing !== egressDrops + stats.queuedFrames) problems.push(`receiver: ${receiver.integrity.missing} frames missing from sequences, segment dropped ${egressDrops} and holds ${stats.queuedFrames}`);
  if (stats.credits !== receiver.credits) problems.push(`receiver: segment holds ${stats.credits} credits, client posted ${receiver.credits} unused`);
  const egress = Object.entries(stats.counters.drops).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(", ");
  return { problems, egress: egress === "" ? "none" : egress };
}

async function rawThroughput(relay: RunningRelay, wsBase: string, size: number): Promise<Throughput> {
  const url = await newSegment(relay, wsBase, `r${size}`);
  const receiver = await RawPort.join(url, RECEIVER_MAC);
  const senders: RawPort[] = [];
  for (let i = 0; i < SENDERS; i++) senders.push(await RawPort.join(url, senderMac(i)));
  await sleep(100);
  let running = true;
  let sent = 0;
  const pumps = senders.map((sender, i) => {
    const template = benchFrame(RECEIVER_MAC, senderMac(i), i, size);
    let seq = 0;
    const socket = (sender.ws as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
    const pump = (): void => {
      if (!running || sender.ws.readyState !== WebSocket.OPEN) return;
      // Cork so a burst of small messages leaves in one write; stop while ws holds too much.
      socket.cork();
      for (let k = 0; k < 256 && sender.ws.bufferedAmount < RAW_BUFFERED_LIMIT; k++) {
        stamp(template, seq++);
        sender.ws.send(template.slice());
        sent++;
      }
      socket.uncork();
      if (sender.ws.bufferedAmount < RAW_BUFFERED_LIMIT) setImmediate(pump);
      else setTimeout(pump, 1);
    };
    return pump;
  });
  for (const pump of pumps) pump();
  const result = await measureWindow(() => ({ frames: receiver.rxFrames, bytes: receiver.rxBytes }), () => undefined);
  running = false;
  result.note = `sent ${sent} in all (raw has no completions; the gap is dropped or still in flight); ` +
    `receiver sequence gaps ${receiver.integrity.gaps}, steps back ${receiver.integrity.backwards}`;
  result.integrityErrors = receiver.integrity.backwards;
  for (const port of [receiver, ...senders]) port.close();
  await sleep(300);
  return result;
}

interface Rtt { p50: number; p99: number; mean: number; n: number }

function summarize(samples: number[]): Rtt {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), mean: samples.reduce((a, b) => a + b, 0) / samples.length, n: samples.length };
}

/** One 64-byte frame A→B, B answers B→A; the round trip is timed at A. */
async function descriptorPingPong(relay: RunningRelay, wsBase: string): Promise<Rtt> {
  const url = await newSegment(relay, wsBase, "rtt");
  const macA = senderMac(0);
  const a = await DescriptorPort.join(url, macA);
  const b = await DescriptorPort.join(url, RECEIVER_MAC);
  const toB = frame(RECEIVER_MAC, macA, 64);
  const toA = frame(macA, RECEIVER_MAC, 64);
  b.onRx = () => b.sendOne(toA);
  const samples = await pingLoop((resolve) => (a.onRx = resolve), () => a.sendOne(toB), () => a.error ?? b.error);
  a.close();
  b.close();
  return summarize(samples);
}

/** Protocol ping records: the segment itself answers each with a pong (no second port involved). */
async function protocolPing(relay: RunningRelay, wsBase: string): Promise<Rtt> {
  const url = await newSegment(relay, wsBase, "ping");
  const a = await DescriptorPort.join(url, senderMac(0));
  let seq = 0;
  const samples = await pingLoop((resolve) => (a.onPong = resolve), () => a.sendPing(++seq, performance.now()), () => a.error);
  a.close();
  return summarize(samples);
}

async function rawPingPong(relay: RunningRelay, wsBase: string): Promise<Rtt> {
  const url = await newSegment(relay, wsBase, "rawrtt");
  const macA = senderMac(0);
  const a = await RawPort.join(url, macA);
  const b = await RawPort.join(url, RECEIVER_MAC);
  await sleep(100);
  const toB = frame(RECEIVER_MAC, macA, 64);
  const toA = frame(macA, RECEIVER_MAC, 64);
  b.onRx = () => b.ws.send(toA);
  const samples = await pingLoop((resolve) => (a.onRx = resolve), () => a.ws.send(toB), () => null);
  a.close();
  b.close();
  return summarize(samples);
}

/** RTT_ITERATIONS sequential round trips (after 100 unmeasured ones); each bounded by a 2 s timeout. */
async function pingLoop(onAnswer: (resolve: () => void) => void, send: () => void, error: () => Error | null): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < RTT_ITERATIONS + 100; i++) {
    const start = performance.now();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(error() ?? new Error(`round trip ${i} timed out`)), 2000);
      onAnswer(() => {
        clearTimeout(timer);
        resolve();
      });
      send();
    });
    if (i >= 100) samples.push(performance.now() - start);
  }
  return samples;
}

// ---------------------------------------------------------------------------
// Client cost: what the client's own codec work would allow on this machine

function clientCodecRates(): { encode_tx64_fps: number; walk_rx64_fps: number; encode_tx1514_fps: number } {
  const rate = (size: number, work: "encode" | "walk"): number => {
    const encoder = new MessageEncoder(1 << 20);
    const frames = Array.from({ length: 8 }, () => frame(RECEIVER_MAC, senderMac(0), size));
    encoder.reset();
    for (let i = 0; i < BATCH; i++) encoder.addRx(0, frames[i % 8] as Uint8Array);
    const message = encoder.finish();
    let sink = 0;
    const visitor: RecordVisitor = { rx: (_f, bytes) => { sink += bytes.length; } };
    const once = (): void => {
      if (work === "walk") {
        forEachRecord(message, visitor);
        return;
      }
      encoder.reset();
      for (let i = 0; i < BATCH; i++) encoder.addTx(i, 0, frames[i % 8] as Uint8Array);
      sink += encoder.finish().length;
    };
    for (let i = 0; i < 200; i++) once();
    let batches = 0;
    const start = performance.now();
    while (performance.now() - start < 300) {
      for (let i = 0; i < 20; i++) once();
      batches += 20;
    }
    if (sink < 0) console.log(sink);
    return (batches * BATCH) / ((performance.now() - start) / 1000);
  };
  return { encode_tx64_fps: rate(64, "encode"), walk_rx64_fps: rate(64, "walk"), encode_tx1514_fps: rate(1514, "encode") };
}

// ---------------------------------------------------------------------------
// Finding workerd's own port (behind wrangler dev's proxy)

async function findDirectPort(relay: RunningRelay): Promise<number | null> {
  const group = groupOf(relay.port);
  if (group === null) return null;
  const pids = new Set(group.pids.filter((p) => p.name.includes("workerd")).map((p) => p.pid));
  let listing = "";
  try {
    listing = execFileSync("ss", ["-ltnpH"], { encoding: "utf8" });
  } catch {
    return null;
  }
  const candidates: number[] = [];
  for (const line of listing.split("\n")) {
    const pidMatch = /pid=(\d+)/.exec(line);
    const portMatch = /127\.0\.0\.1:(\d+)\s/.exec(line);
    if (pidMatch === null || portMatch === null || !pids.has(Number(pidMatch[1]))) continue;
    const port = Number(portMatch[1]);
    if (port !== relay.port) candidates.push(port);
  }
  for (const port of candidates) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) });
      const text = await response.text();
      if (response.ok && !text.includes("<html")) return port;
    } catch {
      // Not an HTTP entry point.
    }
  }
  return null;
}

// ---------------------------------------------------------------------------
// Profiling the worker (EDGELAN_BENCH_PROFILE=1): V8's sampling profiler through wrangler dev's inspector


/** wrangler dev's inspector port, from its command line. */
function inspectorPortOf(relayPort: number): number | null {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      const portAt = args.indexOf("--port");
      const inspectorAt = args.indexOf("--inspector-port");
      if (portAt >= 0 && args[portAt + 1] === String(relayPort) && inspectorAt >= 0) return Number(args[inspectorAt + 1]);
    } catch {
      // Gone.
    }
  }
  return null;
}

/** Starts the profiler; the returned function stops it and resolves to the top self-time entries. */
async function startProfile(relayPort: number): Promise<() => Promise<string[]>> {
  const inspector = inspectorPortOf(relayPort);
  if (inspector === null) throw new Error("wrangler dev's inspector port not found");
  const profiler = await WorkerProfiler.connect(inspector);
  await profiler.start(100);
  return async () => {
    const hot = await profiler.stop(null, 25);
    profiler.close();
    return hot.map(({ name, selfShare }) => `${(100 * selfShare).toFixed(1).padStart(5)}%  ${name}`);
  };
}

// ---------------------------------------------------------------------------

/**
 * Runs a case, once more if the relay restarted under it: wrangler dev reloads the worker when
 * sources change, which others may do while the bench runs (close 1001/1006/1012, HTTP 503).
 */
async function attempt<T>(label: string, run: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await run();
    } catch (error) {
      const text = String(error);
      if (tries >= 3 || !/restart|closed with (1001|1006|1012)|HTTP 503|timed out/.test(text)) throw error;
      console.log(`${label}: ${text.split("\n")[0]}; retrying`);
      await sleep(2000);
    }
  }
}

const fmtM = (fps: number): string => `${(fps / 1e6).toFixed(3)} M frames/s`;
const fmtCpu = (cpu: Record<string, number>): string => Object.entries(cpu).filter(([, v]) => v >= 0.01).map(([k, v]) => `${k} ${v}`).join(", ");

async function main(): Promise<void> {
  const codec = clientCodecRates();
  console.log(`client codec alone (batch ${BATCH}): encode tx 64 B ${fmtM(codec.encode_tx64_fps)}, walk rx 64 B ${fmtM(codec.walk_rx64_fps)}, encode tx 1514 B ${fmtM(codec.encode_tx1514_fps)}`);
  const relay = await startWranglerDev({ adminToken: ADMIN });
  const overall = setTimeout(() => {
    console.error("bench:relay: overall timeout; stopping the relay");
    void relay.stop().finally(() => process.exit(2));
  }, OVERALL_TIMEOUT_MS);
  try {
    relayPids = groupOf(relay.port)?.pids ?? [];
    console.log(`relay: wrangler dev on 127.0.0.1:${relay.port} (process group: ${relayPids.map((p) => `${p.name}:${p.pid}`).join(", ")})`);
    console.log(`setup: ${SENDERS} sender port(s) → 1 receiver, TX window ${TX_WINDOW}, ${BATCH} TX records per message, ${MAX_RX_CREDITS} RX credits, ${WARMUP_S} s warm-up + ${MEASURE_S} s measured per case; figures through wrangler dev's proxy unless marked direct`);

    const d64 = await attempt("descriptorThroughput", () => descriptorThroughput(relay, relay.wsUrl, 64));
    console.log(`descriptor  64 B one-way: ${fmtM(d64.fps)} (${d64.gbps.toFixed(3)} Gbit/s, worker ${d64.workerUsPerFrame.toFixed(3)} µs CPU/frame)  [${d64.note}]  cpu: ${fmtCpu(d64.cpu)}`);
    if (process.env.EDGELAN_BENCH_PROFILE === "1") {
      const profiled = await attempt("descriptorThroughput", () => descriptorThroughput(relay, relay.wsUrl, 64, true));
      console.log(`profiled descriptor 64 B (the profiler slows it): ${fmtM(profiled.fps)}; worker self time, top entries:`);
      for (const line of profiled.profile ?? []) console.log(`  ${line}`);
    }
    if (process.env.EDGELAN_BENCH_QUICK === "1") {
      console.log(JSON.stringify({
        quick: true, senders: SENDERS, batch: BATCH, descriptor64_fps: Math.round(d64.fps), descriptor64_worker_us_per_frame: round(d64.workerUsPerFrame, 3),
        integrity_errors: d64.integrityErrors, cpu_descriptor64: d64.cpu,
      }));
      return;
    }
    const d1514 = await attempt("descriptorThroughput", () => descriptorThroughput(relay, relay.wsUrl, 1514));
    console.log(`descriptor 1514 B one-way: ${d1514.gbps.toFixed(3)} Gbit/s (${fmtM(d1514.fps)})  [${d1514.note}]  cpu: ${fmtCpu(d1514.cpu)}`);
    const r64 = await attempt("rawThroughput", () => rawThroughput(relay, relay.wsUrl, 64));
    console.log(`raw         64 B one-way: ${fmtM(r64.fps)} (${r64.gbps.toFixed(3)} Gbit/s)  [${r64.note}]  cpu: ${fmtCpu(r64.cpu)}`);
    const r1514 = await attempt("rawThroughput", () => rawThroughput(relay, relay.wsUrl, 1514));
    console.log(`raw       1514 B one-way: ${r1514.gbps.toFixed(3)} Gbit/s (${fmtM(r1514.fps)})  [${r1514.note}]  cpu: ${fmtCpu(r1514.cpu)}`);

    const rtt = await attempt("descriptorPingPong", () => descriptorPingPong(relay, relay.wsUrl));
    console.log(`RTT descriptor frame ping-pong A→B→A (64 B, n=${rtt.n}): p50 ${rtt.p50.toFixed(3)} ms, p99 ${rtt.p99.toFixed(3)} ms, mean ${rtt.mean.toFixed(3)} ms`);
    const ping = await attempt("protocolPing", () => protocolPing(relay, relay.wsUrl));
    console.log(`RTT protocol ping record (segment answers, n=${ping.n}): p50 ${ping.p50.toFixed(3)} ms, p99 ${ping.p99.toFixed(3)} ms`);
    const rawRtt = await attempt("rawPingPong", () => rawPingPong(relay, relay.wsUrl));
    console.log(`RTT raw frame ping-pong A→B→A (64 B, n=${rawRtt.n}): p50 ${rawRtt.p50.toFixed(3)} ms, p99 ${rawRtt.p99.toFixed(3)} ms`);

    const summary: Record<string, unknown> = {
      via: "wrangler-dev-proxy", senders: SENDERS, batch: BATCH, tx_window: TX_WINDOW, measure_s: MEASURE_S,
      descriptor64_fps: Math.round(d64.fps), descriptor64_gbps: round(d64.gbps, 3), descriptor64_worker_us_per_frame: round(d64.workerUsPerFrame, 3),
      raw64_worker_us_per_frame: round(r64.workerUsPerFrame, 3),
      descriptor1514_gbps: round(d1514.gbps, 3), descriptor1514_fps: Math.round(d1514.fps),
      raw64_fps: Math.round(r64.fps), raw1514_gbps: round(r1514.gbps, 3), raw1514_fps: Math.round(r1514.fps),
      rtt_p50_ms: round(rtt.p50, 3), rtt_p99_ms: round(rtt.p99, 3), rtt_kind: "descriptor frame ping-pong A→B→A, 64 B",
      ping_p50_ms: round(ping.p50, 3), ping_p99_ms: round(ping.p99, 3),
      raw_rtt_p50_ms: round(rawRtt.p50, 3), raw_rtt_p99_ms: round(rawRtt.p99, 3),
      client_encode_tx64_fps: Math.round(codec.encode_tx64_fps), client_walk_rx64_fps: Math.round(codec.walk_rx64_fps),
      integrity_errors: d64.integrityErrors + d1514.integrityErrors + r64.integrityErrors + r1514.integrityErrors,
      cpu_descriptor64: d64.cpu,
    };

    const direct = TRY_DIRECT ? await findDirectPort(relay) : null;
    if (direct !== null) {
      try {
        const base = `ws://127.0.0.1:${direct}`;
        const dd64 = await attempt("descriptorThroughput", () => descriptorThroughput(relay, base, 64));
        console.log(`direct (workerd 127.0.0.1:${direct}) descriptor 64 B one-way: ${fmtM(dd64.fps)}  [${dd64.note}]  cpu: ${fmtCpu(dd64.cpu)}`);
        const dr64 = await attempt("rawThroughput", () => rawThroughput(relay, base, 64));
        console.log(`direct (workerd 127.0.0.1:${direct}) raw 64 B one-way: ${fmtM(dr64.fps)}  cpu: ${fmtCpu(dr64.cpu)}`);
        const drtt = await attempt("descriptorPingPong", () => descriptorPingPong(relay, base));
        console.log(`direct RTT descriptor frame ping-pong: p50 ${drtt.p50.toFixed(3)} ms, p99 ${drtt.p99.toFixed(3)} ms`);
        Object.assign(summary, {
          direct_port_found: true, direct_descriptor64_fps: Math.round(dd64.fps), direct_raw64_fps: Math.round(dr64.fps),
          direct_rtt_p50_ms: round(drtt.p50, 3), direct_rtt_p99_ms: round(drtt.p99, 3), cpu_direct_descriptor64: dd64.cpu,
        });
      } catch (error) {
        // workerd's own port changes when wrangler dev reloads the worker (sources changed under it).
        console.log(`direct: failed (${String(error).split("\n")[0]}); the proxied figures stand`);
        summary.direct_error = String(error).split("\n")[0];
      }
    } else {
      console.log(TRY_DIRECT ? "direct: workerd's own port not found; all figures are through wrangler dev's proxy" : "direct: skipped");
      summary.direct_port_found = false;
    }
    console.log(JSON.stringify(summary));
  } finally {
    clearTimeout(overall);
    await relay.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
