// What docs/protocol.md promises and the relay in workerd does (issue 8 §3): RX flags, resume keeping
// filter and counters, no TX before WELCOME, Stats and its not-negotiated ack, LargeFrames and Vlan
// gating, LINK only with LinkNotices, flushed frames counted for the segment, and lazy completions.
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DropReason } from "../../datapath/counters.ts";
import { CloseCode } from "../../datapath/tunnel/close-codes.ts";
import { AckStatus, Feature, RxFlag } from "../../datapath/tunnel/constants.ts";
import type { TunnelRecord } from "../../datapath/tunnel/records.ts";
import { ADMIN, BROADCAST, createSegment, describeSegment, frame, hello_, Port } from "./ports.ts";

const BASIC = Feature.CoalescedCompletions | Feature.RxQueue | Feature.Stats;

/** A TX record of a 64-byte frame (or `size`) from `src` to `dst`, marked `marker`. */
function tx(id: number, dst: number, src: number, marker = id, size = 64): TunnelRecord {
  return { type: "tx", id, flags: 0, frame: frame(dst, src, marker, size) };
}

/** Per-port counters from the admin API, by port id. */
async function portCounters(segment: string): Promise<Map<number, { rxFrames: number; txFrames: number; drops: Record<string, number> }>> {
  const body = (await (await exports.default.fetch(`http://edgelan.test/v1/segments/${segment}/ports`, { headers: ADMIN })).json()) as {
    ports: Array<{ portId: number; counters: { rxFrames: number; txFrames: number; drops: Record<string, number> } }>;
  };
  return new Map(body.ports.map((p) => [p.portId, p.counters]));
}

/** Opens a port, says HELLO, and returns it with its WELCOME. */
async function joinWithWelcome(segment: string, mac: number, features: number, extra: Partial<Parameters<typeof hello_>[1]> = {}) {
  const port = await Port.open(segment);
  port.send([hello_(mac, { features, ...extra })]);
  const welcome = await port.next("welcome");
  port.send([{ type: "rx-post", count: 64, bufferSize: 9018 }]);
  return { port, welcome };
}

describe("RX flags (protocol.md §7.2)", () => {
  it("marks flooded frames Flooded and known unicast with no flag", async () => {
    await createSegment("rx-flags");
    const a = await Port.join("rx-flags", 0x020000001001);
    const b = await Port.join("rx-flags", 0x020000001002);
    a.send([tx(0, BROADCAST, 0x020000001001), tx(1, 0x020000001002, 0x020000001001)]);
    const rx = await b.until(() => {
      const found = b.records.filter((r) => r.type === "rx");
      return found.length === 2 ? found : undefined;
    }, "2 rx records");
    expect(rx.map((r) => (r.type === "rx" ? r.flags : -1))).toEqual([RxFlag.Flooded, 0]);
  });

  it("marks a monitor's copies Mirrored", async () => {
    await createSegment("rx-mirrored");
    const minted = await exports.default.fetch("http://edgelan.test/v1/segments/rx-mirrored/tokens", {
      method: "POST", headers: ADMIN, body: JSON.stringify({ role: "monitor" }),
    });
    const { token } = (await minted.json()) as { token: string };
    const monitor = await Port.open("rx-mirrored", true, `?kind=monitor&token=${token}`);
    monitor.send([hello_(0, { portKind: "monitor" }), { type: "rx-post", count: 8, bufferSize: 2048 }]);
    await monitor.next("welcome");
    const a = await Port.join("rx-mirrored", 0x020000001011);
    await Port.join("rx-mirrored", 0x020000001012);
    a.send([tx(0, 0x020000001012, 0x020000001011), tx(1, BROADCAST, 0x020000001011)]);
    const rx = await monitor.until(() => {
      const found = monitor.records.filter((r) => r.type === "rx");
      return found.length === 2 ? found : undefined;
    }, "2 mirrored copies");
    expect(rx.map((r) => (r.type === "rx" ? r.flags : -1))).toEqual([RxFlag.Mirrored, RxFlag.Mirrored]);
  });
});

describe("the first message (protocol.md §11.1)", () => {
  it("closes with 4006 when a TX record follows the HELLO in the first message, and forwards nothing", async () => {
    await createSegment("early-tx");
    const peer = await Port.join("early-tx", 0x020000001102);
    const early = await Port.open("early-tx");
    early.send([hello_(0x020000001101), tx(0, BROADCAST, 0x020000001101)]);
    expect((await early.closedWith()).code).toBe(CloseCode.UnexpectedRecord);
    peer.send([{ type: "ping", seq: 1, timestamp: 1 }]);
    await peer.next("pong");
    expect(peer.records.filter((r) => r.type === "rx")).toEqual([]);
  });
});

describe("stats (protocol.md §8.4)", () => {
  it("answers a stats-request with an ack NotNegotiated (7) when Stats was not granted", async () => {
    await createSegment("no-stats");
    const { port } = await joinWithWelcome("no-stats", 0x020000001201, Feature.CoalescedCompletions);
    port.send([{ type: "stats-request", seq: 42 }]);
    expect(await port.next("ack")).toMatchObject({ seq: 42, status: AckStatus.NotNegotiated });
    expect(port.records.some((r) => r.type === "stats-reply")).toBe(false);
  });
});

describe("LargeFrames and Vlan (protocol.md §10)", () => {
  it("a port without LargeFrames gets maxFrameSize 1514, may not send more, and does not get jumbo frames (rx-buffer-too-small on its counters)", async () => {
    await createSegment("jumbo", { maxFrameSize: 9000, rxQueueBytes: 1 << 20 });
    const big = await joinWithWelcome("jumbo", 0x020000001301, BASIC | Feature.LargeFrames);
    const small = await joinWithWelcome("jumbo", 0x020000001302, BASIC);
    expect(big.welcome.maxFrameSize).toBe(9000);
    expect(small.welcome.maxFrameSize).toBe(1514);
    big.port.send([tx(0, 0x020000001302, 0x020000001301, 1, 4000), tx(1, 0x020000001302, 0x020000001301, 2, 1514)]);
    expect(await big.port.next("tx-complete")).toMatchObject({ firstId: 0, count: 2, status: 0 });
    expect((await small.port.rx(1)).map((f) => f.length)).toEqual([1514]);
    small.port.send([tx(0, 0x020000001301, 0x020000001302, 3, 1515)]);
    expect(await small.port.next("tx-complete")).toMatchObject({ firstId: 0, count: 1, status: DropReason.Oversize });
    const counters = await portCounters("jumbo");
    expect(counters.get(small.welcome.portId)?.drops.oversize).toBe(1);
    expect(counters.get(small.welcome.portId)?.drops["rx-buffer-too-small"]).toBe(1);
  });

  it("a port without Vlan may not send tagged frames (malformed) and does not get them", async () => {
    await createSegment("vlan");
    const tagged = await joinWithWelcome("vlan", 0x020000001401, BASIC | Feature.Vlan);
    const plain = await joinWithWelcome("vlan", 0x020000001402, BASIC);
    const taggedFrame = frame(BROADCAST, 0x020000001401, 0, 64);
    taggedFrame.set([0x81, 0x00, 0x00, 0x05, 0x08, 0x00], 12);
    tagged.port.send([{ type: "tx", id: 0, flags: 0, frame: taggedFrame }, tx(1, BROADCAST, 0x020000001401, 7)]);
    expect(await tagged.port.next("tx-complete")).toMatchObject({ firstId: 0, count: 2, status: 0 });
    expect((await plain.port.rx(1)).map((f) => f[14])).toEqual([7]);
    const fromPlain = frame(BROADCAST, 0x020000001402, 0, 64);
    fromPlain.set([0x81, 0x00, 0x00, 0x05], 12);
    plain.port.send([{ type: "tx", id: 0, flags: 0, frame: fromPlain }]);
    expect(await plain.port.next("tx-complete")).toMatchObject({ status: DropReason.Malformed });
    expect((await portCounters("vlan")).get(plain.welcome.portId)?.drops.malformed).toBe(2);
  });
});

describe("resume (protocol.md §11.3)", () => {
  it("keeps the port id, MACs, receive filter and counters; the replaced socket closes with 4011", async () => {
    await createSegment("resume-keeps");
    const first = await joinWithWelcome("resume-keeps", 0x020000001501, BASIC | Feature.Resume);
    const peer = await Port.join("resume-keeps", 0x020000001502);
    first.port.send([{ type: "set-filter", seq: 1, promiscuous: false, allMulticast: true, multicast: [] }, tx(0, 0x020000001502, 0x020000001501)]);
    expect(await first.port.next("ack")).toMatchObject({ seq: 1, status: 0 });
    await first.port.next("tx-complete");
    const again = await Port.open("resume-keeps");
    again.send([hello_(0, {
      features: BASIC | Feature.Resume, resume: { sessionId: first.welcome.sessionId, token: first.welcome.resumeToken },
    })]);
    const welcome = await again.next("welcome");
    expect((await first.port.closedWith()).code).toBe(CloseCode.Replaced);
    expect(welcome).toMatchObject({ portId: first.welcome.portId, macs: [0x020000001501] });
    again.send([{ type: "rx-post", count: 8, bufferSize: 2048 }, { type: "stats-request", seq: 2 }]);
    expect((await again.next("stats-reply")).counters.rxFrames).toBe(1);
    // The filter came along: a multicast frame reaches the resumed port.
    peer.send([tx(0, 0x01005e000001, 0x020000001502, 9)]);
    expect((await again.rx(1)).map((f) => f[14])).toEqual([9]);
  });
});

describe("segment delete and LINK (protocol.md §8.6)", () => {
  it("tells ports with LinkNotices the link is down, then closes every port with 4010", async () => {
    await createSegment("link-down");
    const told = await joinWithWelcome("link-down", 0x020000001601, BASIC | Feature.LinkNotices);
    const quiet = await joinWithWelcome("link-down", 0x020000001602, BASIC);
    const deleted = await exports.default.fetch("http://edgelan.test/v1/segments/link-down", { method: "DELETE", headers: ADMIN });
    expect(deleted.status).toBe(200);
    expect((await told.port.closedWith()).code).toBe(CloseCode.SegmentDeleted);
    expect((await quiet.port.closedWith()).code).toBe(CloseCode.SegmentDeleted);
    expect(told.port.records.filter((r) => r.type === "link")).toEqual([{ type: "link", up: false, reason: "segment deleted" }]);
    expect(quiet.port.records.some((r) => r.type === "link")).toBe(false);
  });
});

describe("flushed frames (protocol.md §7.3 rule 6)", () => {
  it("frames still queued when a port closes count as flushed on the segment", async () => {
    await createSegment("flush-close");
    const sender = await Port.join("flush-close", 0x020000001701);
    const sink = await Port.join("flush-close", 0x020000001702, 0);
    sender.send([0, 1, 2].map((id) => tx(id, 0x020000001702, 0x020000001701)));
    await sender.next("tx-complete");
    sink.ws.close(1000, "bye");
    await sink.closedWith();
    expect(await waitForCounter("flush-close", "flushed", 3)).toBe(3);
  });
});

/** Polls GET /v1/segments/:name until `counter` reaches `value` (the close event runs after the socket closes). */
async function waitForCounter(segment: string, counter: string, value: number): Promise<number | undefined> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const current = (await describeSegment(segment)).counters[counter];
    if (current === value || Date.now() > deadline) return current;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("lazy completions (protocol.md §6.3 rule 2a)", () => {
  const LAZY = BASIC | Feature.LazyCompletions;

  it("are granted, and a ping through the segment costs 4 messages: the completion rides on the reply's RX", async () => {
    await createSegment("lazy-ping");
    const a = await joinWithWelcome("lazy-ping", 0x020000001801, LAZY);
    const b = await joinWithWelcome("lazy-ping", 0x020000001802, LAZY);
    expect(a.welcome.features & Feature.LazyCompletions).toBe(Feature.LazyCompletions);
    a.port.messages.length = 0;
    b.port.messages.length = 0;
    a.port.send([tx(0, 0x020000001802, 0x020000001801, 1)]);
    await b.port.rx(1);
    b.port.send([tx(0, 0x020000001801, 0x020000001802, 2)]);
    await a.port.rx(1);
    // Message 2 (to b) carried only the RX; message 4 (to a) carried a's completion, then the reply.
    expect(b.port.messages.map((m) => m.map((r) => r.type))).toEqual([["rx"]]);
    expect(a.port.messages.map((m) => m.map((r) => r.type))).toEqual([["tx-complete", "rx"]]);
    // b's completion is held until it asks: a ping is answered with it.
    b.port.send([{ type: "ping", seq: 1, timestamp: 3 }]);
    await b.port.next("pong");
    expect(b.port.messages[1]?.map((r) => r.type)).toEqual(["tx-complete", "pong"]);
  });

  it("are sent at the latest when the held ids reach half the window, each id exactly once", async () => {
    // Each step waits for the receiver, so the messages are applied in the order sent (back-to-back sends from a
    // test socket may reach the object out of order in vitest-pool-workers).
    await createSegment("lazy-half");
    const a = await joinWithWelcome("lazy-half", 0x020000001901, LAZY, { txWindow: 16 });
    const b = await Port.join("lazy-half", 0x020000001902);
    a.port.messages.length = 0;
    a.port.send([0, 1, 2, 3, 4, 5, 6].map((id) => tx(id, 0x020000001902, 0x020000001901)));
    await b.rx(7);
    a.port.send([tx(7, 0x020000001902, 0x020000001901)]);
    await b.rx(1);
    // 7 held, then the 8th reaches half the window of 16: all 8 go out in a message of their own.
    expect(await a.port.next("tx-complete")).toMatchObject({ firstId: 0, count: 8, status: 0 });
    expect(a.port.messages.map((m) => m.map((r) => r.type))).toEqual([["tx-complete"]]);
    a.port.send([8, 9, 10].map((id) => tx(id, 0x020000001902, 0x020000001901)));
    await b.rx(3);
    a.port.send([{ type: "ping", seq: 9, timestamp: 0 }]);
    await a.port.next("pong");
    const completed = a.port.messages.flat().filter((r) => r.type === "tx-complete");
    const ids = completed.flatMap((r) => (r.type === "tx-complete" ? Array.from({ length: r.count }, (_, i) => r.firstId + i) : []));
    expect(ids).toEqual(Array.from({ length: 11 }, (_, i) => i));
  });
});
