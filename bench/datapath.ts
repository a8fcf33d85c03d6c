// Switching throughput of datapath/bridge.ts: `npm run bench:datapath`.
// 16 member ports, each with one registered MAC; batches of 32 frames from one
// ingress port. Each case warms up, then runs for about 2 s. The last line of
// output is one JSON object for scripts.
import { Bridge, DEFAULT_BRIDGE_CONFIG, ForwardOutcome } from "../datapath/bridge.ts";
import { BROADCAST_MAC, writeMac, type MacKey } from "../datapath/mac.ts";

const PORTS = 16;
const BATCH = 32;
const BATCHES_PER_PORT = 64;
const WARMUP_MS = 500;
const RUN_MS = 2000;
/** How many batches run between clock reads, so timing costs nothing measurable. */
const CHECK_EVERY = 256;

const portMac = (port: number): MacKey => 0x020000000000 + port;

/** A frame of `length` bytes from `source` to `destination`, EtherType IPv4. */
function makeFrame(destination: MacKey, source: MacKey, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  writeMac(destination, bytes, 0);
  writeMac(source, bytes, 6);
  bytes[12] = 0x08;
  return bytes;
}

/** For each ingress port, batches of frames spread over the other ports (or all to broadcast). */
function makeTraffic(length: number, broadcast: boolean): Uint8Array[][][] {
  let seed = 12345;
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const traffic: Uint8Array[][][] = [];
  for (let port = 0; port < PORTS; port++) {
    const batches: Uint8Array[][] = [];
    for (let b = 0; b < BATCHES_PER_PORT; b++) {
      const batch: Uint8Array[] = [];
      for (let i = 0; i < BATCH; i++) {
        const target = (port + 1 + random(PORTS - 1)) % PORTS;
        batch.push(makeFrame(broadcast ? BROADCAST_MAC : portMac(target), portMac(port), length));
      }
      batches.push(batch);
    }
    traffic.push(batches);
  }
  return traffic;
}

function makeBridge(): Bridge {
  const bridge = new Bridge(DEFAULT_BRIDGE_CONFIG, Date.now);
  for (let port = 0; port < PORTS; port++) {
    const added = bridge.addPort(port, { kind: "member", macs: [portMac(port)], filter: { promiscuous: false, allMulticast: false, multicast: [] } });
    if (!added.ok) throw new Error(added.error.message);
  }
  return bridge;
}

/** Runs `step(batchIndex)` (which returns frames handled) for `ms`; returns frames per second. */
function measure(ms: number, step: (n: number) => number): number {
  const start = performance.now();
  let frames = 0;
  let n = 0;
  for (;;) {
    for (let i = 0; i < CHECK_EVERY; i++) frames += step(n++);
    const elapsed = performance.now() - start;
    if (elapsed >= ms) return (frames * 1000) / elapsed;
  }
}

/** Warms up, then measures; returns frames per second of the measured run. */
function run(step: (n: number) => number): number {
  measure(WARMUP_MS, step);
  return measure(RUN_MS, step);
}

/** The bridge: one forward() per batch, outcome reused. Also checks that every frame was forwarded. */
function bridgeCase(traffic: Uint8Array[][][]): { fps: number; deliveriesPerFrame: number } {
  const bridge = makeBridge();
  const out = new ForwardOutcome();
  let deliveries = 0;
  let frames = 0;
  const fps = run((n) => {
    const port = n % PORTS;
    const batch = (traffic[port] as Uint8Array[][])[(n >> 4) % BATCHES_PER_PORT] as Uint8Array[];
    bridge.forward(port, batch, out);
    if (out.forwarded !== batch.length) throw new Error(`dropped frames: verdicts ${out.verdicts.join(",")}`);
    return batch.length;
  });
  // One more pass, outside timing, to report fan-out.
  for (let port = 0; port < PORTS; port++) {
    bridge.forward(port, (traffic[port] as Uint8Array[][])[0] as Uint8Array[], out);
    for (const egress of out.egressPorts()) deliveries += out.deliveriesFor(egress).length;
    frames += out.forwarded;
  }
  return { fps, deliveriesPerFrame: deliveries / frames };
}

/** The naive baseline: string MAC keys in a Map<string, number>, a fresh result Map per batch. */
function naiveCase(traffic: Uint8Array[][][]): number {
  const table = new Map<string, number>();
  for (let port = 0; port < PORTS; port++) table.set(macText(makeFrame(portMac(port), 0, 14), 0), port);
  return run((n) => {
    const port = n % PORTS;
    const batch = (traffic[port] as Uint8Array[][])[(n >> 4) % BATCHES_PER_PORT] as Uint8Array[];
    const egress = new Map<number, Uint8Array[]>();
    for (const frame of batch) {
      const target = table.get(macText(frame, 0));
      if (target === undefined || target === port) continue;
      const list = egress.get(target) ?? [];
      list.push(frame);
      egress.set(target, list);
    }
    return batch.length;
  });
}

function macText(bytes: Uint8Array, offset: number): string {
  return Array.from(bytes.subarray(offset, offset + 6), (b) => b.toString(16).padStart(2, "0")).join(":");
}

const format = (n: number): string => `${(n / 1e6).toFixed(2)} M`;

const unicast64 = bridgeCase(makeTraffic(64, false));
console.log(`unicast   64 B, ${PORTS} ports, batch ${BATCH}: ${format(unicast64.fps)}frames/s (${unicast64.deliveriesPerFrame.toFixed(2)} deliveries/frame)`);
const naive64 = naiveCase(makeTraffic(64, false));
const speedup = unicast64.fps / naive64;
console.log(`baseline  64 B, Map<string, port> lookup loop:  ${format(naive64)}frames/s  → bridge is ${speedup.toFixed(1)}x faster`);
const unicast1514 = bridgeCase(makeTraffic(1514, false));
const gbps = (unicast1514.fps * 1514 * 8) / 1e9;
console.log(`unicast 1514 B: ${format(unicast1514.fps)}frames/s = ${gbps.toFixed(1)} Gbit/s switched (no copy: the decision, not memcpy)`);
const broadcast64 = bridgeCase(makeTraffic(64, true));
console.log(
  `broadcast 64 B: ${format(broadcast64.fps)}frames/s in, ${format(broadcast64.fps * broadcast64.deliveriesPerFrame)}deliveries/s (${broadcast64.deliveriesPerFrame.toFixed(0)} per frame)`,
);
console.log(
  JSON.stringify({
    unicast64_fps: Math.round(unicast64.fps),
    unicast1514_gbps: Number(gbps.toFixed(2)),
    broadcast64_fps: Math.round(broadcast64.fps),
    broadcast64_deliveries_per_s: Math.round(broadcast64.fps * broadcast64.deliveriesPerFrame),
    baseline_unicast64_fps: Math.round(naive64),
    speedup_vs_baseline: Number(speedup.toFixed(2)),
    ports: PORTS,
    batch: BATCH,
  }),
);
