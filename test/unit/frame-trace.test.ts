// The latency trace (client/frame-trace.ts) and the budget bench:netns builds from it
// (bench/lib/latency-budget.ts): which frames are stamped, and how two agents' stamps pair up.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { echoKey, FrameTrace } from "../../client/frame-trace.ts";
import { latencyBudget, pairStamps, parseTrace } from "../../bench/lib/latency-budget.ts";

const hex = (text: string): Uint8Array => Uint8Array.from(text.replace(/\s+/g, "").match(/../g) ?? [], (byte) => parseInt(byte, 16));

// Ethernet (dst, src, 0x0800) | IPv4 (ihl 5, proto 1) | ICMP echo request id 0x1234 seq 7.
const ECHO_REQUEST = hex(`
  02 00 00 00 00 02 02 00 00 00 00 01 08 00
  45 00 00 1c 00 00 40 00 40 01 00 00 0a 00 00 01 0a 00 00 02
  08 00 00 00 12 34 00 07`);

const dir = mkdtempSync(join(tmpdir(), "edgelan-trace-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("echoKey", () => {
  it("names ICMP echo requests and replies by type, id and sequence, at an offset (virtio-net header)", () => {
    expect(echoKey(ECHO_REQUEST, 0)).toBe("8 4660 7");
    const reply = ECHO_REQUEST.slice();
    reply[34] = 0x00;
    expect(echoKey(reply, 0)).toBe("0 4660 7");
    expect(echoKey(Uint8Array.from([...new Uint8Array(10), ...ECHO_REQUEST]), 10)).toBe("8 4660 7");
  });

  it("ignores everything else: ARP, UDP, other ICMP types, truncated frames", () => {
    const arp = ECHO_REQUEST.slice();
    arp[13] = 0x06;
    const udp = ECHO_REQUEST.slice();
    udp[23] = 17;
    const unreachable = ECHO_REQUEST.slice();
    unreachable[34] = 3;
    for (const frame of [arp, udp, unreachable, ECHO_REQUEST.subarray(0, 40)]) expect(echoKey(frame, 0)).toBeNull();
  });
});

describe("FrameTrace and latencyBudget", () => {
  it("stamps queued echoes when their message is sent, and writes lines a budget can pair", () => {
    const path = join(dir, "one.trace");
    const trace = new FrameTrace(path);
    trace.mark("tap-read", ECHO_REQUEST, 0);
    trace.queue(ECHO_REQUEST, 0);
    trace.sending();
    trace.sent();
    trace.sending(); // nothing queued any more: no second stamp
    trace.sent();
    trace.flush();
    trace.received();
    trace.mark("ws-recv", ECHO_REQUEST, 0);
    trace.flush();
    const lines = readFileSync(path, "utf8").trim().split("\n").map((line) => line.split(" "));
    expect(lines.map((fields) => fields.slice(0, 4).join(" "))).toEqual(["tap-read 8 4660 7", "ws-sending 8 4660 7", "ws-send 8 4660 7", "ws-recv 8 4660 7"]);
    // Binary messages sent and received so far: the two sending() calls count, only one carried the echo.
    expect(lines.map((fields) => fields.slice(5).join(" "))).toEqual(["0 0", "1 0", "1 0", "2 1"]);
  });

  it("turns two agents' stamps into µs per hop; pings with a missing stamp are left out", () => {
    const a = join(dir, "a.trace");
    const b = join(dir, "b.trace");
    const at = (us: number): string => String(1_000_000_000 + us * 1000);
    writeFileSync(a, [
      `tap-read 8 1 1 ${at(0)}`, `ws-sending 8 1 1 ${at(10)}`, `ws-send 8 1 1 ${at(13)}`, `ws-recv 0 1 1 ${at(300)}`, `tap-write 0 1 1 ${at(305)}`,
      `tap-read 8 1 2 ${at(1000)}`, // ping 2 never came back
    ].join("\n"));
    writeFileSync(b, [
      `ws-recv 8 1 1 ${at(110)}`, `tap-write 8 1 1 ${at(112)}`, `tap-read 0 1 1 ${at(150)}`, `ws-sending 0 1 1 ${at(160)}`, `ws-send 0 1 1 ${at(167)}`,
    ].join("\n"));
    const budget = latencyBudget(a, b);
    expect(budget.pings).toBe(1);
    expect(Object.fromEntries(budget.hops.map((h) => [h.hop, h.p50_us]))).toEqual({
      a_tx: 10, relay_ab: 100, b_rx: 2, b_kernel: 38, b_tx: 10, relay_ba: 140, a_rx: 5, tap_to_tap: 305, a_send: 3, b_send: 7,
    });
  });

  it("pairs by echo id and sequence across pings of several runs, and drops a key stamped twice", () => {
    const at = (us: number): string => String(2_000_000_000 + us * 1000);
    // Two pings of two `ping` runs (ids 7 and 9): A's stamps pair with B's by id and sequence alone.
    const agentA = (id: number, t0: number): string[] => [
      `tap-read 8 ${id} 1 ${at(t0)}`, `ws-sending 8 ${id} 1 ${at(t0 + 18)}`, `ws-send 8 ${id} 1 ${at(t0 + 20)}`, `ws-recv 0 ${id} 1 ${at(t0 + 500)}`, `tap-write 0 ${id} 1 ${at(t0 + 510)}`,
    ];
    const agentB = (id: number, t0: number): string[] => [
      `ws-recv 8 ${id} 1 ${at(t0 + 220)}`, `tap-write 8 ${id} 1 ${at(t0 + 230)}`, `tap-read 0 ${id} 1 ${at(t0 + 270)}`, `ws-sending 0 ${id} 1 ${at(t0 + 288)}`, `ws-send 0 ${id} 1 ${at(t0 + 290)}`,
    ];
    const a = parseTrace([...agentA(7, 0), ...agentA(9, 5000), `tap-read 8 9 1 ${at(9000)}`].join("\n"));
    const b = parseTrace([...agentB(9, 5000), ...agentB(7, 0)].join("\n"));
    // Ping 9/1 was read twice by A (an id reused): its tap-read is ambiguous and the ping is left out.
    const budget = pairStamps(a, b);
    expect(budget).toMatchObject({ pings: 1, requests: 1, problem: null });
    expect(budget.hops.find((h) => h.hop === "relay_ab")?.p50_us).toBe(202);
    expect(budget.hops.find((h) => h.hop === "tap_to_tap")?.p50_us).toBe(510);
  });

  it("counts WebSocket messages per ping from consecutive pings' counts, and none from traces without them", () => {
    // Each line: point type id seq ns sent received. Four pings; each costs A one message out and one in,
    // B the same, except that B also posted RX credits (one more message) during the second cycle.
    const a: string[] = [];
    const b: string[] = [];
    const stamps = (seq: number, extraB: number): void => {
      const t = seq * 10_000;
      a.push(`tap-read 8 3 ${seq} ${t} ${seq - 1} ${seq - 1}`, `ws-sending 8 3 ${seq} ${t + 5} ${seq} ${seq - 1}`, `ws-send 8 3 ${seq} ${t + 6} ${seq} ${seq - 1}`);
      a.push(`ws-recv 0 3 ${seq} ${t + 300} ${seq} ${seq}`, `tap-write 0 3 ${seq} ${t + 301} ${seq} ${seq}`);
      const sent = seq - 1 + extraB;
      b.push(`ws-recv 8 3 ${seq} ${t + 100} ${sent} ${seq}`, `tap-write 8 3 ${seq} ${t + 101} ${sent} ${seq}`, `tap-read 0 3 ${seq} ${t + 150} ${sent} ${seq}`);
      b.push(`ws-sending 0 3 ${seq} ${t + 160} ${sent + 1} ${seq}`, `ws-send 0 3 ${seq} ${t + 161} ${sent + 1} ${seq}`);
    };
    stamps(1, 0);
    stamps(2, 0);
    stamps(3, 1);
    stamps(4, 1);
    const budget = pairStamps(parseTrace(a.join("\n")), parseTrace(b.join("\n")));
    expect(budget.pings).toBe(4);
    expect(budget.messages).toEqual({ a_sent: 1, a_received: 1, b_sent: 1, b_received: 1, total: 4 });
    const withoutCounts = (lines: string[]): string => lines.map((line) => line.split(" ").slice(0, 5).join(" ")).join("\n");
    expect(pairStamps(parseTrace(withoutCounts(a)), parseTrace(withoutCounts(b))).messages).toBeNull();
  });

  it("says which stamps are missing when no ping is complete (the agents' sessions were not traced)", () => {
    // Only the TAP backend stamped: what `edgelan join` wrote while its session had no trace.
    const a = parseTrace("tap-read 8 5 1 1000000\ntap-write 0 5 1 2000000\ntap-read 8 5 2 3000000\ntap-write 0 5 2 4000000");
    const b = parseTrace("tap-write 8 5 1 1500000\ntap-read 0 5 1 1600000\ntap-write 8 5 2 3500000\ntap-read 0 5 2 3600000");
    const budget = pairStamps(a, b);
    expect(budget.pings).toBe(0);
    expect(budget.requests).toBe(2);
    expect(budget.problem).toBe("no ping of 2 has these stamps: a ws-sending request, b ws-recv request, b ws-sending reply, a ws-recv reply, a ws-send request, b ws-send reply");
    expect(pairStamps(new Map(), b).problem).toBe("agent A's trace has no echo request read from its TAP");
  });
});

describe("the CLI's sessions", () => {
  it("carry the latency trace when EDGELAN_TRACE_FILE is set (edgelan join opens its session itself)", async () => {
    const path = join(dir, "cli.trace");
    process.env.EDGELAN_TRACE_FILE = path;
    vi.resetModules();
    try {
      const { sessionOptions } = await import("../../client/cli/session-options.ts");
      const { frameTrace } = await import("../../client/frame-trace.ts");
      const options = await sessionOptions("ws://127.0.0.1:1/v1/segments/x/connect", undefined, { macs: [] });
      expect(frameTrace).not.toBeNull();
      expect(options.trace).toBe(frameTrace);
    } finally {
      delete process.env.EDGELAN_TRACE_FILE;
      vi.resetModules();
    }
    const { sessionOptions } = await import("../../client/cli/session-options.ts");
    expect((await sessionOptions("ws://127.0.0.1:1/v1/segments/x/connect", undefined, {})).trace).toBeUndefined();
  });
});
