// The latency budget of one ping through two edgelan agents, from the trace files
// client/frame-trace.ts writes (EDGELAN_TRACE_FILE): each line is
// `point type id seq ns` with CLOCK_MONOTONIC nanoseconds, one clock for every
// process on the machine, so stamps from agent A and agent B can be subtracted.
//
// An echo request goes A tap-read → A ws-send → B ws-recv → B tap-write; B's
// kernel answers; the reply goes B tap-read → B ws-send → A ws-recv → A tap-write.
// The two "relay" hops (ws-send in one agent → ws-recv in the other) are
// everything between the agents' sockets: loopback TCP both ways, wrangler dev's
// proxy when it is in the path, workerd and the segment's Durable Object.
import { readFileSync } from "node:fs";

/** One hop of the budget: its name, what it covers, and p50/p99 in µs over the traced pings. */
export interface HopFigures { hop: string; meaning: string; p50_us: number; p99_us: number; n: number }

export interface LatencyBudget {
  hops: HopFigures[];
  /** Pings found complete (all eight stamps) in both traces. */
  pings: number;
}

interface HopSpec { hop: string; meaning: string; from: [Agent, Point, Echo]; to: [Agent, Point, Echo] }
type Agent = "a" | "b";
type Point = "tap-read" | "ws-send" | "ws-recv" | "tap-write";
type Echo = "request" | "reply";

const HOPS: readonly HopSpec[] = [
  { hop: "a_tx", meaning: "agent A: TAP read → message sent (encode, batch, ws.send)", from: ["a", "tap-read", "request"], to: ["a", "ws-send", "request"] },
  { hop: "relay_ab", meaning: "A's socket → B's socket: loopback, proxy (if any), workerd, the segment switching the frame", from: ["a", "ws-send", "request"], to: ["b", "ws-recv", "request"] },
  { hop: "b_rx", meaning: "agent B: message received → TAP write (decode, deliver)", from: ["b", "ws-recv", "request"], to: ["b", "tap-write", "request"] },
  { hop: "b_kernel", meaning: "B's kernel: request written → reply read by agent B", from: ["b", "tap-write", "request"], to: ["b", "tap-read", "reply"] },
  { hop: "b_tx", meaning: "agent B: TAP read → message sent", from: ["b", "tap-read", "reply"], to: ["b", "ws-send", "reply"] },
  { hop: "relay_ba", meaning: "B's socket → A's socket, as relay_ab", from: ["b", "ws-send", "reply"], to: ["a", "ws-recv", "reply"] },
  { hop: "a_rx", meaning: "agent A: message received → TAP write", from: ["a", "ws-recv", "reply"], to: ["a", "tap-write", "reply"] },
  { hop: "tap_to_tap", meaning: "A's TAP read of the request → A's TAP write of the reply (all of the above)", from: ["a", "tap-read", "request"], to: ["a", "tap-write", "reply"] },
];

/** Stamps of one trace file: `point|type|id|seq` → ns; a key seen twice (an id reused) is dropped. */
function readTrace(path: string): Map<string, bigint> {
  const stamps = new Map<string, bigint>();
  const duplicates = new Set<string>();
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return stamps;
  }
  for (const line of text.split("\n")) {
    const [point, type, id, seq, ns] = line.split(" ");
    if (point === undefined || ns === undefined) continue;
    const key = `${point}|${type}|${id}|${seq}`;
    if (stamps.has(key)) duplicates.add(key);
    stamps.set(key, BigInt(ns));
  }
  for (const key of duplicates) stamps.delete(key);
  return stamps;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** The budget from agent A's and agent B's trace files (A pinged B). */
export function latencyBudget(traceA: string, traceB: string): LatencyBudget {
  const traces = { a: readTrace(traceA), b: readTrace(traceB) };
  // Every echo request agent A read from its TAP names one ping.
  const pings = [...traces.a.keys()].filter((key) => key.startsWith("tap-read|8|")).map((key) => key.slice("tap-read|8|".length));
  const stamp = (ping: string, [agent, point, echo]: [Agent, Point, Echo]): bigint | undefined =>
    traces[agent].get(`${point}|${echo === "request" ? 8 : 0}|${ping}`);
  const complete = pings.filter((ping) => HOPS.every((hop) => stamp(ping, hop.from) !== undefined && stamp(ping, hop.to) !== undefined));
  const hops = HOPS.map((hop): HopFigures => {
    const values = complete.map((ping) => Number((stamp(ping, hop.to) as bigint) - (stamp(ping, hop.from) as bigint)) / 1000).sort((x, y) => x - y);
    return { hop: hop.hop, meaning: hop.meaning, p50_us: Math.round(percentile(values, 50)), p99_us: Math.round(percentile(values, 99)), n: values.length };
  });
  return { hops, pings: complete.length };
}

/** Lines for the console: one per hop. */
export function describeBudget(label: string, budget: LatencyBudget): string[] {
  const tag = label.padEnd(8);
  return [
    `${tag} latency budget over ${budget.pings} pings (µs, p50 / p99):`,
    ...budget.hops.map((h) => `${tag}   ${h.hop.padEnd(10)} ${String(h.p50_us).padStart(6)} / ${String(h.p99_us).padEnd(6)} ${h.meaning}`),
  ];
}
