// The latency trace (client/frame-trace.ts) and the budget bench:netns builds from it
// (bench/lib/latency-budget.ts): which frames are stamped, and how two agents' stamps pair up.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { echoKey, FrameTrace } from "../../client/frame-trace.ts";
import { latencyBudget } from "../../bench/lib/latency-budget.ts";

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
    trace.sent();
    trace.sent(); // nothing queued any more: no second stamp
    trace.flush();
    const lines = readFileSync(path, "utf8").trim().split("\n").map((line) => line.split(" ").slice(0, 4).join(" "));
    expect(lines).toEqual(["tap-read 8 4660 7", "ws-send 8 4660 7"]);
  });

  it("turns two agents' stamps into µs per hop; pings with a missing stamp are left out", () => {
    const a = join(dir, "a.trace");
    const b = join(dir, "b.trace");
    const at = (us: number): string => String(1_000_000_000 + us * 1000);
    writeFileSync(a, [
      `tap-read 8 1 1 ${at(0)}`, `ws-send 8 1 1 ${at(10)}`, `ws-recv 0 1 1 ${at(300)}`, `tap-write 0 1 1 ${at(305)}`,
      `tap-read 8 1 2 ${at(1000)}`, // ping 2 never came back
    ].join("\n"));
    writeFileSync(b, [`ws-recv 8 1 1 ${at(110)}`, `tap-write 8 1 1 ${at(112)}`, `tap-read 0 1 1 ${at(150)}`, `ws-send 0 1 1 ${at(160)}`].join("\n"));
    const budget = latencyBudget(a, b);
    expect(budget.pings).toBe(1);
    expect(Object.fromEntries(budget.hops.map((h) => [h.hop, h.p50_us]))).toEqual({
      a_tx: 10, relay_ab: 100, b_rx: 2, b_kernel: 38, b_tx: 10, relay_ba: 140, a_rx: 5, tap_to_tap: 305,
    });
  });
});
