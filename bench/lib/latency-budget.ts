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
  /** Pings found complete (all eight stamps) in both traces; the hops are figures over these. */
  pings: number;
  /** Echo requests agent A read from its TAP (each names one ping). */
  requests: number;
  /** Why no ping was complete (which stamps are missing where), or null when some were. */
  problem: string | null;
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
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return new Map();
  }
  return parseTrace(text);
}

/** Stamps of one trace's text (lines `point type id seq ns`); a key seen twice (an id reused) is dropped. */
export function parseTrace(text: string): Map<string, bigint> {
  const stamps = new Map<string, bigint>();
  const duplicates = new Set<string>();
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

/** A stamp's place: which agent, which point, which half of the echo. */
type StampSpec = [Agent, Point, Echo];

/** The eight stamps of one ping, in order along its way. */
const STAMPS: readonly StampSpec[] = HOPS.filter((hop) => hop.hop !== "tap_to_tap").map((hop) => hop.from).concat([["a", "tap-write", "reply"]]);

/** The budget from agent A's and agent B's trace files (A pinged B). */
export function latencyBudget(traceA: string, traceB: string): LatencyBudget {
  return pairStamps(readTrace(traceA), readTrace(traceB));
}

/**
 * Pairs two agents' stamps by echo identity (type, id, sequence): a ping is the
 * request agent A read from its TAP, and it counts when all eight stamps are there.
 */
export function pairStamps(a: Map<string, bigint>, b: Map<string, bigint>): LatencyBudget {
  const traces = { a, b };
  // Every echo request agent A read from its TAP names one ping: "id|seq".
  const pings = [...a.keys()].filter((key) => key.startsWith("tap-read|8|")).map((key) => key.slice("tap-read|8|".length));
  const stamp = (ping: string, [agent, point, echo]: StampSpec): bigint | undefined =>
    traces[agent].get(`${point}|${echo === "request" ? 8 : 0}|${ping}`);
  const complete = pings.filter((ping) => STAMPS.every((spec) => stamp(ping, spec) !== undefined));
  const hops = HOPS.map((hop): HopFigures => {
    const values = complete.map((ping) => Number((stamp(ping, hop.to) as bigint) - (stamp(ping, hop.from) as bigint)) / 1000).sort((x, y) => x - y);
    return { hop: hop.hop, meaning: hop.meaning, p50_us: Math.round(percentile(values, 50)), p99_us: Math.round(percentile(values, 99)), n: values.length };
  });
  return { hops, pings: complete.length, requests: pings.length, problem: complete.length > 0 ? null : whyIncomplete(pings, stamp) };
}

/** Names the stamps no ping has (for example "b ws-recv request"), so a broken trace says where it broke. */
function whyIncomplete(pings: readonly string[], stamp: (ping: string, spec: StampSpec) => bigint | undefined): string {
  if (pings.length === 0) return "agent A's trace has no echo request read from its TAP";
  const missing = STAMPS.filter((spec) => pings.every((ping) => stamp(ping, spec) === undefined)).map((spec) => spec.join(" "));
  return missing.length > 0
    ? `no ping of ${pings.length} has these stamps: ${missing.join(", ")}`
    : `each of ${pings.length} pings lacks some stamp (none is missing from all)`;
}

/** Lines for the console: one per hop. */
export function describeBudget(label: string, budget: LatencyBudget): string[] {
  const tag = label.padEnd(8);
  return [
    `${tag} latency budget over ${budget.pings} of ${budget.requests} pings (µs, p50 / p99)${budget.problem === null ? "" : `: ${budget.problem}`}:`,
    ...budget.hops.map((h) => `${tag}   ${h.hop.padEnd(10)} ${String(h.p50_us).padStart(6)} / ${String(h.p99_us).padEnd(6)} ${h.meaning}`),
  ];
}
