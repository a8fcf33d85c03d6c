// `npm run fuzz:relay`: random and mutated messages from hostile ports against a real relay
// (a local `wrangler dev` with its own state), while two bystanders exchange a steady ping
// stream on the same segment. Reports relay uptime, bystander loss and workerd RSS; exits 1
// on any bystander loss or if the relay died. Last line: one JSON object.
//
// Environment: EDGELAN_FUZZ_MESSAGES (default 1,000,000), EDGELAN_FUZZ_PORTS (hostile
// connections at once, default 8), EDGELAN_FUZZ_SEED (default: time-based, printed),
// EDGELAN_FUZZ_MAX_SECONDS (stop early after this long, default 3600), EDGELAN_FUZZ_PING_MS (default 10),
// EDGELAN_FUZZ_BASELINE_REQUESTS (requests to a trivial Worker after the run, for the runtime's own
// memory per request: default as many as the run made connections, at most 20,000; 0 skips it).
import WebSocket from "ws";
import { forEachRecord } from "../../datapath/tunnel/codec.ts";
import { SUBPROTOCOL_V1 } from "../../datapath/tunnel/constants.ts";
import { Admin } from "./admin.ts";
import { runtimeBaseline, type RuntimeBaseline } from "./runtime-baseline.ts";
import { BystanderProcess } from "./bystander-client.ts";
import { BYSTANDER_A, BYSTANDER_B } from "./bystanders.ts";
import { mutate, Random, randomHello, validMessage } from "./mutate.ts";
import { processAlive, rssBytes, RssSampler, startLocalRelay, stopRelaysOnSignal, type LocalRelay } from "./relay-process.ts";
import { connectUrl, encodeRecords, openSocket, sleep } from "./wire.ts";

const number = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? fallback);
  return Number.isFinite(value) && value > 0 ? value : fallback;
};
const MESSAGES = number("EDGELAN_FUZZ_MESSAGES", 1_000_000);
const CONCURRENCY = number("EDGELAN_FUZZ_PORTS", 8);
const SEED = number("EDGELAN_FUZZ_SEED", Date.now() % 0x1_0000_0000);
const MAX_SECONDS = number("EDGELAN_FUZZ_MAX_SECONDS", 3600);
const PING_MS = number("EDGELAN_FUZZ_PING_MS", 10);
const BASELINE_REQUESTS = process.env.EDGELAN_FUZZ_BASELINE_REQUESTS === undefined ? null : Math.max(0, Number(process.env.EDGELAN_FUZZ_BASELINE_REQUESTS) || 0);
const ADMIN_TOKEN = "fuzz-admin";
const SEGMENT = "fuzz";
const MIB = 1024 * 1024;
/** Stop writing to a hostile socket while this much is buffered: the fuzzer must not measure its own queue. */
const BUFFERED_LIMIT = 512 * 1024;
/** Messages per connection before a hostile port starts over (a descriptor port usually gets closed sooner). */
const MESSAGES_PER_CONNECTION = 2000;
/** A raw port is never closed for bad frames: it starts over sooner, to leave room for the other scenarios. */
const MESSAGES_PER_RAW_CONNECTION = 100;

type Scenario = "descriptor" | "raw" | "pre-hello";

interface Tally {
  /** Messages the relay took in: answered by a later pong, or the one it closed the port for. */
  messages: number;
  /** Messages written, including those behind a fatal one that the relay never read. */
  written: number;
  byScenario: Record<Scenario, number>;
  connections: number;
  upgradesRefused: number;
  closes: Map<number, number>;
}

/** Fuzz messages a descriptor port may have in flight before it waits for the pong behind the oldest. */
const PIPELINE = 8;

/**
 * One hostile connection: sends until closed, its message budget is spent, or the run has enough.
 * A descriptor port follows each fuzz message with a ping and counts the message once the pong
 * (or the close it caused) comes back, so only messages the relay actually read are counted.
 */
async function hostileConnection(relay: LocalRelay, random: Random, tally: Tally, done: () => boolean): Promise<void> {
  // Weighted by connections; a raw connection carries many more messages than a descriptor one (which is usually closed within ~10).
  const scenario: Scenario = random.chance(0.08) ? "raw" : random.chance(0.2) ? "pre-hello" : "descriptor";
  let ws: WebSocket;
  try {
    ws = await openSocket(connectUrl(relay.wsUrl, SEGMENT), scenario === "raw" ? [] : [SUBPROTOCOL_V1]);
  } catch {
    tally.upgradesRefused++;
    await sleep(20);
    return;
  }
  tally.connections++;
  let closed = false;
  let answered = 0;
  let wake: (() => void) | null = null;
  const count = (n: number): void => {
    tally.messages += n;
    tally.byScenario[scenario] += n;
  };
  ws.on("close", (code) => {
    closed = true;
    tally.closes.set(code, (tally.closes.get(code) ?? 0) + 1);
    wake?.();
  });
  ws.on("error", () => undefined);
  ws.on("message", (data: Buffer, isBinary: boolean) => {
    if (!isBinary) return;
    forEachRecord(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), {
      record: (record) => {
        if (record.type === "pong" && record.seq === PONG_TAG) {
          answered++;
          wake?.();
        }
      },
    });
  });
  const write = (bytes: Uint8Array | string): void => {
    ws.send(bytes);
    tally.written++;
  };

  if (scenario === "pre-hello") {
    write(random.chance(0.5) ? random.bytes(random.below(256)) : mutate(random, encodeRecords([randomHello(random)])));
    count(1);
  } else if (scenario === "raw") {
    for (let i = 0; i < MESSAGES_PER_RAW_CONNECTION && !closed && !done(); i++) {
      while (ws.bufferedAmount > BUFFERED_LIMIT && !closed) await sleep(1);
      if (closed) break;
      write(random.chance(0.005) ? "garbage text" : random.bytes(random.below(1600)));
      count(1);
      if (i % 64 === 63) await new Promise((resolve) => setImmediate(resolve));
    }
  } else {
    write(encodeRecords([randomHello(random), { type: "rx-post", count: random.below(512), bufferSize: 2048 }]));
    count(1);
    let id = 0;
    const nextId = (): number => id++ & 0xffff;
    let sent = 0;
    while (sent < MESSAGES_PER_CONNECTION && !closed && !done()) {
      if (sent - answered >= PIPELINE) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 5000);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = null;
        if (sent - answered >= PIPELINE) break; // no pong in 5 s: the port is stuck in HELLO or refused; start over
        continue;
      }
      const valid = validMessage(random, nextId, [BYSTANDER_A, BYSTANDER_B]);
      write(random.chance(0.9) ? valid : mutate(random, valid));
      write(PING);
      sent++;
    }
    // Give the last pongs (or the close) a moment, then count what the relay read.
    const deadline = Date.now() + 2000;
    while (!closed && answered < sent && Date.now() < deadline) await sleep(5);
    count(Math.min(sent, answered + (closed ? 1 : 0)));
  }
  ws.terminate();
}

/** The ping each fuzz message is followed by; its pong proves the relay read everything before it. */
const PONG_TAG = 0xf022;
const PING = encodeRecords([{ type: "ping", seq: PONG_TAG, timestamp: 0 }]);

async function main(): Promise<number> {
  console.log(`fuzz:relay: ${MESSAGES.toLocaleString("en")} messages from ${CONCURRENCY} hostile connections at a time, seed ${SEED}`);
  const relay = await startLocalRelay(ADMIN_TOKEN);
  const bystanders = new BystanderProcess();
  const started = Date.now();
  const sampler = new RssSampler(relay.workerPid, 250);
  let relayDiedAt: number | null = null;
  const watch = setInterval(() => {
    if (relayDiedAt === null && (!relay.alive() || !processAlive(relay.workerPid))) relayDiedAt = Date.now();
  }, 200);
  try {
    const admin = new Admin(relay.baseUrl, ADMIN_TOKEN);
    await admin.putSegment(SEGMENT, { openJoin: true, maxPorts: CONCURRENCY * 4 + 16 });
    await bystanders.join(relay.wsUrl, SEGMENT);
    await bystanders.start(PING_MS);
    await sleep(1000);
    const idle = await bystanders.window(2000);

    const tally: Tally = { messages: 0, written: 0, byScenario: { descriptor: 0, raw: 0, "pre-hello": 0 }, connections: 0, upgradesRefused: 0, closes: new Map() };
    const deadline = Date.now() + MAX_SECONDS * 1000;
    const done = (): boolean => tally.messages >= MESSAGES || Date.now() > deadline || relayDiedAt !== null;
    const fuzzStart = Date.now();
    const progress = setInterval(() => console.log(`  ${tally.messages.toLocaleString("en")} messages, ${tally.connections} connections, workerd RSS ${(rssBytes(relay.workerPid) / MIB).toFixed(0)} MiB`), 10_000);
    await Promise.all(Array.from({ length: CONCURRENCY }, async (_, lane) => {
      const random = new Random(SEED + lane * 0x9e37);
      while (!done()) await hostileConnection(relay, random, tally, done);
    }));
    clearInterval(progress);
    const fuzzSeconds = (Date.now() - fuzzStart) / 1000;
    const counters = await admin.counters(SEGMENT, 20_000);
    const attacked = await bystanders.window(10_000);
    const relayAlive = relayDiedAt === null && relay.alive() && processAlive(relay.workerPid);
    const health = relayAlive ? (await fetch(`${relay.baseUrl}/healthz`).then((r) => r.ok, () => false)) : false;
    const growth = sampler.stop();
    const summary = {
      fuzz: "relay", seed: SEED, messages: tally.messages, messagesWritten: tally.written, messagesByScenario: tally.byScenario, connections: tally.connections,
      upgradesRefused: tally.upgradesRefused, closeCodes: Object.fromEntries([...tally.closes].sort(([a], [b]) => a - b)),
      seconds: Number(fuzzSeconds.toFixed(1)), messagesPerSecond: Math.round(tally.messages / fuzzSeconds),
      relayAlive, relayHealthy: health, relayUptimeSeconds: Number((((relayDiedAt ?? Date.now()) - started) / 1000).toFixed(1)),
      rssStartMiB: Number((sampler.start / MIB).toFixed(1)), rssPeakMiB: Number((sampler.peak / MIB).toFixed(1)), rssGrowthMiB: Number((growth / MIB).toFixed(1)),
      bystander: { idleP50Ms: round(idle.p50Ms), idleP99Ms: round(idle.p99Ms), p50Ms: round(attacked.p50Ms), p99Ms: round(attacked.p99Ms), sent: attacked.sent, lost: attacked.lost },
      segmentCounters: counters,
    };
    console.log(`relay ${relayAlive ? "alive" : "DIED"} for ${summary.relayUptimeSeconds} s; ${summary.messages} messages in ${summary.seconds} s (${summary.messagesPerSecond}/s) over ${summary.connections} connections`);
    console.log(`bystanders: ${attacked.sent} pings, ${attacked.lost} lost; RTT p50 ${round(attacked.p50Ms)} ms p99 ${round(attacked.p99Ms)} ms (idle ${round(idle.p50Ms)} / ${round(idle.p99Ms)} ms)`);
    console.log(`workerd RSS ${summary.rssStartMiB} → peak ${summary.rssPeakMiB} MiB (${((growth / 1024) / Math.max(1, tally.connections)).toFixed(2)} KiB per connection)`);
    await relay.stop();
    const baseline = await baselineFor(tally.connections);
    if (baseline !== null) {
      console.log(`runtime baseline: a trivial Worker under the same wrangler dev grew workerd ${baseline.rssGrowthMiB} MiB over ${baseline.requests} requests (${baseline.kibPerRequest} KiB per request)`);
    }
    console.log(JSON.stringify({ ...summary, rssKiBPerConnection: Number(((growth / 1024) / Math.max(1, tally.connections)).toFixed(2)), runtimeBaseline: baseline }));
    return attacked.lost === 0 && relayAlive && health ? 0 : 1;
  } finally {
    clearInterval(watch);
    sampler.stop();
    await bystanders.close();
    await relay.stop();
  }
}

/** The runtime's own memory per request (runtime-baseline.ts), or null when skipped or it failed to start. */
async function baselineFor(connections: number): Promise<RuntimeBaseline | null> {
  const requests = BASELINE_REQUESTS ?? Math.min(connections, 20_000);
  if (requests === 0) return null;
  try {
    return await runtimeBaseline(requests);
  } catch (error) {
    console.log(`runtime baseline skipped: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`);
    return null;
  }
}

function round(x: number): number {
  return Number.isFinite(x) ? Number(x.toFixed(2)) : x;
}

stopRelaysOnSignal("fuzz:relay");

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
