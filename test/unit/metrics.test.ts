// The Prometheus text the metrics route renders, as literal lines: HELP and TYPE
// for every family, label sets, escaping, and series that exist only when they mean something.
import { describe, expect, it } from "vitest";
import { describeCounters, DROP_REASON_NAMES, newPortCounters } from "../../datapath/counters.ts";
import type { PortStats, SegmentDescription } from "../../contract/segment-api.ts";
import { DEFAULT_SEGMENT_CONFIG } from "../../durable/config.ts";
import { renderMetrics } from "../../worker/metrics.ts";

function description(name: string): SegmentDescription {
  return {
    name, config: { ...DEFAULT_SEGMENT_CONFIG, maxPorts: 16, createdAt: "2026-05-01T12:00:00.000Z" }, ports: [],
    forwardingTable: {
      learned: 3, static: 2, agingMs: 300_000, learnLimitPerPort: 64, learnLimitPerSegment: 4096,
      portLimitHits: 1, segmentLimitHits: 0, moves: 4, conflicts: 5, entries: [],
    },
    counters: {
      portsAccepted: 7, portsClosed: 5, hellosRefused: 1, sessionsResumed: 2, malformedMessages: 0, protocolErrors: 3,
      windowOverruns: 0, flushed: 8, suppressed: 9, flushedOnEviction: 6, instanceStarts: 2, rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, dropped: 0,
    },
    queuedBytes: 1500,
  };
}

function port(portId: number, kind: PortStats["kind"], mode: PortStats["mode"]): PortStats {
  const counters = newPortCounters();
  counters.rxFrames = 10;
  counters.rxBytes = 980;
  counters.txFrames = 9;
  counters.txBytes = 882;
  counters.drops[11] = 2;
  return { portId, kind, mode, counters: describeCounters(counters), credits: mode === "raw" ? null : 812, queuedFrames: 1, queuedBytes: 98 };
}

describe("renderMetrics", () => {
  const text = renderMetrics(description("lab"), [port(1, "member", "descriptor"), port(4, "bridge", "raw")]);
  const lines = text.split("\n");

  it("writes HELP and TYPE before each family's samples and ends with a newline", () => {
    expect(text.endsWith("\n")).toBe(true);
    expect(lines.slice(0, 5)).toEqual([
      "# HELP edgelan_port_rx_frames_total Frames the segment received from the port.",
      "# TYPE edgelan_port_rx_frames_total counter",
      'edgelan_port_rx_frames_total{segment="lab",port="1",kind="member",mode="descriptor"} 10',
      'edgelan_port_rx_frames_total{segment="lab",port="4",kind="bridge",mode="raw"} 10',
      "# HELP edgelan_port_rx_bytes_total Bytes the segment received from the port.",
    ]);
    const families = lines.filter((line) => line.startsWith("# TYPE ")).map((line) => line.split(" ")[2]);
    expect(new Set(families).size).toBe(families.length);
    for (const family of families) expect(lines).toContain(lines.find((line) => line.startsWith(`# HELP ${family} `)));
  });

  it("follows the exposition grammar: valid names, one family per name, samples right after their TYPE, base units", () => {
    let family = "";
    for (const line of lines.filter((candidate) => candidate !== "")) {
      const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$/.exec(line);
      if (type !== null) {
        family = type[1] as string;
        if (type[2] === "counter") expect(family).toMatch(/_total$/);
        else expect(family).not.toMatch(/_total$/);
        continue;
      }
      if (line.startsWith("# HELP ")) continue;
      const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*\})? (-?\d+(?:\.\d+)?)$/.exec(line);
      expect(sample, line).not.toBeNull();
      expect(sample?.[1]).toBe(family);
    }
    // Sizes are in bytes and named so; no milli- or kilo- units.
    expect(text).not.toMatch(/_(kb|kilobytes|ms|milliseconds)[_{ ]/);
  });

  it("lists every drop reason per port, zeros included, and credits only for descriptor ports", () => {
    expect(lines).toContain('edgelan_port_drops_total{segment="lab",port="1",kind="member",mode="descriptor",reason="rx-queue-full"} 2');
    expect(lines).toContain('edgelan_port_drops_total{segment="lab",port="1",kind="member",mode="descriptor",reason="runt"} 0');
    expect(lines.filter((line) => line.startsWith("edgelan_port_drops_total{") && line.includes('port="4"'))).toHaveLength(Object.keys(DROP_REASON_NAMES).length);
    expect(lines.filter((line) => line.startsWith("edgelan_port_rx_credits{"))).toEqual([
      'edgelan_port_rx_credits{segment="lab",port="1",kind="member",mode="descriptor"} 812',
    ]);
  });

  it("counts ports by kind and mode and exposes the segment's own counters and table", () => {
    expect(lines).toContain('edgelan_ports{segment="lab",kind="member",mode="descriptor"} 1');
    expect(lines).toContain('edgelan_ports{segment="lab",kind="bridge",mode="raw"} 1');
    expect(lines).toContain('edgelan_ports{segment="lab",kind="monitor",mode="descriptor"} 0');
    expect(lines).toContain('edgelan_segment_ports_accepted_total{segment="lab"} 7');
    expect(lines).toContain('edgelan_segment_flushed_on_eviction_total{segment="lab"} 6');
    expect(lines).toContain('edgelan_segment_instance_starts_total{segment="lab"} 2');
    expect(lines).toContain('edgelan_segment_queued_bytes{segment="lab"} 1500');
    expect(lines).toContain('edgelan_segment_max_ports{segment="lab"} 16');
    expect(lines).toContain('edgelan_fdb_entries{segment="lab",type="learned"} 3');
    expect(lines).toContain('edgelan_fdb_limit_hits_total{segment="lab",scope="port"} 1');
    // Only cumulative values are counters: the per-segment sums of connected ports are not exposed (they fall when a port leaves).
    expect(text).not.toContain("edgelan_segment_rx_frames");
  });

  it("escapes backslashes, quotes and newlines in label values", () => {
    const odd = renderMetrics(description('a"b\\c\nd'), []);
    expect(odd).toContain('edgelan_segment_max_ports{segment="a\\"b\\\\c\\nd"} 16');
  });

  it("with no ports still declares the port families (empty) and the zero port counts", () => {
    const empty = renderMetrics(description("lab"), []).split("\n");
    expect(empty).toContain("# TYPE edgelan_port_rx_frames_total counter");
    expect(empty.filter((line) => line.startsWith("edgelan_port_"))).toEqual([]);
    expect(empty.filter((line) => line.startsWith("edgelan_ports{"))).toHaveLength(6);
  });
});
