// The floor under a ping through the segment (issue 13): what four WebSocket crossings cost on this
// machine with nothing of edgelan's in them, next to the same through the segment, in one run.
//
//   npm run bench:floor
//
// A round trip is A → relay → B → relay → A, the relay part of one ping: port A in this process,
// the relay, and port B in a child process of its own that echoes (as agent B answers a ping), so each
// crossing ends in another process waking up, as between two `edgelan join` agents. Relays:
//   node          a Node `ws` server in a child process passing each message to the other port
//   do-direct     bench/floor/worker.ts under `wrangler dev`: a Durable Object passing each message
//                 on untouched (hibernatable WebSockets, like the segment), on workerd's own port
//   do-proxy      the same through wrangler dev's proxy (the port `npm start` prints)
//   seg-direct    the edgelan relay, one segment, two client Sessions (lazy completions: 4 messages
//                 per round trip), a 64-byte frame each way, on workerd's own port
//   seg-proxy     the same through wrangler dev's proxy
//   seg-front     the same through a byte-for-byte Node TCP front (bench/lib/tcp-front.ts, a process of its
//                 own) to workerd's own port: what a front of `npm start`'s own instead of the proxy would cost
// Each case runs with back-to-back round trips (gap 0) and with EDGELAN_FLOOR_GAP_MS (10) ms of idle
// between them, as `ping -i 0.01` leaves every process idle between pings. Cases are interleaved in
// rounds so load from other jobs hits them alike. seg − do is what the segment adds per round trip;
// do-direct is the floor of a workerd relay here.
//
// Knobs: EDGELAN_FLOOR_ROUNDS (3), EDGELAN_FLOOR_ITERATIONS (200 round trips per case per round),
// EDGELAN_FLOOR_GAP_MS (10). The last line is one JSON object.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";
import WebSocket, { WebSocketServer } from "ws";
import { nodeSocketFactory } from "../client/node-socket.ts";
import { Session } from "../client/session.ts";
import { findWorkerdPort } from "../scripts/workerd-port.mjs";
import { startTcpFront } from "./lib/tcp-front.ts";
import { startWranglerDev, type RunningRelay } from "./lib/wrangler-dev.ts";

const ROUNDS = Number(process.env.EDGELAN_FLOOR_ROUNDS ?? 3);
const ITERATIONS = Number(process.env.EDGELAN_FLOOR_ITERATIONS ?? 200);
const GAP_MS = Number(process.env.EDGELAN_FLOOR_GAP_MS ?? 10);
/** A round trip not answered within this fails the case. */
const ROUND_TRIP_TIMEOUT_MS = 5_000;

const MAC_A = 0x02_ed_f1_00_00_01;
const MAC_B = 0x02_ed_f1_00_00_02;
const PAYLOAD = new Uint8Array(120).fill(7);

/** A 64-byte Ethernet frame (local experimental EtherType 0x88b5). */
function frameTo(dst: number, src: number): Uint8Array {
  const frame = new Uint8Array(64);
  for (let i = 0; i < 6; i++) {
    frame[i] = Math.floor(dst / 2 ** (8 * (5 - i))) & 0xff;
    frame[6 + i] = Math.floor(src / 2 ** (8 * (5 - i))) & 0xff;
  }
  frame[12] = 0x88;
  frame[13] = 0xb5;
  return frame;
}

// ---- child processes: the node relay and the B echo ports --------------------------------------

/** `floor.ts node-relay`: a `ws` server passing each message from role a to role b and back; prints its port. */
async function nodeRelay(): Promise<void> {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
  const ports = new Map<string, WebSocket>();
  server.on("connection", (ws, request) => {
    const role = new URL(request.url ?? "/", "http://x").searchParams.get("role") ?? "";
    ports.set(role, ws);
    ws.on("message", (data, isBinary) => ports.get(role === "a" ? "b" : "a")?.send(data, { binary: isBinary }));
  });
  await new Promise((resolve) => server.once("listening", resolve));
  const address = server.address();
  console.log(`ready ${typeof address === "object" && address !== null ? address.port : 0}`);
}

/** `floor.ts echo ws URL` or `floor.ts echo segment URL`: port B, answering every message or frame. */
async function echo(kind: string, url: string): Promise<void> {
  if (kind === "segment") {
    const session = new Session({ url, socketFactory: nodeSocketFactory, macs: [MAC_B], reconnect: false, keepaliveSeconds: 0 });
    const reply = frameTo(MAC_A, MAC_B);
    // Like a TAP: frames without a callback, so no flush PING; the completion rides on the next message.
    session.on("frames", (frames) => session.send(frames.map(() => reply)));
    await session.start();
  } else {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
  }
  console.log("ready");
}

/** `floor.ts front PORT`: a byte-for-byte TCP front to 127.0.0.1:PORT, in a process of its own; prints its port. */
async function front(to: number): Promise<void> {
  const server = await startTcpFront("127.0.0.1", 0, to);
  const address = server.address();
  console.log(`ready ${typeof address === "object" && address !== null ? address.port : 0}`);
}

/** Starts `floor.ts ARGS` and resolves with the child and the rest of its "ready" line. */
async function child(args: string[]): Promise<{ process: ChildProcessWithoutNullStreams; ready: string }> {
  const started = spawn(process.execPath, [...process.execArgv, import.meta.filename, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  children.push(started);
  let errors = "";
  started.stderr.on("data", (chunk: Buffer) => (errors += chunk.toString()));
  const lines = createInterface({ input: started.stdout });
  const ready = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`floor.ts ${args.join(" ")} not ready within 30 s: ${errors}`)), 30_000);
    lines.on("line", (line) => {
      if (!line.startsWith("ready")) return;
      clearTimeout(timer);
      resolve(line.slice("ready".length).trim());
    });
    started.once("exit", (code) => reject(new Error(`floor.ts ${args.join(" ")} exited (${code}): ${errors}`)));
  });
  return { process: started, ready };
}

const children: ChildProcessWithoutNullStreams[] = [];

// ---- port A and the measurement ------------------------------------------------------------------

/** Port A of one case: sends one message (or frame) and resolves when B's answer is back. */
interface PortA {
  roundTrip(): Promise<void>;
  close(): void;
}

function withTimeout(promise: Promise<void>, what: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<void>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: round trip timed out`)), ROUND_TRIP_TIMEOUT_MS)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function wsPortA(url: string): Promise<PortA> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  let answered: (() => void) | null = null;
  ws.on("message", () => answered?.());
  return {
    roundTrip: () => withTimeout(new Promise<void>((resolve) => {
      answered = resolve;
      ws.send(PAYLOAD);
    }), url),
    close: () => ws.close(),
  };
}

async function segmentPortA(url: string): Promise<PortA> {
  const session = new Session({ url, socketFactory: nodeSocketFactory, macs: [MAC_A], reconnect: false, keepaliveSeconds: 0 });
  await session.start();
  const toB = frameTo(MAC_B, MAC_A);
  let answered: (() => void) | null = null;
  session.on("frames", () => answered?.());
  return {
    roundTrip: () => withTimeout(new Promise<void>((resolve) => {
      answered = resolve;
      session.send([toB]);
    }), url),
    close: () => session.close(),
  };
}

interface Case { name: string; a: PortA }

/** `count` round trips after `gapMs` of idle each; µs per round trip. */
async function measure(a: PortA, count: number, gapMs: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
    const started = process.hrtime.bigint();
    await a.roundTrip();
    samples.push(Number(process.hrtime.bigint() - started) / 1000);
  }
  return samples;
}

function percentile(samples: readonly number[], p: number): number {
  const sorted = [...samples].sort((x, y) => x - y);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN);
}

async function setUp(edgelan: RunningRelay, floor: RunningRelay): Promise<Case[]> {
  const edgelanDirect = await findWorkerdPort(edgelan.port);
  const floorDirect = await findWorkerdPort(floor.port);
  if (edgelanDirect === null || floorDirect === null) throw new Error("workerd's own port behind wrangler dev's proxy was not found");
  const node = await child(["node-relay"]);
  const bases: Array<[string, string, "ws" | "segment"]> = [
    ["node", `ws://127.0.0.1:${node.ready}/?name=n`, "ws"],
    ["do-direct", `ws://127.0.0.1:${floorDirect}/relay?name=direct`, "ws"],
    ["do-proxy", `${floor.wsUrl}/relay?name=proxy`, "ws"],
    ["seg-direct", `ws://127.0.0.1:${edgelanDirect}/v1/segments/floor-direct/connect`, "segment"],
    ["seg-proxy", `${edgelan.wsUrl}/v1/segments/floor-proxy/connect`, "segment"],
    ["seg-front", `ws://127.0.0.1:${(await child(["front", String(edgelanDirect)])).ready}/v1/segments/floor-front/connect`, "segment"],
  ];
  const cases: Case[] = [];
  for (const [name, url, kind] of bases) {
    const role = (r: string): string => (kind === "ws" ? `${url}&role=${r}` : url);
    await child(["echo", kind, role("b")]);
    const a = kind === "ws" ? await wsPortA(role("a")) : await segmentPortA(url);
    // Warm-up: V8 optimises both ends and the relay.
    await measure(a, 100, 0);
    cases.push({ name, a });
  }
  return cases;
}

async function main(): Promise<void> {
  console.log(`bench:floor: ${ROUNDS} rounds × ${ITERATIONS} round trips per case, gap 0 and ${GAP_MS} ms; port B in a child process`);
  const edgelan = await startWranglerDev();
  let floor: RunningRelay | undefined;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      for (const started of children) started.kill("SIGTERM");
      void Promise.all([floor?.stop(), edgelan.stop()]).finally(() => process.exit(130));
    });
  }
  try {
    floor = await startWranglerDev({ config: join(import.meta.dirname, "floor", "wrangler.toml") });
    const cases = await setUp(edgelan, floor);
    const samples = new Map<string, number[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const gap of [0, GAP_MS]) {
        for (const c of round % 2 === 0 ? cases : [...cases].reverse()) {
          const key = `${c.name}@${gap}`;
          samples.set(key, [...(samples.get(key) ?? []), ...(await measure(c.a, ITERATIONS, gap))]);
        }
      }
    }
    const summary: Record<string, unknown> = {};
    for (const gap of [0, GAP_MS]) {
      console.log(`gap ${gap} ms between round trips (µs per round trip A → relay → B → relay → A):`);
      for (const c of cases) {
        const values = samples.get(`${c.name}@${gap}`) ?? [];
        const p50 = percentile(values, 50);
        const p99 = percentile(values, 99);
        summary[`${c.name.replace("-", "_")}_gap${gap}_p50_us`] = p50;
        summary[`${c.name.replace("-", "_")}_gap${gap}_p99_us`] = p99;
        console.log(`  ${c.name.padEnd(11)} p50 ${String(p50).padStart(6)}  p99 ${String(p99).padStart(7)}  (n=${values.length})`);
      }
      const share = (seg: string, floorCase: string): number => (summary[`${seg}_gap${gap}_p50_us`] as number) - (summary[`${floorCase}_gap${gap}_p50_us`] as number);
      summary[`segment_share_direct_gap${gap}_us`] = share("seg_direct", "do_direct");
      summary[`segment_share_proxy_gap${gap}_us`] = share("seg_proxy", "do_proxy");
      summary[`proxy_cost_gap${gap}_us`] = share("do_proxy", "do_direct");
      console.log(`  the segment adds ${String(summary[`segment_share_direct_gap${gap}_us`])} µs direct, ${String(summary[`segment_share_proxy_gap${gap}_us`])} µs through the proxy; the proxy adds ${String(summary[`proxy_cost_gap${gap}_us`])} µs`);
    }
    for (const c of cases) c.a.close();
    summary.config = { rounds: ROUNDS, iterations: ITERATIONS, gap_ms: GAP_MS };
    console.log(JSON.stringify(summary));
  } finally {
    for (const started of children) started.kill("SIGTERM");
    await floor?.stop();
    await edgelan.stop();
  }
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === "node-relay" || mode === "echo" || mode === "front") {
  // A child ends with its parent: its stdin is the parent's pipe.
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
  if (mode === "node-relay") await nodeRelay();
  else if (mode === "front") await front(Number(rest[0]));
  else await echo(rest[0] ?? "ws", rest[1] ?? "");
} else {
  const overall = setTimeout(() => {
    console.error("bench:floor: overall timeout (15 min)");
    for (const started of children) started.kill("SIGKILL");
    process.exit(2);
  }, 15 * 60_000);
  overall.unref();
  try {
    await main();
    process.exit(0);
  } catch (error) {
    console.error(`bench:floor: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
}
