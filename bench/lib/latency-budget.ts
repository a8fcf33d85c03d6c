// The latency budget of one ping through two edgelan agents, from the trace files
// client/frame-trace.ts writes (EDGELAN_TRACE_FILE): each line is
// `point type id seq ns sent received` with CLOCK_MONOTONIC nanoseconds, one clock
// for every process on the machine, so stamps from agent A and agent B can be
// subtracted; sent/received count the agent's binary WebSocket messages so far.
//
// An echo request goes A tap-read → A ws-sending → B ws-recv → B tap-write; B's
// kernel answers; the reply goes B tap-read → B ws-sending → A ws-recv → A tap-write.
// The two "relay" hops (ws-sending in one agent → ws-recv in the other) are
// everything from the agent's socket send on: the send call itself (the loopback
// write, which also runs the receiver's TCP input and wakes it), wrangler dev's
// proxy when it is in the path, workerd, the segment's Durable Object, and the
// other agent waking up. `a_send`/`b_send` (ws-sending → ws-send: how long the
// send call took) are part of the relay hops, shown apart.
import { readFileSync } from "node:fs";

/** One hop of the budget: its name, what it covers, and p50/p99 in µs over the traced pings. */
export interface HopFigures { hop: string; meaning: string; p50_us: number; p99_us: number; n: number }

export interface LatencyBudget {
  hops: HopFigures[];
  /** Pings found complete (all ten stamps) in both traces; the hops are figures over these. */
  pings: number;
  /** Echo requests agent A read from its TAP (each names one ping). */
  requests: number;
  /** Why no ping was complete (which stamps are missing where), or null when some were. */
  problem: string | null;
  /**
   * Binary WebSocket messages per ping (median over consecutive complete pings), per agent and in all;
   * null when the agents' traces carry no message counts. With lazy completions a ping costs 4.
   */
  messages: MessagesPerPing | null;
}

export interface MessagesPerPing { a_sent: number; a_received: number; b_sent: number; b_received: number; total: number }

/** One stamp: when, and how many binary messages the agent had sent and received by then (null in older traces). */
export interface Stamp { ns: bigint; sent: number | null; received: number | null }

interface HopSpec { hop: string; meaning: string; from: [Agent, Point, Echo]; to: [Agent, Point, Echo] }
type Agent = "a" | "b";
type Point = "tap-read" | "ws-sending" | "ws-send" | "ws-recv" | "tap-write";
type Echo = "request" | "reply";

const HOPS: readonly HopSpec[] = [
  { hop: "a_tx", meaning: "agent A: TAP read → message about to be sent (batch, encode)", from: ["a", "tap-read", "request"], to: ["a", "ws-sending", "request"] },
  { hop: "relay_ab", meaning: "A's send → B has the message: the send call, loopback, proxy (if any), workerd, the segment, B waking", from: ["a", "ws-sending", "request"], to: ["b", "ws-recv", "request"] },
  { hop: "b_rx", meaning: "agent B: message received → TAP write (decode, deliver)", from: ["b", "ws-recv", "request"], to: ["b", "tap-write", "request"] },
  { hop: "b_kernel", meaning: "B's kernel: request written → reply read by agent B", from: ["b", "tap-write", "request"], to: ["b", "tap-read", "reply"] },
  { hop: "b_tx", meaning: "agent B: TAP read → message about to be sent", from: ["b", "tap-read", "reply"], to: ["b", "ws-sending", "reply"] },
  { hop: "relay_ba", meaning: "B's send → A has the message, as relay_ab", from: ["b", "ws-sending", "reply"], to: ["a", "ws-recv", "reply"] },
  { hop: "a_rx", meaning: "agent A: message received → TAP write", from: ["a", "ws-recv", "reply"], to: ["a", "tap-write", "reply"] },
  { hop: "tap_to_tap", meaning: "A's TAP read of the request → A's TAP write of the reply (all of the above)", from: ["a", "tap-read", "request"], to: ["a", "tap-write", "reply"] },
  { hop: "a_send", meaning: "part of relay_ab: A's send call (ws.send: mask, loopback write, the receiver's TCP input)", from: ["a", "ws-sending", "request"], to: ["a", "ws-send", "request"] },
  { hop: "b_send", meaning: "part of relay_ba: B's send call", from: ["b", "ws-sending", "reply"], to: ["b", "ws-send", "reply"] },
];

/** Stamps of one trace file by `point|type|id|seq`; a key seen twice (an id reused) is dropped. */
function readTrace(path: string): Map<string, Stamp> {
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return new Map();
  }
  return parseTrace(text);
}

/** Stamps of one trace's text (lines `point type id seq ns [sent received]`); a key seen twice (an id reused) is dropped. */
export function parseTrace(text: string): Map<string, Stamp> {
  const stamps = new Map<string, Stamp>();
  const duplicates = new Set<string>();
  const count = (field: string | undefined): number | null => (field === undefined || field === "" ? null : Number(field));
  for (const line of text.split("\n")) {
    const [point, type, id, seq, ns, sent, received] = line.split(" ");
    if (point === undefined || ns === undefined) continue;
    const key = `${point}|${type}|${id}|${seq}`;
    if (stamps.has(key)) duplicates.add(key);
    stamps.set(key, { ns: BigInt(ns), sent: count(sent), received: count(received) });
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

/** The stamps of one ping: every hop's ends. */
const STAMPS: readonly StampSpec[] = [...new Map(HOPS.flatMap((hop) => [hop.from, hop.to]).map((spec) => [spec.join(" "), spec])).values()];

/** The budget from agent A's and agent B's trace files (A pinged B). */
export function latencyBudget(traceA: string, traceB: string): LatencyBudget {
  return pairStamps(readTrace(traceA), readTrace(traceB));
}

/**
 * Pairs two agents' stamps by echo identity (type, id, sequence): a ping is the
 * request agent A read from its TAP, and it counts when all ten stamps are there.
 */
export function pairStamps(a: Map<string, Stamp>, b: Map<string, Stamp>): LatencyBudget {
  const traces = { a, b };
  const stamp = (ping: string, [agent, point, echo]: StampSpec): Stamp | undefined =>
    traces[agent].get(`${point}|${echo === "request" ? 8 : 0}|${ping}`);
  const at = (ping: string, spec: StampSpec): bigint => (stamp(ping, spec) as Stamp).ns;
  // Every echo request agent A read from its TAP names one ping ("id|seq"), in the order A read them.
  const pings = [...a.keys()].filter((key) => key.startsWith("tap-read|8|")).map((key) => key.slice("tap-read|8|".length))
    .sort((x, y) => (at(x, A_REQUEST_READ) < at(y, A_REQUEST_READ) ? -1 : 1));
  const complete = pings.filter((ping) => STAMPS.every((spec) => stamp(ping, spec) !== undefined));
  const hops = HOPS.map((hop): HopFigures => {
    const values = complete.map((ping) => Number(at(ping, hop.to) - at(ping, hop.from)) / 1000).sort((x, y) => x - y);
    return { hop: hop.hop, meaning: hop.meaning, p50_us: Math.round(percentile(values, 50)), p99_us: Math.round(percentile(values, 99)), n: values.length };
  });
  return {
    hops, pings: complete.length, requests: pings.length, problem: complete.length > 0 ? null : whyIncomplete(pings, stamp),
    messages: messagesPerPing(complete.map((ping) => ({ a: stamp(ping, A_REQUEST_READ) as Stamp, b: stamp(ping, B_REQUEST_RECEIVED) as Stamp }))),
  };
}

const A_REQUEST_READ: StampSpec = ["a", "tap-read", "request"];
const B_REQUEST_RECEIVED: StampSpec = ["b", "ws-recv", "request"];

/**
 * Messages per ping: each agent's message counts at the same point of consecutive pings (A when it
 * reads the request from its TAP, B when the request arrives) differ by what one ping cycle cost; the
 * median ignores the odd cycle that also carried something else (a credit post, a read acknowledgement).
 */
function messagesPerPing(cycle: ReadonlyArray<{ a: Stamp; b: Stamp }>): MessagesPerPing | null {
  const deltas = { a_sent: [] as number[], a_received: [] as number[], b_sent: [] as number[], b_received: [] as number[] };
  for (let i = 1; i < cycle.length; i++) {
    const [before, after] = [cycle[i - 1], cycle[i]] as [{ a: Stamp; b: Stamp }, { a: Stamp; b: Stamp }];
    if (before.a.sent === null || after.a.sent === null || before.b.sent === null || after.b.sent === null) continue;
    deltas.a_sent.push(after.a.sent - before.a.sent);
    deltas.a_received.push((after.a.received ?? 0) - (before.a.received ?? 0));
    deltas.b_sent.push(after.b.sent - before.b.sent);
    deltas.b_received.push((after.b.received ?? 0) - (before.b.received ?? 0));
  }
  if (deltas.a_sent.length === 0) return null;
  const median = (values: number[]): number => percentile(values.sort((x, y) => x - y), 50);
  const result = { a_sent: median(deltas.a_sent), a_received: median(deltas.a_received), b_sent: median(deltas.b_sent), b_received: median(deltas.b_received) };
  return { ...result, total: result.a_sent + result.a_received + result.b_sent + result.b_received };
}

/** Names the stamps no ping has (for example "b ws-recv request"), so a broken trace says where it broke. */
function whyIncomplete(pings: readonly string[], stamp: (ping: string, spec: StampSpec) => Stamp | undefined): string {
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
    budget.messages === null
      ? `${tag}   WebSocket messages per ping: not counted (an agent's trace has no message counts)`
      : `${tag}   WebSocket messages per ping: ${budget.messages.total} (A sent ${budget.messages.a_sent}, received ${budget.messages.a_received}; B sent ${budget.messages.b_sent}, received ${budget.messages.b_received})`,
  ];
}
