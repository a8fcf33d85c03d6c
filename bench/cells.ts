// Frames through one cell vs across two cells of a 3-cell segment (docs/cells.md §10, §11), against the
// real relay (`wrangler dev` → workerd) with edgelan.v1 clients from bench/lib/wire-client.ts.
//
//   npm run bench:cells
//
// Cases, each on a fresh segment, in one run: "1 cell" (a default segment), "3 cells, same cell" (both
// ports on cell 1: the cell machinery without a trunk hop) and "3 cells, across" (sender on cell 1,
// receiver on cell 2: every frame crosses one trunk; then again with the sender offering CellCompletions,
// its completions waiting for the trunk calls). One sender keeps its TX window full with BATCH-record
// messages; the receiver keeps credits posted and answers the segment's read-acknowledgement PINGs.
// Reported per case over MEASURE_S after WARMUP_S: frames/s at the receiver, CPU µs of the worker's workerd
// process per frame, WebSocket messages per frame each way, and for the crossing case the trunk calls and
// frames per call from the admin API's trunk counters.
//
// Locally every cell shares one workerd process, so CPU per cell cannot be read from /proc: the crossing
// case's CPU is both cells together (c_A + c_B of the model). The last line is one JSON object with the
// figures and the model's production figure (docs/cells.md §10.1) with the measured c and c_A + c_B
// plugged in (split evenly between c_A and c_B: an assumption, stated in the output).
//
// Environment: EDGELAN_BENCH_SECONDS (default 5), EDGELAN_BENCH_WARMUP (default 1), EDGELAN_BENCH_BATCH
// (default 256, as bench:relay), EDGELAN_BENCH_SIZE (frame bytes, default 64), EDGELAN_BENCH_TIMEOUT_MS (whole run, default 5 min).
import { groupOf, procCpuMs } from "./lib/cpu-sampler.ts";
import { benchFrame, frame } from "./lib/bench-frames.ts";
import { DescriptorPort } from "./lib/wire-client.ts";
import { Feature } from "../datapath/tunnel/constants.ts";
import { startWranglerDev, type RunningRelay } from "./lib/wrangler-dev.ts";
import { capacity, MODEL_DEFAULTS } from "./cells-model.ts";

const ADMIN = "bench-admin-token";
const MEASURE_S = Number(process.env.EDGELAN_BENCH_SECONDS ?? 5);
const WARMUP_S = Number(process.env.EDGELAN_BENCH_WARMUP ?? 1);
const BATCH = Number(process.env.EDGELAN_BENCH_BATCH ?? 256);
const SIZE = Number(process.env.EDGELAN_BENCH_SIZE ?? 64);
const SENDER = 0x02_00_00_00_0c_01;
const RECEIVER = 0x02_00_00_00_0c_02;
const OVERALL_TIMEOUT_MS = Number(process.env.EDGELAN_BENCH_TIMEOUT_MS ?? 5 * 60_000);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Trunk {
  peer: number;
  calls: number;
  txFrames: number;
  callFailures: number;
  backlogDrops: number;
}

interface Described {
  cells?: Array<{ index: number; remoteRoutes: number; trunks: Trunk[] }>;
}

interface CaseResult {
  framesPerSecond: number;
  /** CPU of the worker's workerd process per frame received (every cell of the case together). */
  workerUsPerFrame: number;
  /** Client messages per frame: the sender's TX messages in, the receiver's RX messages out. */
  txMessagesPerFrame: number;
  rxMessagesPerFrame: number;
  /** Crossing case: trunk calls from the sender's cell to the receiver's per frame, and frames per call. */
  trunkCallsPerFrame?: number;
  framesPerCall?: number;
  trunkFailures?: number;
  trunkBacklogDrops?: number;
}

async function admin(relay: RunningRelay, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${relay.baseUrl}${path}`, {
    method, headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function describe(relay: RunningRelay, segment: string): Promise<Described> {
  return (await (await admin(relay, "GET", `/v1/segments/${segment}`)).json()) as Described;
}

function trunkOf(described: Described, from: number, to: number): Trunk | undefined {
  return described.cells?.find((cell) => cell.index === from)?.trunks.find((trunk) => trunk.peer === to);
}

/** Waits (bounded) until the sender's cell knows the receiver's MAC: its unicast then crosses one trunk, not a flood. */
async function routeKnown(relay: RunningRelay, segment: string, cell: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (((await describe(relay, segment)).cells?.find((c) => c.index === cell)?.remoteRoutes ?? 0) < 1) {
    if (Date.now() > deadline) throw new Error(`cell ${cell} of ${segment} never learned the receiver's MAC`);
    await sleep(50);
  }
}

/** Messages a socket received (counted with a listener of its own). */
function countMessages(port: DescriptorPort): () => number {
  let messages = 0;
  port.ws.on("message", () => messages++);
  return () => messages;
}

async function runCase(
  relay: RunningRelay, workerPid: number, segment: string, cells: number, senderCell: number | null, receiverCell: number | null, senderFeatures = 0,
): Promise<CaseResult> {
  const created = await admin(relay, "PUT", `/v1/segments/${segment}`, {
    openJoin: true, segmentQueueBytes: 64 * 1024 * 1024, ...(cells > 1 ? { cells } : {}),
  });
  if (created.status !== 201) throw new Error(`PUT ${segment}: ${created.status} ${await created.text()}`);
  const url = (cell: number | null): string => `${relay.wsUrl}/v1/segments/${segment}/connect${cell === null ? "" : `?cell=${cell}`}`;
  const receiver = await DescriptorPort.join(url(receiverCell), RECEIVER);
  const sender = await DescriptorPort.join(url(senderCell), SENDER, undefined, senderFeatures);
  const rxMessages = countMessages(receiver);
  // The receiver's MAC route reaches the sender's cell with the receiver's first frames (its HELLO's announce).
  receiver.sendOne(frame(0xffff_ffff_ffff, RECEIVER, 60));
  if (cells > 1 && senderCell !== receiverCell) await routeKnown(relay, segment, senderCell as number);
  let running = true;
  let txMessages = 0;
  const template = benchFrame(RECEIVER, SENDER, 0, SIZE);
  const fill = (): void => {
    if (running) txMessages += sender.fillWindow(template, BATCH) / BATCH;
  };
  sender.onCompletion = fill;
  fill();
  const check = (): void => {
    for (const port of [receiver, sender]) if (port.error !== null) throw port.error;
  };
  await sleep(WARMUP_S * 1000);
  check();
  const before = { frames: receiver.rxFrames, cpu: procCpuMs(workerPid), at: performance.now(), tx: txMessages, rx: rxMessages() };
  const trunkBefore = cells > 1 ? trunkOf(await describe(relay, segment), senderCell as number, receiverCell as number) : undefined;
  await sleep(MEASURE_S * 1000);
  const after = { frames: receiver.rxFrames, cpu: procCpuMs(workerPid), at: performance.now(), tx: txMessages, rx: rxMessages() };
  const trunkAfter = cells > 1 ? trunkOf(await describe(relay, segment), senderCell as number, receiverCell as number) : undefined;
  running = false;
  check();
  sender.close();
  receiver.close();
  const frames = after.frames - before.frames;
  if (frames === 0) throw new Error(`${segment}: no frames arrived in ${MEASURE_S} s`);
  const result: CaseResult = {
    framesPerSecond: (frames * 1000) / (after.at - before.at),
    workerUsPerFrame: ((after.cpu - before.cpu) * 1000) / frames,
    txMessagesPerFrame: (after.tx - before.tx) / frames,
    rxMessagesPerFrame: (after.rx - before.rx) / frames,
  };
  if (trunkBefore === undefined || trunkAfter === undefined) return result;
  const calls = trunkAfter.calls - trunkBefore.calls;
  return {
    ...result, trunkCallsPerFrame: calls / frames, framesPerCall: (trunkAfter.txFrames - trunkBefore.txFrames) / Math.max(1, calls),
    trunkFailures: trunkAfter.callFailures, trunkBacklogDrops: trunkAfter.backlogDrops,
  };
}

const fmt = (value: number | undefined, digits = 1): string => (value === undefined ? "-" : value.toFixed(digits));

function line(label: string, result: CaseResult): string {
  const trunk = result.trunkCallsPerFrame === undefined ? ""
    : `; trunk ${fmt(result.trunkCallsPerFrame, 4)} calls/frame, ${fmt(result.framesPerCall)} frames/call, ${result.trunkFailures ?? 0} failed calls, ${result.trunkBacklogDrops ?? 0} backlog drops`;
  return `${label}: ${fmt(result.framesPerSecond / 1000)} kframes/s, ${fmt(result.workerUsPerFrame, 2)} µs workerd CPU/frame, ` +
    `${fmt(result.txMessagesPerFrame, 4)} TX msgs/frame, ${fmt(result.rxMessagesPerFrame, 4)} RX msgs/frame${trunk}`;
}

async function main(): Promise<void> {
  const relay = await startWranglerDev({ adminToken: ADMIN });
  const guard = setTimeout(() => {
    console.error(`bench:cells timed out after ${OVERALL_TIMEOUT_MS} ms; relay log:\n${relay.log().slice(-4000)}`);
    void relay.stop().then(() => process.exit(2));
  }, OVERALL_TIMEOUT_MS);
  try {
    const workerPid = groupOf(relay.port)?.pids.find((p) => p.name === "workerd-worker")?.pid;
    if (workerPid === undefined) throw new Error("the worker's workerd process was not found");
    console.log(`setup: 1 sender → 1 receiver, ${SIZE} B frames, ${BATCH} TX records per message, ${WARMUP_S} s warm-up + ${MEASURE_S} s per case; all cells in one workerd (pid ${workerPid})`);
    const one = await runCase(relay, workerPid, "bench-one-cell", 1, null, null);
    console.log(line("1 cell            ", one));
    const same = await runCase(relay, workerPid, "bench-three-same", 3, 1, 1);
    console.log(line("3 cells, same cell", same));
    const across = await runCase(relay, workerPid, "bench-three-across", 3, 1, 2);
    console.log(line("3 cells, 1 → 2    ", across));
    // The same with the sender's completions waiting for the trunk calls (protocol.md §6.3 rule 8).
    const waiting = await runCase(relay, workerPid, "bench-three-across-waiting", 3, 1, 2, Feature.CellCompletions);
    console.log(line("  … CellCompletions", waiting));
    // The model (docs/cells.md §10.1) with the measured CPU: c from the one-cell case, c_A + c_B from the crossing case.
    const cA = across.workerUsPerFrame / 2;
    const model = { ...MODEL_DEFAULTS, cUs: one.workerUsPerFrame, cAUs: cA, cBUs: cA };
    const production = { one: capacity(1, model), three: capacity(3, model) };
    console.log(`model (docs/cells.md §10, one region, b=${model.batch}, R=${model.requestsPerSecond}/s, RTT ${model.rttMs} ms; c=${fmt(model.cUs, 2)} µs, c_A=c_B=${fmt(cA, 2)} µs measured here, split evenly by assumption): ` +
      `1 cell ${Math.round(production.one.framesPerSecond)} frames/s (${production.one.binding}), 3 cells ${Math.round(production.three.framesPerSecond)} frames/s (${production.three.binding})`);
    console.log(JSON.stringify({
      size: SIZE, batch: BATCH, seconds: MEASURE_S,
      oneCell: one, threeSameCell: same, threeAcross: across, threeAcrossCellCompletions: waiting,
      ratioAcrossToOne: Number((across.framesPerSecond / one.framesPerSecond).toFixed(3)),
      cpuRatioAcrossToOne: Number((across.workerUsPerFrame / one.workerUsPerFrame).toFixed(3)),
      model: { ...model, oneCellFps: Math.round(production.one.framesPerSecond), threeCellsFps: Math.round(production.three.framesPerSecond), binding: production.three.binding },
    }));
  } finally {
    clearTimeout(guard);
    await relay.stop();
  }
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
