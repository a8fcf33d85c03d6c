// Rates between two polls (what `edgelan top` and the dashboard show), and top's table.
import { describe, expect, it } from "vitest";
import type { PortStatsView, SegmentView } from "../../client/admin-api.ts";
import { renderTop } from "../../client/commands/top.ts";
import { topRows, type TopSample } from "../../client/port-rates.ts";

function stats(portId: number, rxFrames: number, rxBytes: number, drops: Record<string, number> = {}): PortStatsView {
  return { portId, kind: "member", mode: "descriptor", credits: 10, queuedFrames: 0, queuedBytes: 0, counters: { rxFrames, rxBytes, txFrames: 0, txBytes: 0, drops: { "rx-queue-full": 0, ...drops } } };
}

function sample(atMs: number, ports: PortStatsView[]): TopSample {
  const segment: SegmentView = {
    name: "lab", config: {}, counters: {}, queuedBytes: 0,
    ports: ports.map((port) => ({ portId: port.portId, kind: port.kind, mode: port.mode, phase: "open", macs: [`02:00:00:00:00:0${port.portId}`], remote: "127.0.0.1", connectedSince: "2026-05-01T12:00:00.000Z" })),
    forwardingTable: { learned: 0, static: ports.length, entries: [] },
  };
  return { atMs, segment, ports };
}

describe("topRows", () => {
  it("has no rates on the first sample and orders by cumulative traffic then port id", () => {
    const rows = topRows(null, sample(1000, [stats(1, 5, 500), stats(2, 50, 5000), stats(3, 5, 500)]));
    expect(rows.map((row) => [row.portId, row.rxFps])).toEqual([[2, null], [1, null], [3, null]]);
  });

  it("computes frames/s, Mbit/s and drops/s over the interval and sorts by traffic", () => {
    const before = sample(1000, [stats(1, 100, 10_000), stats(2, 0, 0, { "rx-queue-full": 1 })]);
    const after = sample(3000, [stats(1, 300, 260_000), stats(2, 2000, 2_000_000, { "rx-queue-full": 9 })]);
    const rows = topRows(before, after);
    expect(rows.map((row) => row.portId)).toEqual([2, 1]);
    expect(rows[1]).toMatchObject({ rxFps: 100, rxMbps: 1, dropsPerSecond: {} });
    expect(rows[0]).toMatchObject({ rxFps: 1000, rxMbps: 8, dropsPerSecond: { "rx-queue-full": 4 } });
  });

  it("a port that is new since the last sample has no rates yet; a counter that went backwards reads as 0/s", () => {
    const rows = topRows(sample(0, [stats(1, 100, 1000)]), sample(1000, [stats(1, 50, 500), stats(2, 10, 100)]));
    expect(rows.find((row) => row.portId === 1)).toMatchObject({ rxFps: 0, rxMbps: 0 });
    expect(rows.find((row) => row.portId === 2)).toMatchObject({ rxFps: null });
  });
});

describe("renderTop", () => {
  it("prints a header, one line per port and the totals", () => {
    const before = sample(0, [stats(1, 0, 0)]);
    const after = sample(1000, [stats(1, 10, 1250, { "rx-queue-full": 3 })]);
    const lines = renderTop("lab", "http://relay.test", after, topRows(before, after));
    expect(lines[0]).toMatch(/^edgelan top — segment lab at http:\/\/relay.test — 1 ports, 1 MACs in the forwarding table/);
    expect(lines[2]).toMatch(/^PORT\s+KIND\s+MODE\s+MACS\s+REMOTE\s+RX\/s\s+TX\/s\s+RX Mb\/s\s+TX Mb\/s\s+RX\s+TX\s+QUEUE\s+DROPS\/s$/);
    expect(lines[3]?.split(/\s+/)).toEqual(["1", "member", "desc", "02:00:00:00:00:01", "127.0.0.1", "10", "0", "0.01", "0.00", "10", "0", "0", "rx-queue-full", "3"]);
    expect(lines[4]?.split(/\s+/)).toEqual(["TOTAL", "10", "0", "0.01", "0.00", "10", "0", "0", "rx-queue-full", "3"]);
  });
});
