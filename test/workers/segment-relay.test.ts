// The Segment Durable Object inside workerd: both modes, every bad input with
// its close code and counter, the memory bounds, and a rebuild of the object from
// its sockets and attachments (what happens after hibernation).
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { DropReason } from "../../datapath/counters.ts";
import { CloseCode } from "../../datapath/tunnel/close-codes.ts";
import { encodeMessage } from "../../datapath/tunnel/codec.ts";
import { Feature, RxFlag } from "../../datapath/tunnel/constants.ts";
import { internetChecksum, onesComplementSum } from "../../datapath/inet.ts";
import type { PortAttachment } from "../../durable/port.ts";
import { Segment } from "../../durable/segment.ts";
import { ATTACHMENT_WRITE_DELAY_MS } from "../../durable/port-writer.ts";
import { ADMIN, BROADCAST, createSegment, describeSegment, frame, hello_, Port } from "./ports.ts";

describe("both modes", () => {
  it("switches between a descriptor port and a raw port", async () => {
    await createSegment("modes");
    const d = await Port.join("modes", 0x020000000101);
    const raw = await Port.open("modes", false);
    raw.ws.send(frame(BROADCAST, 0x020000000102, 1));
    expect((await d.rx(1))[0]?.[14]).toBe(1);
    d.send([{ type: "tx", id: 0, flags: 0, frame: frame(0x020000000102, 0x020000000101, 2) }]);
    await raw.until(() => raw.raw[0], "a raw frame");
    expect(raw.raw[0]?.[14]).toBe(2);
    expect(await d.next("tx-complete")).toMatchObject({ firstId: 0, count: 1, status: 0 });
  });
});

describe("bad input: a specific close code, a counter, and no harm to others", () => {
  const cases: Array<{ name: string; act: (port: Port) => void; code: number; counter: string; helloFirst?: boolean }> = [
    { name: "undecodable bytes", act: (p) => p.ws.send(new Uint8Array([1, 2, 3])), code: CloseCode.Malformed, counter: "malformedMessages" },
    { name: "a text message", act: (p) => p.ws.send("not a keepalive"), code: CloseCode.Malformed, counter: "malformedMessages" },
    { name: "a record count above 4096", act: (p) => p.ws.send(new Uint8Array([0x45, 0x4c, 1, 0, 0x01, 0x10, 0, 0])), code: CloseCode.TooManyRecords, counter: "malformedMessages" },
    { name: "data before HELLO", act: (p) => p.send([{ type: "rx-post", count: 1, bufferSize: 2048 }]), code: CloseCode.HandshakeTimeout, counter: "protocolErrors", helloFirst: false },
    { name: "an unsupported version", act: (p) => p.send([hello_(0x020000000201, { minVersion: 7, maxVersion: 9 })]), code: CloseCode.UnsupportedVersion, counter: "hellosRefused", helloFirst: false },
    { name: "a HELLO for a kind the join was not authorized for", act: (p) => p.send([hello_(0, { portKind: "monitor" })]), code: CloseCode.Policy, counter: "hellosRefused", helloFirst: false },
    { name: "a multicast MAC", act: (p) => p.send([hello_(0x010000000001)]), code: CloseCode.InvalidMac, counter: "hellosRefused", helloFirst: false },
    { name: "a second HELLO", act: (p) => p.send([hello_(0x020000000202)]), code: CloseCode.UnexpectedRecord, counter: "protocolErrors" },
    { name: "a record only the segment may send", act: (p) => p.send([{ type: "tx-complete", firstId: 0, count: 1, status: 0 }]), code: CloseCode.UnexpectedRecord, counter: "protocolErrors" },
    { name: "an rx-post with a buffer below 60 bytes", act: (p) => p.send([{ type: "rx-post", count: 4, bufferSize: 10 }]), code: CloseCode.RxPostInvalid, counter: "protocolErrors" },
    {
      name: "more TX than the window", code: CloseCode.WindowOverrun, counter: "windowOverruns",
      act: (p) => p.send(Array.from({ length: 17 }, (_, id) => ({ type: "tx" as const, id, flags: 0, frame: frame(BROADCAST, 0x020000000203) }))),
    },
  ];

  for (const [index, badCase] of cases.entries()) {
    it(`closes on ${badCase.name} with ${badCase.code} and counts it`, async () => {
      const segment = `bad-${index}`;
      await createSegment(segment);
      const good = await Port.join(segment, 0x020000000301);
      const peer = await Port.join(segment, 0x020000000302);
      const bad = badCase.helloFirst === false ? await Port.open(segment) : await Port.join(segment, 0x020000000203, 0);
      const before = (await describeSegment(segment)).counters[badCase.counter] ?? 0;
      badCase.act(bad);
      expect((await bad.closedWith()).code).toBe(badCase.code);
      expect((await describeSegment(segment)).counters[badCase.counter]).toBe(before + 1);
      good.send([{ type: "tx", id: 0, flags: 0, frame: frame(0x020000000302, 0x020000000301, 9) }]);
      expect((await peer.rx(1))[0]?.[14]).toBe(9);
      expect(await good.next("tx-complete")).toMatchObject({ status: 0 });
    });
  }

  it("closes a port that never says HELLO when its deadline passes (4002)", async () => {
    await createSegment("hello-deadline");
    const silent = await Port.open("hello-deadline");
    await runInDurableObject(env.SEGMENTS.getByName("hello-deadline"), async (instance, state) => {
      for (const ws of state.getWebSockets()) {
        const attachment = ws.deserializeAttachment() as PortAttachment;
        ws.serializeAttachment({ ...attachment, helloDeadline: Date.now() - 1 });
      }
      // A rebuilt object reads the (expired) deadline from the attachment, as after hibernation.
      await new Segment(state, env).alarm();
      expect(instance).toBeDefined();
    });
    expect((await silent.closedWith()).code).toBe(CloseCode.HandshakeTimeout);
  });
});

describe("completions", () => {
  it("complete a TX with unknown flag bits as malformed without switching it, and keep the port open", async () => {
    await createSegment("tx-flags");
    const a = await Port.join("tx-flags", 0x020000000801);
    const b = await Port.join("tx-flags", 0x020000000802);
    a.send([
      { type: "tx", id: 0, flags: 0x80, frame: frame(0x020000000802, 0x020000000801, 1) },
      { type: "tx", id: 1, flags: 0, frame: frame(0x020000000802, 0x020000000801, 2) },
    ]);
    expect(await a.next("tx-complete")).toEqual({ type: "tx-complete", firstId: 0, count: 1, status: DropReason.Malformed });
    expect(await a.next("tx-complete")).toEqual({ type: "tx-complete", firstId: 1, count: 1, status: 0 });
    expect((await b.rx(1)).map((f) => f[14])).toEqual([2]);
    const stats = (await (await exports.default.fetch("http://edgelan.test/v1/segments/tx-flags/ports", { headers: ADMIN })).json()) as {
      ports: Array<{ counters: { rxFrames: number; drops: Record<string, number> } }>;
    };
    const sender = stats.ports.find((p) => p.counters.drops.malformed === 1);
    expect(sender?.counters.rxFrames).toBe(2);
    expect(a.closed).toBeUndefined();
  });

  it("are one id per record for a client that did not negotiate coalesced completions", async () => {
    await createSegment("no-coalesce");
    const a = await Port.join("no-coalesce", 0x020000000901, 64, { features: 0 });
    await Port.join("no-coalesce", 0x020000000902);
    a.send([0, 1, 2].map((id) => ({ type: "tx" as const, id, flags: 0, frame: frame(0x020000000902, 0x020000000901, id) })));
    const completions = [await a.next("tx-complete"), await a.next("tx-complete"), await a.next("tx-complete")];
    expect(completions.map((c) => [c.firstId, c.count, c.status])).toEqual([[0, 1, 0], [1, 1, 0], [2, 1, 0]]);
  });
});

describe("open joins", () => {
  it("admit members without a token but answer a tokenless bridge or monitor join with 403", async () => {
    await createSegment("open-kinds");
    for (const kind of ["bridge", "monitor"]) {
      const response = await exports.default.fetch(`http://edgelan.test/v1/segments/open-kinds/connect?kind=${kind}`, { headers: { Upgrade: "websocket" } });
      expect(response.status).toBe(403);
      expect(await response.json()).toMatchObject({ error: "token-required-for-kind" });
    }
    const member = await Port.open("open-kinds", false);
    expect(member.closed).toBeUndefined();
  });
});

describe("memory bounds", () => {
  it("holds each port's queue to its bound and the segment to its budget, counting every drop", async () => {
    // Storm control off: 200 broadcasts at once are past its default budget, and this test is about queues.
    await createSegment("budget", { rxQueueFrames: 64, rxQueueBytes: 4000, segmentQueueBytes: 6000, stormControlFramesPerSecond: null });
    const sender = await Port.join("budget", 0x020000000401, 0, { txWindow: 256 });
    const sinks = [await Port.join("budget", 0x020000000402, 0), await Port.join("budget", 0x020000000403, 0)];
    // 200 broadcast frames of 1000 bytes: nobody posts credit, so everything queues or drops.
    for (let batch = 0; batch < 2; batch++) {
      sender.send(Array.from({ length: 100 }, (_, i) => ({ type: "tx" as const, id: batch * 100 + i, flags: 0, frame: frame(BROADCAST, 0x020000000401, i, 1000) })));
      await sender.next("tx-complete");
    }
    const segment = await describeSegment("budget");
    expect(segment.queuedBytes).toBeLessThanOrEqual(6000);
    expect(segment.queuedBytes).toBe(6000);
    const stats = (await (await exports.default.fetch("http://edgelan.test/v1/segments/budget/ports", { headers: ADMIN })).json()) as {
      ports: Array<{ portId: number; queuedBytes: number; counters: { rxFrames: number; txFrames: number; drops: Record<string, number> } }>;
    };
    const sinkStats = stats.ports.filter((p) => p.counters.rxFrames === 0);
    expect(sinkStats).toHaveLength(2);
    for (const port of sinkStats) {
      expect(port.queuedBytes).toBeLessThanOrEqual(4000);
      // Every one of the 200 frames switched to the port is queued or dropped with a reason: nothing is lost
      // silently. None was delivered (no credit), so tx stays 0: tx counts frames handed to the port.
      const dropped = port.counters.drops["rx-queue-full"]! + port.counters.drops["segment-budget"]!;
      expect(port.queuedBytes / 1000 + dropped).toBe(200);
      expect(port.counters.txFrames).toBe(0);
    }
    expect(sinkStats.reduce((sum, p) => sum + p.counters.drops["segment-budget"]!, 0)).toBeGreaterThan(0);
    // The flood costs the credit-less ports nothing but drops: their sockets stay open.
    for (const sink of sinks) expect(sink.closed).toBeUndefined();
  });
});

/**
 * Waits until the segment wrote the ports' attachments. The runtime hibernates an object only after
 * 10 s without events and with no timer pending, so a real wake never sees fewer writes than this.
 */
const attachmentsWritten = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, ATTACHMENT_WRITE_DELAY_MS + 200));

describe("rebuilt from sockets and attachments (as after hibernation)", () => {
  it("carries on without reconnects: ports, MACs, credits and counters survive a new object", async () => {
    await createSegment("rebuild");
    const a = await Port.join("rebuild", 0x020000000501, 64);
    const b = await Port.join("rebuild", 0x020000000502, 5);
    a.send([0, 1, 2].map((id) => ({ type: "tx" as const, id, flags: 0, frame: frame(0x020000000502, 0x020000000501, id) })));
    expect(await b.rx(3)).toHaveLength(3);
    await a.next("tx-complete");
    await attachmentsWritten();
    const stub = env.SEGMENTS.getByName("rebuild");
    await runInDurableObject(stub, async (_instance, state) => {
      // A fresh object over the same storage and sockets: its constructor runs again, nothing in memory survives.
      const fresh = new Segment(state, env);
      const sockets = state.getWebSockets();
      const senderWs = sockets.find((ws) => (ws.deserializeAttachment() as PortAttachment).port.macs.includes(0x020000000501)) as WebSocket;
      const description = await fresh.describe();
      expect(description?.ports).toHaveLength(2);
      expect(description?.forwardingTable.static).toBe(2);
      const stats = await fresh.portStats();
      const receiver = stats?.find((p) => p.credits === 2);
      expect(receiver?.counters.txFrames).toBe(3);
      // Traffic through the rebuilt object: b has exactly 2 credits left (5 posted, 3 used), so 2 of 4 frames are delivered and 2 queue.
      const message = encodeMessage([3, 4, 5, 6].map((id) => ({ type: "tx" as const, id, flags: 0, frame: frame(0x020000000502, 0x020000000501, id) })));
      await fresh.webSocketMessage(senderWs, message.buffer.slice(message.byteOffset, message.byteOffset + message.byteLength) as ArrayBuffer);
      const after = await fresh.portStats();
      const receiverAfter = after?.find((p) => p.portId === receiver?.portId);
      expect(receiverAfter).toMatchObject({ credits: 0, queuedFrames: 2 });
      // tx counts frames handed to the port (protocol.md §8.4), not the 2 still queued.
      expect(receiverAfter?.counters.txFrames).toBe(5);
    });
    const delivered = await b.rx(2);
    expect(delivered.map((f) => f[14])).toEqual([3, 4]);
    const completion = await a.next("tx-complete");
    expect(completion).toMatchObject({ firstId: 3, count: 4, status: 0 });
    expect(a.closed).toBeUndefined();
    expect(b.closed).toBeUndefined();
  });

  it("counts frames that were queued in memory when the object went away as flushed", async () => {
    await createSegment("evicted");
    const a = await Port.join("evicted", 0x020000000601, 64);
    const b = await Port.join("evicted", 0x020000000602, 0);
    a.send([0, 1, 2].map((id) => ({ type: "tx" as const, id, flags: 0, frame: frame(0x020000000602, 0x020000000601, id) })));
    await a.next("tx-complete");
    await attachmentsWritten();
    await runInDurableObject(env.SEGMENTS.getByName("evicted"), async (_instance, state) => {
      const fresh = new Segment(state, env);
      const stats = await fresh.portStats();
      const sink = stats?.find((p) => p.counters.rxFrames === 0);
      expect(sink?.counters.txFrames).toBe(0);
      expect(sink?.queuedFrames).toBe(0);
      expect(sink?.counters.drops.flushed).toBe(3);
      expect((await fresh.describe())?.counters.flushedOnEviction).toBe(3);
    });
    expect(b.closed).toBeUndefined();
    expect(DropReason.Flushed).toBe(13);
  });
});

describe("GSO super-frames (Feature.Gso)", () => {
  const GSO_FEATURES = 0x7f | Feature.Gso;
  const [A, B, C, R] = [0x020000000a01, 0x020000000a02, 0x020000000a03, 0x020000000a04];

  /** Header + Ethernet/IPv4/TCP super-frame from A with `payload` bytes, MSS `mss`, partial TCP checksum (as a kernel hands it over). */
  function gsoTx(dst: number, payload: number, mss: number): { body: Uint8Array; frame: Uint8Array } {
    const eth = frame(dst, A, 0, 14);
    eth[12] = 0x08; eth[13] = 0x00;
    const total = 20 + 20 + payload;
    const ip = Uint8Array.from([0x45, 0, total >> 8, total & 0xff, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    const ipSum = internetChecksum(ip);
    ip[10] = ipSum >> 8; ip[11] = ipSum & 0xff;
    const tcp = Uint8Array.from([0x30, 0x39, 0x14, 0x51, 0, 0, 0x10, 0, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    const pseudo = onesComplementSum(ip.subarray(12, 20), 6 + 20 + payload);
    tcp[16] = pseudo >> 8; tcp[17] = pseudo & 0xff;
    const data = Uint8Array.from({ length: payload }, (_, i) => i & 0xff);
    const out = Uint8Array.from([...eth, ...ip, ...tcp, ...data]);
    const header = Uint8Array.of(1, 1, 54, 0, mss & 0xff, mss >> 8, 34, 0, 16, 0);
    return { body: Uint8Array.from([...header, ...out]), frame: out };
  }

  /** True when a standard frame's IPv4 header and TCP checksums verify. */
  function verifies(f: Uint8Array): boolean {
    const ip = f.subarray(14, 34);
    const tcp = f.subarray(34);
    return internetChecksum(ip) === 0 && (~onesComplementSum(tcp, onesComplementSum(ip.subarray(12, 20), 6 + tcp.length)) & 0xffff) === 0;
  }

  /** Counters by MAC string, from the segment's own view. */
  async function countersByMac(segment: string): Promise<Record<string, { rxFrames: number; txFrames: number; txBytes: number; drops: Record<string, number> }>> {
    const info = (await describeSegment(segment)).ports as Array<{ portId: number; macs: string[] }>;
    const stats = (await (await exports.default.fetch(`http://edgelan.test/v1/segments/${segment}/ports`, { headers: ADMIN })).json()) as {
      ports: Array<{ portId: number; counters: { rxFrames: number; txFrames: number; txBytes: number; drops: Record<string, number> } }>;
    };
    return Object.fromEntries(info.map((p) => [p.macs[0] ?? "", stats.ports.find((s) => s.portId === p.portId)?.counters ?? { rxFrames: 0, txFrames: 0, txBytes: 0, drops: {} }]));
  }

  it("passes a super-frame as is to a Gso port, and segments it for a plain descriptor port and a raw port, counting exactly", async () => {
    await createSegment("gso");
    const a = await Port.join("gso", A, 64, { features: GSO_FEATURES });
    expect((await describeSegment("gso")).ports).toHaveLength(1);
    // One rx-post with the large buffers: the latest post's bufferSize applies (protocol.md §7.3 rule 2), and two posts
    // sent back to back from a test socket have been seen reaching the object in either order.
    const b = await Port.join("gso", B, 0, { features: GSO_FEATURES });
    b.send([{ type: "rx-post", count: 64, bufferSize: 65_545 }]);
    const c = await Port.join("gso", C, 64, { features: 0x7f });
    const r = await Port.open("gso", false);
    r.ws.send(frame(BROADCAST, R, 7));
    await a.rx(1); await b.rx(1); await c.rx(1);
    const before = await countersByMac("gso");

    const toB = gsoTx(B, 3000, 1000);
    const toC = gsoTx(C, 3000, 1000);
    const toR = gsoTx(R, 2500, 1000);
    a.send([{ type: "tx", id: 0, flags: 1, frame: toB.body }, { type: "tx", id: 1, flags: 1, frame: toC.body }, { type: "tx", id: 2, flags: 1, frame: toR.body }]);
    expect(await a.next("tx-complete")).toEqual({ type: "tx-complete", firstId: 0, count: 3, status: 0 });

    const rxB = await b.until(() => b.records.find((rec) => rec.type === "rx"), "B's rx");
    expect(rxB).toEqual({ type: "rx", flags: RxFlag.VnetHeader, frame: toB.body });
    const segsC = await c.rx(3);
    expect(segsC.map((f) => f.length)).toEqual([1054, 1054, 1054]);
    expect(segsC.every(verifies)).toBe(true);
    expect(Uint8Array.from(segsC.flatMap((f) => [...f.subarray(54)]))).toEqual(toC.frame.subarray(54));
    await r.until(() => (r.raw.length >= 3 ? true : undefined), "3 raw segments");
    const segsR = r.raw;
    expect(segsR.map((f) => f.length)).toEqual([1054, 1054, 554]);
    expect(segsR.every(verifies)).toBe(true);

    const after = await countersByMac("gso");
    const delta = (mac: string, key: "rxFrames" | "txFrames" | "txBytes"): number => (after[mac]?.[key] ?? 0) - (before[mac]?.[key] ?? 0);
    expect(delta("02:00:00:00:0a:01", "rxFrames")).toBe(3);
    expect(delta("02:00:00:00:0a:02", "txFrames")).toBe(1);
    expect(delta("02:00:00:00:0a:02", "txBytes")).toBe(toB.frame.length);
    expect(delta("02:00:00:00:0a:03", "txFrames")).toBe(3);
    expect(delta("02:00:00:00:0a:03", "txBytes")).toBe(3 * 1054);
    expect(delta("02:00:00:00:0a:04", "txFrames")).toBe(3);
    expect(delta("02:00:00:00:0a:04", "txBytes")).toBe(2 * 1054 + 554);
  });

  it("completes flag 0x01 as malformed without Gso, and a bad header (UFO) as malformed with it", async () => {
    await createSegment("gso-bad");
    const plain = await Port.join("gso-bad", 0x020000000b01, 64, { features: 0x7f });
    const gso = await Port.join("gso-bad", 0x020000000b02, 64, { features: GSO_FEATURES });
    const zeroHeader = Uint8Array.from([...new Uint8Array(10), ...frame(0x020000000b02, 0x020000000b01, 5)]);
    plain.send([{ type: "tx", id: 0, flags: 1, frame: zeroHeader }]);
    expect(await plain.next("tx-complete")).toMatchObject({ status: DropReason.Malformed });
    const ufo = Uint8Array.from([1, 3, 0, 0, 0, 0, 0, 0, 0, 0, ...frame(0x020000000b01, 0x020000000b02, 6)]);
    const trivial = Uint8Array.from([...new Uint8Array(10), ...frame(0x020000000b01, 0x020000000b02, 8)]);
    gso.send([{ type: "tx", id: 0, flags: 1, frame: ufo }, { type: "tx", id: 1, flags: 1, frame: trivial }]);
    expect(await gso.next("tx-complete")).toMatchObject({ firstId: 0, count: 1, status: DropReason.Malformed });
    expect(await gso.next("tx-complete")).toMatchObject({ firstId: 1, count: 1, status: 0 });
    expect((await plain.rx(1))[0]?.[14]).toBe(8);
    expect(gso.closed).toBeUndefined();
  });
});
