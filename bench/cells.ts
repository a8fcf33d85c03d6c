// Frames through one cell vs across two cells of a 3-cell segment (docs/cells.md §11), against the
// real relay (`wrangler dev` → workerd) with `ws` clients speaking edgelan.v1.
//
//   npm run bench:cells
//
// Cases, each on its own segment, in one run: "1 cell" (a default segment, two ports) and "3 cells"
// (cells: 3, the sender on cell 1 and the receiver on cell 2, so every frame crosses one trunk).
// One sender keeps its TX window full with BATCH-record messages of 64-byte frames; the receiver keeps
// credits posted. Reported: frames/s at the receiver over MEASURE_S seconds, and for 3 cells the trunk
// calls, frames per call and calls per frame from the admin API. Locally every cell shares one workerd
// on one machine, so the ratio is the cost of a trunk hop, not production throughput (docs/cells.md §10).
// Worker CPU per frame is not measured here yet. The last line is one JSON object.
//
// Environment: EDGELAN_BENCH_SECONDS (default 5), EDGELAN_BENCH_BATCH (default 64).
import WebSocket from "ws";
import { decodeMessage, encodeMessage } from "../datapath/tunnel/codec.ts";
import { SUBPROTOCOL_V1 } from "../datapath/tunnel/constants.ts";
import type { TunnelRecord } from "../datapath/tunnel/records.ts";
import { startRelay, type RunningRelay } from "../test/e2e/relay-harness.ts";

const ADMIN = "bench-admin-token";
const MEASURE_S = Number(process.env.EDGELAN_BENCH_SECONDS ?? 5);
const BATCH = Number(process.env.EDGELAN_BENCH_BATCH ?? 64);
const TX_WINDOW = 256;
const CREDITS = 4096;
const SENDER = 0x02_00_00_00_00_01;
const RECEIVER = 0x02_00_00_00_00_02;
/** The whole run is bounded: past this the relay is stopped and the process exits. */
const OVERALL_TIMEOUT_MS = Number(process.env.EDGELAN_BENCH_TIMEOUT_MS ?? 5 * 60_000);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function frame(dst: number, src: number): Uint8Array {
  const bytes = new Uint8Array(64);
  for (let i = 0; i < 6; i++) {
    bytes[i] = Math.floor(dst / 2 ** (8 * (5 - i))) % 256;
    bytes[6 + i] = Math.floor(src / 2 ** (8 * (5 - i))) % 256;
  }
  bytes[12] = 0x88;
  bytes[13] = 0xb5;
  return bytes;
}

interface Client {
  ws: WebSocket;
  onRecords: (records: TunnelRecord[]) => void;
}

async function admin(relay: RunningRelay, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${relay.baseUrl}${path}`, {
    method, headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** Opens a descriptor port on `cell` (null: placement decides) and completes HELLO. */
async function join(relay: RunningRelay, segment: string, mac: number, cell: number | null): Promise<Client> {
  const query = cell === null ? "" : `?cell=${cell}`;
  const ws = new WebSocket(`${relay.wsUrl}/v1/segments/${segment}/connect${query}`, SUBPROTOCOL_V1);
  const client: Client = { ws, onRecords: () => undefined };
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
    ws.once("unexpected-response", (_request, response) => reject(new Error(`connect ${segment}${query}: HTTP ${response.statusCode} ${String(response.headers["x-edgelan-place"] ?? "")}`)));
  });
  const welcomed = new Promise<void>((resolve) => {
    client.onRecords = (records) => {
      if (records.some((record) => record.type === "welcome")) resolve();
    };
  });
  ws.on("message", (data: Buffer) => {
    const decoded = decodeMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    if (decoded.ok) client.onRecords(decoded.value);
  });
  ws.send(encodeMessage([{
    type: "hello", minVersion: 1, maxVersion: 1, features: 0x7f, portKind: "member", macs: [mac], txWindow: TX_WINDOW, rxQueue: 256,
    clientName: "bench-cells", clientVersion: "0",
  }]));
  await welcomed;
  return client;
}

interface CaseResult {
  framesPerSecond: number;
  trunkCalls?: number;
  framesPerCall?: number;
}

async function runCase(relay: RunningRelay, segment: string, config: Record<string, unknown>, senderCell: number | null, receiverCell: number | null): Promise<CaseResult> {
  const created = await admin(relay, "PUT", `/v1/segments/${segment}`, { openJoin: true, ...config });
  if (created.status !== 201) throw new Error(`PUT ${segment}: ${created.status} ${await created.text()}`);
  if (process.env.EDGELAN_BENCH_DEBUG === "1") console.log(`created ${segment}`);
  const receiver = await join(relay, segment, RECEIVER, receiverCell);
  if (process.env.EDGELAN_BENCH_DEBUG === "1") console.log("receiver joined");
  const sender = await join(relay, segment, SENDER, senderCell);
  if (process.env.EDGELAN_BENCH_DEBUG === "1") console.log("sender joined");
  let received = 0;
  let unposted = 0;
  receiver.onRecords = (records) => {
    for (const record of records) {
      if (record.type !== "rx") continue;
      received++;
      unposted++;
    }
    if (unposted >= CREDITS / 2) {
      receiver.ws.send(encodeMessage([{ type: "rx-post", count: unposted, bufferSize: 2048 }]));
      unposted = 0;
    }
  };
  receiver.ws.send(encodeMessage([{ type: "rx-post", count: CREDITS, bufferSize: 2048 }]));
  // The receiver's MAC route must reach the sender's cell before unicast goes there: a broadcast from it does that.
  receiver.ws.send(encodeMessage([{ type: "tx", id: 0, flags: 0, frame: frame(0xffff_ffff_ffff, RECEIVER) }]));
  await sleep(500);
  let nextId = 0;
  let inFlight = 0;
  let running = true;
  const payload = frame(RECEIVER, SENDER);
  const fill = (): void => {
    while (running && inFlight + BATCH <= TX_WINDOW) {
      const records: TunnelRecord[] = [];
      for (let i = 0; i < BATCH; i++) records.push({ type: "tx", id: (nextId++) & 0xffff, flags: 0, frame: payload });
      inFlight += BATCH;
      sender.ws.send(encodeMessage(records));
    }
  };
  sender.onRecords = (records) => {
    for (const record of records) if (record.type === "tx-complete") inFlight -= record.count;
    fill();
  };
  fill();
  await sleep(1000);
  const start = received;
  const startedAt = performance.now();
  await sleep(MEASURE_S * 1000);
  const framesPerSecond = ((received - start) * 1000) / (performance.now() - startedAt);
  running = false;
  const described = (await (await admin(relay, "GET", `/v1/segments/${segment}`)).json()) as {
    cells?: Array<{ index: number; trunks: Array<{ peer: number; calls: number; txFrames: number }> }>;
  };
  sender.ws.close();
  receiver.ws.close();
  const trunk = described.cells?.find((cell) => cell.index === senderCell)?.trunks.find((t) => t.peer === receiverCell);
  if (trunk === undefined) return { framesPerSecond };
  return { framesPerSecond, trunkCalls: trunk.calls, framesPerCall: trunk.txFrames / Math.max(1, trunk.calls) };
}

async function main(): Promise<void> {
  const relay = await startRelay({ adminToken: ADMIN });
  const guard = setTimeout(() => {
    console.error(`bench:cells timed out; relay log:\n${relay.log().slice(-4000)}`);
    void relay.stop().then(() => process.exit(2));
  }, OVERALL_TIMEOUT_MS);
  try {
    const one = await runCase(relay, "bench-one-cell", {}, null, null);
    console.log(`1 cell:  ${(one.framesPerSecond / 1000).toFixed(1)} kframes/s (64 B, batch ${BATCH})`);
    const three = await runCase(relay, "bench-three-cells", { cells: 3 }, Number(process.env.EDGELAN_BENCH_SENDER_CELL ?? 1), Number(process.env.EDGELAN_BENCH_RECEIVER_CELL ?? 2));
    console.log(`3 cells: ${(three.framesPerSecond / 1000).toFixed(1)} kframes/s across cells 1 → 2; ${three.trunkCalls ?? 0} trunk calls, ${(three.framesPerCall ?? 0).toFixed(1)} frames per call`);
    console.log(JSON.stringify({
      oneCellFps: Math.round(one.framesPerSecond), threeCellsFps: Math.round(three.framesPerSecond),
      ratio: Number((three.framesPerSecond / one.framesPerSecond).toFixed(3)), trunkCalls: three.trunkCalls, framesPerCall: three.framesPerCall,
      batch: BATCH, seconds: MEASURE_S,
    }));
  } finally {
    clearTimeout(guard);
    await relay.stop();
  }
}

void main();
