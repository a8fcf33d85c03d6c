// The latency budget's trace end to end (issue 13): two real `edgelan join` agents with
// EDGELAN_TRACE_FILE, in namespaces this test creates, on one segment of a real `wrangler dev`.
// Every ping must be traced at all ten points (the budget once read 0 pings because `join` opened
// its session without the trace), and a ping must cost 4 WebSocket messages: the request and the
// reply, each sent once and received once, completions riding on them (LazyCompletions).
// Needs root and /dev/net/tun (CI runs as root).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { latencyBudget } from "../../bench/lib/latency-budget.ts";
import { startRelay, type RunningRelay } from "./relay-harness.ts";
import { commandExists, guestSkipReason, Namespaces, ping } from "./guests.ts";

const skip = guestSkipReason() ?? (commandExists("ping") ? null : "needs ping");
const PINGS = 20;

let relay: RunningRelay;
const namespaces = new Namespaces();
let work: string;
let nsA: string;
let nsB: string;

/** Starts `edgelan join` with EDGELAN_TRACE_FILE set (the child copies the environment at spawn). */
function tracedJoin(ns: string, url: string, mac: string, traceFile: string, extra: string[]): void {
  process.env.EDGELAN_TRACE_FILE = traceFile;
  try {
    namespaces.join(ns, url, { mac, extra });
  } finally {
    delete process.env.EDGELAN_TRACE_FILE;
  }
}

/** Waits until the agents appended their traces (they flush at least once a second), at most 10 s. */
async function budgetWithPings(a: string, b: string, pings: number): Promise<ReturnType<typeof latencyBudget>> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const budget = latencyBudget(a, b);
    if (budget.pings >= pings || Date.now() > deadline) return budget;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describe.skipIf(skip !== null)(`latency trace through real agents${skip !== null ? ` (skipped: ${skip})` : ""}`, () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "edgelan-latency-trace-"));
    relay = await startRelay();
  });

  afterAll(async () => {
    await namespaces.cleanup();
    await relay?.stop();
    if (relay !== undefined) rmSync(relay.stateDir, { recursive: true, force: true });
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  for (const offload of [false, true]) {
    it(`traces every ping at all ten points, and a ping costs 4 WebSocket messages (${offload ? "offload" : "plain"} TAPs)`, async () => {
      const url = `${relay.wsUrl}/v1/segments/trace-${offload ? "offload" : "plain"}/connect`;
      const traces = { a: join(work, `a-${offload}.trace`), b: join(work, `b-${offload}.trace`) };
      nsA = namespaces.create("a");
      nsB = namespaces.create("b");
      const flags = [offload ? "--offload" : "--no-offload"];
      tracedJoin(nsA, url, "02:00:00:00:e7:01", traces.a, flags);
      tracedJoin(nsB, url, "02:00:00:00:e7:02", traces.b, flags);
      await namespaces.address(nsA, "elt0", "10.237.0.1/24");
      await namespaces.address(nsB, "elt0", "10.237.0.2/24");
      expect(await namespaces.reachable(nsA, "10.237.0.2", 20_000)).toBe(true);

      // 50 ms apart: each ping is answered before the next (the count is per ping, not per batch). Delivery
      // itself is guests.test.ts's subject: a reply lost on a loaded machine only leaves one ping out here.
      const replies = ping(namespaces, nsA, "10.237.0.2", PINGS, 0.05).received;
      expect(replies).toBeGreaterThanOrEqual(PINGS - 2);
      const budget = await budgetWithPings(traces.a, traces.b, replies);
      expect(budget.problem).toBeNull();
      // The reachability probes are traced too: at least every answered ping, each with all ten stamps.
      expect(budget.pings).toBeGreaterThanOrEqual(replies);
      expect(budget.hops.every((hop) => hop.n === budget.pings && hop.p50_us >= 0)).toBe(true);
      expect(budget.messages).toEqual({ a_sent: 1, a_received: 1, b_sent: 1, b_received: 1, total: 4 });
    });
  }
});
